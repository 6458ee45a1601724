// Attacks on attested logins, over real HTTP against `runtime dev` with Nitride and the SNP simulator:
//  1. image revocation: after the operator removed the old measurement, a VM's existing attested login
//     still read the workload's KV secrets, used its PKI/SSH rights and renewed to 720 h;
//  3. look-alike JWT: a self-signed JWT with Nitride's iss, sub=web and any evidence_digest, on a
//     second JWT mount with static keys, logged in "attested" and got web's provisioning bundle;
//  8. JWT leeways: expiration_leeway=-1 and clock_skew_leeway=-1 still accepted a token 100 s after
//     expiry, and 0 meant zero (Vault: default).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { SignJWT, decodeJwt } from "jose";
import {
  GOOD_MEASUREMENT,
  attestAs,
  login,
  startNitrideStack,
  type NitrideStack,
} from "../runtime/server/nitride/nitride-support.js";

const REVOKED_IMAGE_REPLACEMENT = "c3".repeat(48);
let s: NitrideStack;
let attacker: { privateKey: KeyObject; pem: string };
beforeAll(async () => {
  s = await startNitrideStack();
  const kp = generateKeyPairSync("ec", { namedCurve: "P-256" });
  attacker = { privateKey: kp.privateKey, pem: kp.publicKey.export({ format: "pem", type: "spki" }) as string };
  // The operator's long-lived role (720 h), as in the reported attack.
  const r = await s.rt.api("POST", "auth/jwt/role/long", {
    bound_audiences: ["buckypaper"],
    token_policies: ["nitride-workload-{{sub}}"],
    token_policies_template_claims: true,
    token_ttl: "720h",
    token_max_ttl: "720h",
  });
  expect(r.status).toBe(204);
}, 60_000);
afterAll(async () => {
  await s?.rt.close();
});

const webDefinition = (measurement: string) => ({
  description: "web tier",
  platforms: ["snp"],
  reference_values: { snp_measurements: [measurement] },
  secrets: {
    kv: ["secret/data/web/db"],
    disk_key: true,
    pki: { role: "pki/web", common_name: "web.example.com", alt_names: ["www.example.com"] },
    ssh: { role: "ssh/host", principals: ["web.example.com"] },
  },
});

describe("attack 1: revoking an image cuts off logins made with it", () => {
  it("a workload change refuses (and revokes) the old attested login for KV, PKI, SSH, renew and provision", async () => {
    const a = await attestAs(s, "web");
    expect(a.status).toBe(200);
    const l = await login(s, a.body.data.token, "long");
    expect(l.status).toBe(200);
    const tok = l.body.auth.client_token as string;
    expect((await s.rt.api("GET", "secret/data/web/db", undefined, tok)).status).toBe(200);
    expect((await s.rt.api("POST", "pki/issue/web", { common_name: "web.example.com" }, tok)).status).toBe(200);

    // The operator revokes the image: the old measurement is replaced.
    expect((await s.rt.api("PUT", "nitride/workloads/web", webDefinition(REVOKED_IMAGE_REPLACEMENT))).status).toBe(200);
    expect((await s.rt.api("GET", "secret/data/web/db", undefined, tok)).status).toBe(403);
    expect((await s.rt.api("POST", "pki/issue/web", { common_name: "web.example.com" }, tok)).status).toBe(403);
    const pub = generateKeyPairSync("ed25519").publicKey.export({ format: "der", type: "spki" });
    const sshKey = `ssh-ed25519 ${Buffer.concat([
      Buffer.from([0, 0, 0, 11]),
      Buffer.from("ssh-ed25519"),
      Buffer.from([0, 0, 0, 32]),
      pub.subarray(pub.length - 32),
    ]).toString("base64")}`;
    const sign = { public_key: sshKey, cert_type: "host", valid_principals: "web.example.com" };
    expect((await s.rt.api("POST", "ssh/sign/host", sign, tok)).status).toBe(403);
    expect((await s.rt.api("POST", "auth/token/renew-self", { increment: "720h" }, tok)).status).toBe(403);
    expect((await s.rt.api("GET", "nitride/provision", undefined, tok)).status).toBe(403);
    // Revoked, not only refused: the root operator cannot find it any more either.
    expect((await s.rt.api("POST", "auth/token/lookup", { token: tok })).status).toBe(403);

    // A VM running the new image attests and logs in normally.
    await s.rt.api("PUT", "nitride/workloads/web", webDefinition(GOOD_MEASUREMENT));
    const again = await attestAs(s, "web");
    const l2 = await login(s, again.body.data.token, "long");
    expect((await s.rt.api("GET", "secret/data/web/db", undefined, l2.body.auth.client_token)).status).toBe(200);
  });

  // Also holds without the per-use check (deleting the workload deletes its policy): defence in depth.
  it("deleting the workload refuses its logins", async () => {
    await s.rt.api("PUT", "nitride/workloads/gone", {
      reference_values: { snp_measurements: [GOOD_MEASUREMENT] },
      secrets: { kv: ["secret/data/web/db"] },
    });
    const l = await login(s, (await attestAs(s, "gone")).body.data.token, "long");
    const tok = l.body.auth.client_token as string;
    expect((await s.rt.api("GET", "secret/data/web/db", undefined, tok)).status).toBe(200);
    expect((await s.rt.api("DELETE", "nitride/workloads/gone")).status).toBe(204);
    expect((await s.rt.api("GET", "secret/data/web/db", undefined, tok)).status).toBe(403);
  });

  it("an attested login's TTL ends at the Nitride token's exp, and renewal cannot extend it", async () => {
    const a = await attestAs(s, "web");
    const exp = decodeJwt(a.body.data.token).exp!;
    const l = await login(s, a.body.data.token, "long");
    expect(l.status).toBe(200);
    const left = () => exp - Math.floor(Date.now() / 1000);
    expect(l.body.auth.lease_duration).toBeLessThanOrEqual(left() + 1);
    const tok = l.body.auth.client_token as string;
    const r = await s.rt.api("POST", "auth/token/renew-self", { increment: "720h" }, tok);
    expect(r.status).toBe(200);
    expect(r.body.auth.lease_duration).toBeLessThanOrEqual(left() + 1);
    const look = await s.rt.api("GET", "auth/token/lookup-self", undefined, tok);
    expect(Date.parse(look.body.data.expire_time) / 1000).toBeLessThanOrEqual(exp + 1);
  });
});

async function selfSigned(claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: "ES256", typ: "JWT" }).sign(attacker.privateKey);
}

describe("attack 3: a look-alike JWT is not an attested login", () => {
  beforeAll(async () => {
    expect((await s.rt.api("POST", "sys/auth/other", { type: "jwt" })).status).toBe(204);
    expect((await s.rt.api("POST", "auth/other/config", { jwt_validation_pubkeys: [attacker.pem] })).status).toBe(204);
    await s.rt.api("PUT", "sys/policies/acl/lookalike", {
      policy: 'path "nitride/provision" { capabilities = ["read", "update"] }',
    });
  });

  const forged = async () => {
    const web = (await s.rt.api("GET", "nitride/workloads/web")).body.data;
    const now = Math.floor(Date.now() / 1000);
    return selfSigned({
      iss: `${s.rt.url}/v1/nitride`,
      sub: "web",
      aud: "buckypaper",
      iat: now,
      nbf: now,
      exp: now + 300,
      platform: "snp",
      evidence_digest: "sha384:" + "00".repeat(48),
      policy_hash: web.policy_hash,
      measurement: GOOD_MEASUREMENT,
      jti: "forged",
    });
  };

  it("a role handing nitride-workload-{{sub}} to a JWT from another key is refused at login", async () => {
    await s.rt.api("POST", "auth/other/role/grant", {
      bound_audiences: ["buckypaper"],
      token_policies: ["nitride-workload-{{sub}}"],
      token_policies_template_claims: true,
    });
    const r = await s.rt.api("POST", "auth/other/login", { role: "grant", jwt: await forged() }, "");
    expect(r.status).toBe(403);
    expect(r.body.errors[0]).toMatch(/only to an attested login/);
  });

  it("a login on another mount carries no attested mark and gets no provisioning bundle", async () => {
    await s.rt.api("POST", "auth/other/role/plain", { bound_audiences: ["buckypaper"], token_policies: ["lookalike"] });
    const r = await s.rt.api("POST", "auth/other/login", { role: "plain", jwt: await forged() }, "");
    expect(r.status).toBe(200);
    expect(r.body.auth.metadata.attested).toBeUndefined();
    expect(r.body.auth.metadata.workload_id).toBeUndefined();
    const p = await s.rt.api("GET", "nitride/provision", undefined, r.body.auth.client_token);
    expect(p.status).toBe(403);
    expect(JSON.stringify(p.body)).not.toContain("web-db-secret");
  });

  it("claim_mappings cannot write the attested metadata", async () => {
    for (const key of ["attested", "nitride_mount", "workload_id", "policy_hash", "role"]) {
      const r = await s.rt.api("POST", "auth/other/role/mapper", {
        bound_audiences: ["buckypaper"],
        token_policies: ["lookalike"],
        claim_mappings: { sub: key },
      });
      expect(r.status, key).toBe(400);
      expect(r.body.errors[0]).toMatch(/reserved/);
    }
  });

  it("the real attested login still gets its bundle", async () => {
    const l = await login(s, (await attestAs(s, "web")).body.data.token);
    expect(l.body.auth.metadata).toMatchObject({ attested: "nitride", nitride_mount: "nitride", workload_id: "web" });
    const p = await s.rt.api("GET", "nitride/provision", undefined, l.body.auth.client_token);
    expect(p.status).toBe(200);
    expect(p.body.data.kv["secret/data/web/db"].password).toBe("web-db-secret");
  });
});

describe("attack 8: JWT leeways mean what they mean in Vault", () => {
  beforeAll(async () => {
    expect((await s.rt.api("POST", "sys/auth/leeway", { type: "jwt" })).status).toBe(204);
    expect((await s.rt.api("POST", "auth/leeway/config", { jwt_validation_pubkeys: [attacker.pem] })).status).toBe(204);
  });
  const role = async (name: string, leeways: Record<string, number>) =>
    expect(
      (await s.rt.api("POST", `auth/leeway/role/${name}`, { bound_subject: "svc", token_policies: ["x"], ...leeways }))
        .status,
    ).toBe(204);
  const tryLogin = async (name: string, times: Record<string, number>) => {
    const now = Math.floor(Date.now() / 1000);
    const claims: Record<string, unknown> = { sub: "svc" };
    for (const [k, dt] of Object.entries(times)) claims[k] = now + dt;
    return (await s.rt.api("POST", "auth/leeway/login", { role: name, jwt: await selfSigned(claims) }, "")).status;
  };

  it("-1 disables: a token 100 s past exp is refused (not_before_leeway left at its default)", async () => {
    await role("strict", { expiration_leeway: -1, clock_skew_leeway: -1 });
    expect(await tryLogin("strict", { iat: -400, exp: -100 })).toBe(403);
    expect(await tryLogin("strict", { iat: -400, exp: -2 })).toBe(403);
    expect(await tryLogin("strict", { iat: -10, exp: 100 })).toBe(200);
  });

  it("0 selects Vault's default (60 s of clock skew), not zero", async () => {
    await role("zero", { expiration_leeway: 0, clock_skew_leeway: 0, not_before_leeway: 0 });
    expect(await tryLogin("zero", { iat: -400, exp: -30 })).toBe(200);
    expect(await tryLogin("zero", { iat: -400, exp: -100 })).toBe(403);
  });

  it("expiration/not-before leeways do not stretch a present exp or nbf; clock skew applies to each", async () => {
    await role("wide", { expiration_leeway: 1000, not_before_leeway: 1000, clock_skew_leeway: 30 });
    expect(await tryLogin("wide", { iat: -400, exp: -100 })).toBe(403);
    expect(await tryLogin("wide", { iat: -400, exp: -20 })).toBe(200);
    expect(await tryLogin("wide", { nbf: 20, exp: 300 })).toBe(200);
    expect(await tryLogin("wide", { nbf: 100, exp: 300 })).toBe(403);
    expect(await tryLogin("wide", { iat: 100, exp: 300 })).toBe(403);
  });

  it("expiration_leeway sets the lifetime of a token without exp; a token with no time claim is refused", async () => {
    await role("noexp-short", { expiration_leeway: 100, clock_skew_leeway: -1 });
    await role("noexp-long", { expiration_leeway: 300, clock_skew_leeway: -1 });
    expect(await tryLogin("noexp-short", { iat: -200 })).toBe(403);
    expect(await tryLogin("noexp-long", { iat: -200 })).toBe(200);
    expect(await tryLogin("noexp-long", {})).toBe(403);
  });
});
