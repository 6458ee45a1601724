// Hybrid post-quantum sealing end to end on the real server: a workload with require_pq_hybrid refuses a
// classical-only attestation (with the reason), accepts one that binds both its P-384 and ML-KEM-768 keys in
// REPORT_DATA, and its provisioning bundle is sealed so that neither key alone opens it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPairSync } from "node:crypto";
import { compactDecrypt, decodeJwt, decodeProtectedHeader } from "jose";
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";
import { attestAs, GOOD_MEASUREMENT, login, startNitrideStack, type NitrideStack } from "./nitride-support.js";
import {
  HYBRID_KEM,
  combineSharedSecrets,
  hybridOpen,
  hybridSeal,
  p384Point,
} from "../../../../runtime/attestation/hybrid-seal.js";
import { SEAL_REQUEST_HEADERS } from "../../../../runtime/protocol/seal.js";

describe("hybrid ML-KEM-768 + P-384 sealing", () => {
  let s: NitrideStack;
  beforeAll(async () => {
    s = await startNitrideStack();
    const r = await s.rt.api("PUT", "nitride/workloads/pq", {
      reference_values: { snp_measurements: [GOOD_MEASUREMENT] },
      secrets: { kv: ["secret/data/web/db"], disk_key: true },
      require_pq_hybrid: true,
    });
    expect(r.status).toBeLessThan(300);
  }, 60_000);
  afterAll(async () => s?.rt.close());

  it("the combiner is SHA3-256(ss_M ‖ ss_X ‖ ct_X ‖ pk_X ‖ label) and every input changes it", () => {
    const parts = [32, 48, 97, 97].map((n, i) => new Uint8Array(n).fill(i + 1));
    const base = Buffer.from(combineSharedSecrets(parts[0], parts[1], parts[2], parts[3])).toString("hex");
    expect(base).toHaveLength(64);
    for (let i = 0; i < 4; i++) {
      const p = parts.map((x) => Uint8Array.from(x));
      p[i][0] ^= 1;
      expect(Buffer.from(combineSharedSecrets(p[0], p[1], p[2], p[3])).toString("hex")).not.toBe(base);
    }
  });

  it("a hybrid seal opens with both keys, and with neither the P-384 key alone nor the ML-KEM key alone", async () => {
    const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" });
    const kem = ml_kem768.keygen();
    const sealed = await hybridSeal({ disk_key: "k" }, p384.publicKey.export({ format: "jwk" }), kem.publicKey);
    expect(await hybridOpen(sealed, { p384PrivateKey: p384.privateKey, mlkemSecretKey: kem.secretKey })).toEqual({
      disk_key: "k",
    });
    // The classical key alone: as a JWE recipient key, and inside the combiner with a wrong ML-KEM key.
    await expect(compactDecrypt(sealed, p384.privateKey)).rejects.toThrow();
    const otherKem = ml_kem768.keygen();
    await expect(
      hybridOpen(sealed, { p384PrivateKey: p384.privateKey, mlkemSecretKey: otherKem.secretKey }),
    ).rejects.toThrow();
    // The ML-KEM key alone (a quantum-safe key, but the P-384 half is someone else's).
    const otherP384 = generateKeyPairSync("ec", { namedCurve: "P-384" });
    await expect(
      hybridOpen(sealed, { p384PrivateKey: otherP384.privateKey, mlkemSecretKey: kem.secretKey }),
    ).rejects.toThrow();
    // Even knowing ss_M exactly, a guessed ss_X gives the wrong CEK.
    const h = decodeProtectedHeader(sealed);
    const ssM = ml_kem768.decapsulate(Buffer.from(h.bp_mlkem_ct as string, "base64url"), kem.secretKey);
    const wrong = combineSharedSecrets(ssM, new Uint8Array(48), p384Point(h.epk as never), p384Point(p384.publicKey));
    await expect(compactDecrypt(sealed, wrong)).rejects.toThrow();
  });

  it("require_pq_hybrid refuses a classical-only attestation with the reason, before consuming the nonce", async () => {
    const a = await attestAs(s, "pq");
    expect(a.status).toBe(403);
    expect(JSON.stringify(a.body)).toContain("require_pq_hybrid");
    // The same nonce still works for a hybrid attempt (nothing was consumed by the refusal).
    const b = await attestAs(s, "pq", { nonce: a.nonce, hybrid: true });
    expect(b.status).toBe(200);
  });

  it("an ML-KEM key not bound in REPORT_DATA is refused (an adversary substituting its own ML-KEM key)", async () => {
    const ch = await s.rt.api("POST", "nitride/challenge", { workload_id: "pq" }, "");
    const nonce = ch.body.data.nonce as string;
    // REPORT_DATA binds the P-384 key alone; the request adds an ML-KEM key the evidence never saw.
    const a = await attestAs(s, "pq", { nonce, hybrid: true, bindKey: Buffer.alloc(0) });
    expect(a.status).toBe(403);
    expect(JSON.stringify(a.body.data?.verdict ?? a.body)).toContain("policy.report-data");
  });

  it("a malformed ML-KEM key is a 400 naming the field", async () => {
    const ch = await s.rt.api("POST", "nitride/challenge", { workload_id: "pq" }, "");
    const a = await attestAs(s, "pq", { nonce: ch.body.data.nonce, hybrid: true });
    expect(a.status).toBe(200);
    const bad = { ...a.request, mlkem_public_key: Buffer.alloc(100).toString("base64") };
    const r = await s.rt.api("POST", "nitride/attest", bad, "");
    expect(r.status).toBe(400);
    expect(JSON.stringify(r.body)).toContain("mlkem_public_key");
  });

  it("the provisioning bundle of a hybrid login is hybrid-sealed: both keys open it, the classical key alone does not", async () => {
    const a = await attestAs(s, "pq", { hybrid: true });
    expect(a.status).toBe(200);
    const cnf = decodeJwt(a.body.data.token).cnf as { jwk: unknown; mlkem768_ek?: string };
    expect(Buffer.from(cnf.mlkem768_ek!, "base64url")).toEqual(Buffer.from(a.ephemeral.mlkem!.publicKey));
    const tok = (await login(s, a.body.data.token)).body.auth.client_token as string;
    const res = await fetch(`${s.rt.url}/v1/nitride/provision`, {
      headers: { "x-vault-token": tok, ...SEAL_REQUEST_HEADERS },
    });
    expect(res.status).toBe(200);
    const { sealed } = (await res.json()) as { sealed: string };
    expect(decodeProtectedHeader(sealed)).toMatchObject({ alg: "dir", enc: "A256GCM", bp_kem: HYBRID_KEM });
    expect(sealed).not.toContain("web-db-secret");
    const bundle = (await hybridOpen(sealed, {
      p384PrivateKey: a.ephemeral.privateKey,
      mlkemSecretKey: a.ephemeral.mlkem!.secretKey,
    })) as { data: { kv: Record<string, { password: string }>; disk_key: string } };
    expect(bundle.data.kv["secret/data/web/db"].password).toBe("web-db-secret");
    expect(bundle.data.disk_key).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    await expect(compactDecrypt(sealed, a.ephemeral.privateKey)).rejects.toThrow();
    await expect(
      hybridOpen(sealed, { p384PrivateKey: a.ephemeral.privateKey, mlkemSecretKey: ml_kem768.keygen().secretKey }),
    ).rejects.toThrow();
  });

  it("require_pq_hybrid also guards the bundle: no answer in clear, none to a classical login from before the switch", async () => {
    const a = await attestAs(s, "pq", { hybrid: true });
    const tok = (await login(s, a.body.data.token)).body.auth.client_token as string;
    // Without the seal header (a replayed token): refused, the secrets never leave in clear.
    const clear = await s.rt.api("GET", "nitride/provision", undefined, tok);
    expect(clear.status).toBe(403);
    expect(JSON.stringify(clear.body)).toContain("require_pq_hybrid");
    expect(JSON.stringify(clear.body)).not.toContain("web-db-secret");
    // A classical login made before the workload required hybrid sealing.
    const def = {
      reference_values: { snp_measurements: [GOOD_MEASUREMENT] },
      secrets: { kv: ["secret/data/web/db"] },
    };
    expect((await s.rt.api("PUT", "nitride/workloads/pq2", def)).status).toBeLessThan(300);
    const c = await attestAs(s, "pq2");
    expect(c.status).toBe(200);
    const ctok = (await login(s, c.body.data.token)).body.auth.client_token as string;
    expect((await s.rt.api("PUT", "nitride/workloads/pq2", { ...def, require_pq_hybrid: true })).status).toBeLessThan(
      300,
    );
    const res = await fetch(`${s.rt.url}/v1/nitride/provision`, {
      headers: { "x-vault-token": ctok, ...SEAL_REQUEST_HEADERS },
    });
    expect(res.status).toBe(403);
    expect(await res.text()).toContain("no ML-KEM-768 key");
  });

  it("classical-only workloads keep working: a classical login is still sealed with ECDH-ES+A256KW", async () => {
    const a = await attestAs(s, "web");
    expect(a.status).toBe(200);
    const tok = (await login(s, a.body.data.token)).body.auth.client_token as string;
    const res = await fetch(`${s.rt.url}/v1/secret/data/web/db`, {
      headers: { "x-vault-token": tok, ...SEAL_REQUEST_HEADERS },
    });
    const { sealed } = (await res.json()) as { sealed: string };
    expect(decodeProtectedHeader(sealed).alg).toBe("ECDH-ES+A256KW");
    expect((await compactDecrypt(sealed, a.ephemeral.privateKey)).plaintext.length).toBeGreaterThan(0);
  });
});
