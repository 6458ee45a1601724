// The attested round trip on the real server (HTTP, core, barrier, tokens, ACL) with simulated SNP
// evidence: challenge → attest → workload token → JWT login → only this workload's secrets; and
// every way it must fail.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPairSync } from "node:crypto";
import { compactDecrypt, createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from "jose";
import { reportDataFor } from "../../../../runtime/attestation/binding.js";
import { encodeEvidence } from "../../../../runtime/protocol/evidence.js";
import {
  attestAs,
  login,
  startNitrideStack,
  GOOD_MEASUREMENT,
  OTHER_MEASUREMENT,
  type NitrideStack,
} from "./nitride-support.js";

let s: NitrideStack;
beforeAll(async () => {
  s = await startNitrideStack();
}, 60_000);
afterAll(async () => {
  await s?.rt.close();
});

async function rawGet(path: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${s.rt.url}/v1/${path}`, { headers });
  return { status: res.status, type: res.headers.get("content-type") ?? "", text: await res.text() };
}

describe("Nitride attested round trip (real server, simulated SNP)", () => {
  it("challenge → attest → ES384 workload token whose claims and signature check out against the JWKS", async () => {
    const a = await attestAs(s, "web");
    expect(a.status, JSON.stringify(a.body)).toBe(200);
    const { token, verdict, ref_version } = a.body.data;
    expect(verdict.accepted).toBe(true);
    expect(verdict.simulated).toBe(true);
    expect(decodeProtectedHeader(token).alg).toBe("ES384");
    const jwks = JSON.parse((await rawGet("nitride/jwks")).text);
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks.keys ? jwks : jwks.data), {
      issuer: `${s.rt.url}/v1/nitride`,
      audience: "buckypaper",
    });
    expect(payload.sub).toBe("web");
    expect(payload.measurement).toBe(GOOD_MEASUREMENT);
    expect(payload.platform).toBe("snp");
    expect(payload.ref_version).toBe(ref_version);
    expect(payload.evidence_digest).toMatch(/^[0-9a-f]{96}$/);
    expect(payload.policy_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(payload.exp! - payload.iat!).toBe(300);
    const cnf = payload.cnf as { jwk: { x: string; crv: string } };
    const ephJwk = a.ephemeral.privateKey.export({ format: "jwk" });
    expect(cnf.jwk.crv).toBe("P-384");
    expect(cnf.jwk.x).toBe(ephJwk.x);
  });

  it("JWT login with the token → Vault token whose metadata records the attestation; reads only its own secrets", async () => {
    const a = await attestAs(s, "web");
    const l = await login(s, a.body.data.token);
    expect(l.status, JSON.stringify(l.body)).toBe(200);
    const auth = l.body.auth;
    expect(auth.policies).toEqual(["default", "nitride-workload-web"]);
    expect(auth.metadata).toMatchObject({
      role: "workload",
      workload_id: "web",
      evidence_digest: a.body.data.verdict.evidenceDigest,
      ref_version: String(a.body.data.ref_version),
      platform: "snp",
    });
    expect(auth.metadata.policy_hash).toMatch(/^[0-9a-f]{64}$/);
    const own = await s.rt.api("GET", "secret/data/web/db", undefined, auth.client_token);
    expect(own.status).toBe(200);
    expect(own.body.data.data.password).toBe("web-db-secret");
    const other = await s.rt.api("GET", "secret/data/other/db", undefined, auth.client_token);
    expect(other.status).toBe(403);
    expect(JSON.stringify(other.body)).not.toContain("other-db-secret");
    expect((await s.rt.api("GET", "nitride/workloads/web", undefined, auth.client_token)).status).toBe(403);
  });

  it("provisioning bundle: exactly this workload's KV, a TLS cert from its role, SSH host certs, a stable disk key", async () => {
    const a = await attestAs(s, "web");
    const tok = (await login(s, a.body.data.token)).body.auth.client_token;
    const hostKey = generateKeyPairSync("ed25519").publicKey.export({ format: "jwk" }).x as string;
    const blob = Buffer.concat([
      Buffer.from([0, 0, 0, 11]),
      Buffer.from("ssh-ed25519"),
      Buffer.from([0, 0, 0, 32]),
      Buffer.from(hostKey, "base64url"),
    ]);
    const r = await s.rt.api(
      "POST",
      "nitride/provision",
      { host_keys: [`ssh-ed25519 ${blob.toString("base64")}`] },
      tok,
    );
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const b = r.body.data;
    expect(b.kv).toEqual({ "secret/data/web/db": { password: "web-db-secret" } });
    expect(JSON.stringify(b)).not.toContain("other-db-secret");
    expect(b.tls.certificate).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(b.tls.private_key).toMatch(/PRIVATE KEY/);
    expect(b.ssh.host_certificates[0].signed_key).toMatch(/^ssh-ed25519-cert-v01@openssh.com /);
    expect(b.ssh.ca_public_key).toMatch(/^ssh-ed25519 /);
    expect(Buffer.from(b.disk_key, "base64").length).toBe(32);
    const again = await s.rt.api("GET", "nitride/provision", undefined, tok);
    expect(again.body.data.disk_key).toBe(b.disk_key);
    expect(again.body.data.ssh.host_certificates[0].private_key).toMatch(/OPENSSH PRIVATE KEY/);
    // The other workload's bundle has another disk key... and a root token (no attested login) gets none.
    expect((await s.rt.api("GET", "nitride/provision")).status).toBe(403);
  });

  it("sealed responses decrypt only with the attested ephemeral private key", async () => {
    const a = await attestAs(s, "web");
    const tok = (await login(s, a.body.data.token)).body.auth.client_token;
    const res = await fetch(`${s.rt.url}/v1/secret/data/web/db`, {
      headers: { "x-vault-token": tok, "x-buckypaper-seal": "ephemeral" },
    });
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(text).not.toContain("web-db-secret");
    const { sealed } = JSON.parse(text);
    expect(decodeProtectedHeader(sealed)).toMatchObject({ alg: "ECDH-ES+A256KW", enc: "A256GCM" });
    const { plaintext } = await compactDecrypt(sealed, a.ephemeral.privateKey);
    expect(JSON.parse(Buffer.from(plaintext).toString()).data.data.password).toBe("web-db-secret");
    const stranger = generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey;
    await expect(compactDecrypt(sealed, stranger)).rejects.toThrow();
    // A role with seal_responses seals every secret-bearing response, header or not: a replayed
    // token in the hands of a TLS-terminating proxy still yields only ciphertext.
    await s.rt.api("POST", "auth/jwt/role/sealed", {
      bound_audiences: ["buckypaper"],
      token_policies: ["nitride-workload-{{sub}}"],
      token_policies_template_claims: true,
      seal_responses: true,
    });
    const sealedTok = (await login(s, a.body.data.token, "sealed")).body.auth.client_token;
    const plain = await s.rt.api("GET", "secret/data/web/db", undefined, sealedTok);
    expect(plain.status).toBe(200);
    expect(JSON.stringify(plain.body)).not.toContain("web-db-secret");
    const opened = await compactDecrypt(plain.body.sealed, a.ephemeral.privateKey);
    expect(JSON.parse(Buffer.from(opened.plaintext).toString()).data.data.password).toBe("web-db-secret");
    // The login itself can be sealed too: the new Vault token travels only inside the JWE.
    const b2 = await attestAs(s, "web");
    const sealedLogin = await fetch(`${s.rt.url}/v1/auth/jwt/login`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-buckypaper-seal": "ephemeral" },
      body: JSON.stringify({ role: "workload", jwt: b2.body.data.token }),
    });
    const sl = (await sealedLogin.json()) as { sealed?: string; auth?: unknown };
    expect(sl.auth).toBeUndefined();
    const loginBody = JSON.parse(
      Buffer.from((await compactDecrypt(sl.sealed!, b2.ephemeral.privateKey)).plaintext).toString(),
    );
    expect((await s.rt.api("GET", "secret/data/web/db", undefined, loginBody.auth.client_token)).status).toBe(200);
    // Asking for sealing without an attested login is refused rather than answered in clear.
    const root = await fetch(`${s.rt.url}/v1/secret/data/web/db`, {
      headers: { "x-vault-token": s.rt.rootToken, "x-buckypaper-seal": "ephemeral" },
    });
    expect(root.status).toBe(400);
    expect(await root.text()).not.toContain("web-db-secret");
  });

  it("refuses a wrong measurement (403 with the failing checks) and the nonce stays spent", async () => {
    const a = await attestAs(s, "web", { measurement: OTHER_MEASUREMENT });
    expect(a.status).toBe(403);
    expect(a.body.data.verdict.accepted).toBe(false);
    const failed = a.body.data.verdict.checks.filter((c: { ok: boolean }) => !c.ok).map((c: { id: string }) => c.id);
    expect(failed).toContain("nitride.reference-values");
    expect(a.body.data.token).toBeUndefined();
    const retry = await s.rt.api("POST", "nitride/attest", a.request, "");
    expect(retry.status).toBe(403);
    expect(retry.body.errors[0]).toMatch(/nonce: unknown or already used/);
  });

  it("refuses a replayed nonce, a nonce of another workload, a REPORT_DATA bound to another key, debug guests", async () => {
    const a = await attestAs(s, "web");
    expect(a.status).toBe(200);
    const replay = await s.rt.api("POST", "nitride/attest", a.request, "");
    expect(replay.status).toBe(403);
    expect(replay.body.errors[0]).toMatch(/nonce/);

    const ch = await s.rt.api("POST", "nitride/challenge", { workload_id: "other" }, "");
    const cross = await attestAs(s, "web", { nonce: ch.body.data.nonce });
    expect(cross.status).toBe(403);
    expect(cross.body.errors[0]).toMatch(/another workload/);

    const otherKey = generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey.export({
      format: "der",
      type: "spki",
    });
    const unbound = await attestAs(s, "web", { bindKey: otherKey });
    expect(unbound.status).toBe(403);
    expect(unbound.body.data.verdict.checks.find((c: { id: string }) => c.id === "policy.report-data").ok).toBe(false);

    const dbg = await attestAs(s, "web", { debug: true });
    expect(dbg.status).toBe(403);
  });

  it("refuses tampered evidence and simulated evidence once accept_simulated is off", async () => {
    const ch = await s.rt.api("POST", "nitride/challenge", { workload_id: "web" }, "");
    const spki = generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey.export({ format: "der", type: "spki" });
    const ev = await s.sim.report({
      measurement: GOOD_MEASUREMENT,
      reportData: reportDataFor(Buffer.from(ch.body.data.nonce, "base64url"), spki),
    });
    const report = Buffer.from(ev.report);
    report[0x90] ^= 0x01; // inside MEASUREMENT (offset 0x90), covered by the signature
    const tampered = await s.rt.api(
      "POST",
      "nitride/attest",
      {
        workload_id: "web",
        nonce: ch.body.data.nonce,
        ephemeral_public_key: spki.toString("base64"),
        evidence: encodeEvidence({ kind: "snp", report, certTable: ev.certTable }),
      },
      "",
    );
    expect(tampered.status).toBe(403);
    expect(
      tampered.body.data.verdict.checks.some((c: { id: string; ok: boolean }) => /signature/.test(c.id) && !c.ok),
    ).toBe(true);

    await s.rt.api("PUT", "nitride/config", { accept_simulated: false });
    try {
      const sim = await attestAs(s, "web");
      expect(sim.status).toBe(403);
      expect(sim.body.data.verdict.accepted).toBe(false);
    } finally {
      await s.rt.api("PUT", "nitride/config", { accept_simulated: true });
    }
  });

  it("concurrent attests with one nonce: exactly one token", async () => {
    const ch2 = await s.rt.api("POST", "nitride/challenge", { workload_id: "web" }, "");
    const spki = generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey.export({ format: "der", type: "spki" });
    const ev = await s.sim.report({
      measurement: GOOD_MEASUREMENT,
      reportData: reportDataFor(Buffer.from(ch2.body.data.nonce, "base64url"), spki),
    });
    const body = {
      workload_id: "web",
      nonce: ch2.body.data.nonce,
      ephemeral_public_key: spki.toString("base64"),
      evidence: encodeEvidence({ kind: "snp", report: ev.report, certTable: ev.certTable }),
    };
    const results = await Promise.all(Array.from({ length: 6 }, () => s.rt.api("POST", "nitride/attest", body, "")));
    expect(results.map((r) => r.status).sort()).toEqual([200, 403, 403, 403, 403, 403]);
  });

  it("refuses malformed attest input with 400 naming the field, unknown workloads with 404", async () => {
    const a = await attestAs(s, "web");
    const base = a.request;
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ ...base, ephemeral_public_key: Buffer.from("nope").toString("base64") }, /ephemeral_public_key/],
      [{ ...base, nonce: "abc" }, /nonce/],
      [{ ...base, evidence: { kind: "sgx" } }, /evidence.kind/],
      [{ ...base, evidence: { kind: "snp" } }, /evidence.report: missing/],
      [{ ...base, workload_id: "../x" }, /workload_id/],
    ];
    for (const [body, msg] of cases) {
      const r = await s.rt.api("POST", "nitride/attest", body, "");
      expect(r.status).toBe(400);
      expect(r.body.errors[0]).toMatch(msg);
    }
    expect((await s.rt.api("POST", "nitride/challenge", { workload_id: "ghost" }, "")).status).toBe(404);
  });

  it("explain: same verdict, no nonce consumed, no token; needs a token", async () => {
    const ch2 = await s.rt.api("POST", "nitride/challenge", { workload_id: "web" }, "");
    const spki = generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey.export({ format: "der", type: "spki" });
    const ev = await s.sim.report({
      measurement: GOOD_MEASUREMENT,
      reportData: reportDataFor(Buffer.from(ch2.body.data.nonce, "base64url"), spki),
    });
    const body = {
      workload_id: "web",
      nonce: ch2.body.data.nonce,
      ephemeral_public_key: spki.toString("base64"),
      evidence: encodeEvidence({ kind: "snp", report: ev.report, certTable: ev.certTable }),
    };
    expect((await s.rt.api("POST", "nitride/explain", body, "")).status).toBe(403);
    const ex = await s.rt.api("POST", "nitride/explain", body);
    expect(ex.status).toBe(200);
    expect(ex.body.data.would_accept).toBe(true);
    expect(ex.body.data.effective_policy).toMatchObject({
      snp: { measurements: [GOOD_MEASUREMENT] },
      requireReportDataBinding: true,
    });
    // Explain of a wrong measurement names the failing check, also without a nonce.
    const wrong = await s.sim.report({ measurement: OTHER_MEASUREMENT });
    const exWrong = await s.rt.api("POST", "nitride/explain", {
      workload_id: "web",
      evidence: encodeEvidence({ kind: "snp", report: wrong.report, certTable: wrong.certTable }),
    });
    expect(exWrong.body.data.would_accept).toBe(false);
    expect(
      exWrong.body.data.verdict.checks.filter((c: { ok: boolean }) => !c.ok).map((c: { id: string }) => c.id),
    ).toContain("nitride.reference-values");
    expect(ex.body.data.token).toBeUndefined();
    // The nonce was not consumed by explain: the real attest still succeeds with it.
    const real = await s.rt.api("POST", "nitride/attest", body, "");
    expect(real.status, JSON.stringify(real.body)).toBe(200);
  });

  it("refuses an expired workload token at login (403), and tokens of another issuer/audience", async () => {
    await s.rt.api("PUT", "nitride/workloads/brief", {
      reference_values: { snp_measurements: [GOOD_MEASUREMENT] },
      token_ttl: "1s",
      secrets: { kv: [] },
    });
    await s.rt.api("POST", "auth/jwt/role/strict", {
      bound_audiences: ["buckypaper"],
      token_policies: ["nitride-workload-{{sub}}"],
      token_policies_template_claims: true,
      // Vault's meaning: -1 disables a leeway (0 would select the default, 60 s of clock skew).
      clock_skew_leeway: -1,
      expiration_leeway: -1,
      not_before_leeway: -1,
    });
    const a = await attestAs(s, "brief");
    expect(a.status).toBe(200);
    await new Promise((r) => setTimeout(r, 2100));
    const l = await login(s, a.body.data.token, "strict");
    expect(l.status).toBe(403);
    expect(l.body.errors[0]).toMatch(/expired/);

    const fresh = await attestAs(s, "web");
    const tampered = fresh.body.data.token.replace(/\.[^.]+$/, `.${Buffer.alloc(96, 1).toString("base64url")}`);
    expect((await login(s, tampered)).status).toBe(403);
    await s.rt.api("POST", "auth/jwt/role/wrong-aud", { bound_audiences: ["someone-else"], token_policies: ["x"] });
    expect((await login(s, fresh.body.data.token, "wrong-aud")).status).toBe(403);
    await s.rt.api("POST", "auth/jwt/role/tdx-only", {
      bound_audiences: ["buckypaper"],
      bound_claims: { platform: "tdx" },
      token_policies: ["x"],
    });
    expect((await login(s, fresh.body.data.token, "tdx-only")).status).toBe(403);
    expect((await login(s, "not.a.jwt")).status).toBe(400);
    const decoded = decodeJwt(fresh.body.data.token);
    expect(decoded.iss).toBe(`${s.rt.url}/v1/nitride`);
  });

  it("workloads keep a version history; a policy change takes effect and is recorded in ref_version", async () => {
    const before = await s.rt.api("GET", "nitride/workloads/other");
    await s.rt.api("PUT", "nitride/workloads/other", {
      reference_values: { snp_measurements: [OTHER_MEASUREMENT, GOOD_MEASUREMENT] },
      secrets: { kv: ["secret/data/other/db"] },
    });
    const after = await s.rt.api("GET", "nitride/workloads/other");
    expect(after.body.data.version).toBe(before.body.data.version + 1);
    expect(after.body.data.policy_hash).not.toBe(before.body.data.policy_hash);
    const old = await s.rt.api("GET", `nitride/workloads/other?version=${before.body.data.version}`);
    expect(old.body.data.reference_values.snp_measurements).toEqual([OTHER_MEASUREMENT]);
    const hist = await s.rt.api("GET", "nitride/workloads/other/versions");
    expect(hist.body.data.versions.length).toBeGreaterThanOrEqual(2);
    const a = await attestAs(s, "other");
    expect(a.status).toBe(200);
    expect(a.body.data.ref_version).toBe(after.body.data.version);
    // Narrowing the reference values again stops this attestation from fetching the bundle.
    const tok = (await login(s, a.body.data.token)).body.auth.client_token;
    expect((await s.rt.api("GET", "nitride/provision", undefined, tok)).status).toBe(200);
    await s.rt.api("PUT", "nitride/workloads/other", {
      reference_values: { snp_measurements: [OTHER_MEASUREMENT] },
      secrets: { kv: ["secret/data/other/db"] },
    });
    const stale = await s.rt.api("GET", "nitride/provision", undefined, tok);
    expect(stale.status).toBe(403);
    expect(stale.body.errors[0]).toMatch(/changed since this attestation/);
    const list = await s.rt.api("LIST", "nitride/workloads");
    expect(list.body.data.keys).toEqual(expect.arrayContaining(["web", "other"]));
    const bad = await s.rt.api("PUT", "nitride/workloads/bad", { reference_values: { snp_measurements: ["abc"] } });
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0]).toMatch(/reference_values.snp_measurements\[0\]/);
  });

  it("OIDC discovery and JWKS are served raw (what an external Vault/OpenBao JWT auth fetches)", async () => {
    const d = await rawGet("nitride/.well-known/openid-configuration");
    expect(d.status).toBe(200);
    expect(d.type).toMatch(/application\/json/);
    const doc = JSON.parse(d.text);
    expect(doc.issuer).toBe(`${s.rt.url}/v1/nitride`);
    expect(doc.jwks_uri).toBe(`${s.rt.url}/v1/nitride/jwks`);
    expect(doc.id_token_signing_alg_values_supported).toEqual(["ES384"]);
    const j = JSON.parse((await rawGet("nitride/jwks")).text);
    expect(j.keys[0]).toMatchObject({ kty: "EC", crv: "P-384", alg: "ES384", use: "sig" });
    expect(j.keys[0].d).toBeUndefined();
  });

  it("key rotation: new tokens carry the new kid, tokens of the old key still log in until they expire", async () => {
    const old = await attestAs(s, "web");
    const oldKid = decodeProtectedHeader(old.body.data.token).kid;
    const rot = await s.rt.api("POST", "nitride/keys/rotate", {});
    expect(rot.status).toBe(200);
    const fresh = await attestAs(s, "web");
    expect(decodeProtectedHeader(fresh.body.data.token).kid).not.toBe(oldKid);
    expect((await login(s, old.body.data.token)).status).toBe(200);
    expect((await login(s, fresh.body.data.token)).status).toBe(200);
    const j = JSON.parse((await rawGet("nitride/jwks")).text);
    expect(j.keys.map((k: { kid: string }) => k.kid)).toContain(oldKid);
  });

  it("an expired nonce is refused (challenge_ttl), and deleting a workload revokes its access", async () => {
    await s.rt.api("PUT", "nitride/config", { challenge_ttl: "1s" });
    const ch = await s.rt.api("POST", "nitride/challenge", { workload_id: "web" }, "");
    expect(ch.body.data.ttl).toBe(1);
    await new Promise((r) => setTimeout(r, 2100));
    const late = await attestAs(s, "web", { nonce: ch.body.data.nonce });
    expect(late.status).toBe(403);
    expect(late.body.errors[0]).toMatch(/nonce: expired/);
    await s.rt.api("PUT", "nitride/config", { challenge_ttl: "60s" });

    await s.rt.api("PUT", "secret/data/temp/db", { data: { password: "temp-secret" } });
    await s.rt.api("PUT", "nitride/workloads/temp", {
      reference_values: { snp_measurements: [GOOD_MEASUREMENT] },
      secrets: { kv: ["secret/data/temp/db"] },
    });
    const a = await attestAs(s, "temp");
    const tok = (await login(s, a.body.data.token)).body.auth.client_token;
    expect((await s.rt.api("GET", "secret/data/temp/db", undefined, tok)).status).toBe(200);
    expect((await s.rt.api("DELETE", "nitride/workloads/temp")).status).toBe(204);
    expect((await s.rt.api("GET", "secret/data/temp/db", undefined, tok)).status).toBe(403);
    expect((await s.rt.api("GET", "nitride/provision", undefined, tok)).status).toBe(403);
    expect((await s.rt.api("POST", "nitride/challenge", { workload_id: "temp" }, "")).status).toBe(404);
    const hist = await s.rt.api("GET", "nitride/workloads/temp/versions");
    expect(hist.body.data.versions.map((v: { deleted: boolean }) => v.deleted)).toEqual([false, true]);
  });

  it("a sealed server refuses challenge, attest and login with 503", async () => {
    const a = await attestAs(s, "web");
    await s.rt.runtime.core.seal();
    expect((await s.rt.api("POST", "nitride/challenge", { workload_id: "web" }, "")).status).toBe(503);
    expect((await s.rt.api("POST", "nitride/attest", a.request, "")).status).toBe(503);
    expect((await login(s, a.body.data.token)).status).toBe(503);
  });
});
