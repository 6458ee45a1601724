// Post-quantum transit key types over real HTTP: ml-dsa-65 signing keys (sign/verify in Vault's shapes,
// versions, rotation, min_encryption/min_decryption/min_available_version) and ml-kem-768-x25519
// (X-Wing hybrid encryption: encrypt/decrypt/rewrap/datakey). Hostile clients: the wrong key type for an
// operation, tampered signatures and ciphertexts, versions below the minimums or trimmed, a token whose
// policy only allows verify. Interop: dilithium-py verifies our signatures; a ciphertext built in Python
// from the X-Wing draft (kyber-py ML-KEM-768 + cryptography's X25519 + SHA3-256) decrypts here.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ml_dsa65 } from "@noble/post-quantum/ml-dsa.js";
import { registerNitrideEngines } from "../../../../runtime/server/nitride/register.js";
import { startTestRuntime, type TestRuntime } from "../../../support/runtime.js";
import { havePqPython, runPqPython } from "../../../support/pq-python.js";

let rt: TestRuntime;
beforeAll(async () => {
  rt = await startTestRuntime({
    register: (r) => registerNitrideEngines(r),
    mounts: { "transit/": { type: "transit" } },
  });
}, 60_000);
afterAll(async () => {
  await rt?.close();
});

const b64 = (s: string | Buffer) => Buffer.from(s).toString("base64");
async function ok(method: string, path: string, body?: unknown, token?: string) {
  const r = await rt.api(method, path, body, token);
  expect(r.status, `${method} ${path}: ${JSON.stringify(r.body)}`).toBeLessThan(300);
  return r.body?.data;
}
async function refused(method: string, path: string, body: unknown, status: number, match: RegExp, token?: string) {
  const r = await rt.api(method, path, body, token);
  expect(r.status, `${method} ${path}: ${JSON.stringify(r.body)}`).toBe(status);
  expect((r.body?.errors ?? [JSON.stringify(r.body)]).join("\n")).toMatch(match);
}
const sigBody = (sig: string) => Buffer.from(sig.split(":")[2], "base64");

describe("transit ml-dsa-65 signing keys", () => {
  it("creates a key that shows its public key and supports signing only", async () => {
    const k = await ok("POST", "transit/keys/signer", { type: "ml-dsa-65" });
    expect(k).toMatchObject({
      type: "ml-dsa-65",
      latest_version: 1,
      supports_signing: true,
      supports_encryption: false,
      supports_decryption: false,
    });
    expect(Buffer.from(k.keys["1"].public_key, "base64").length).toBe(1952);
    expect(JSON.stringify(k)).not.toMatch(/"key":/); // the seed never leaves storage
    await refused("POST", "transit/keys/bad", { type: "ml-dsa-44" }, 400, /type: unsupported key type "ml-dsa-44"/);
  });

  it("signs as vault:v1:<base64 3309-byte ML-DSA-65 signature>; verify accepts it and refuses tampering", async () => {
    const input = b64("release 1.2.3");
    const s = await ok("POST", "transit/sign/signer", { input });
    expect(s.signature).toMatch(/^vault:v1:[A-Za-z0-9+/]+=*$/);
    expect(s.key_version).toBe(1);
    expect(sigBody(s.signature).length).toBe(3309);
    // Independently: the public key from keys/signer verifies the raw signature (pure ML-DSA, empty context).
    const pub = Buffer.from((await ok("GET", "transit/keys/signer")).keys["1"].public_key, "base64");
    expect(ml_dsa65.verify(sigBody(s.signature), Buffer.from("release 1.2.3"), pub)).toBe(true);
    expect((await ok("POST", "transit/verify/signer", { input, signature: s.signature })).valid).toBe(true);
    // The Vault path with a hash algorithm segment works too (pure ML-DSA ignores it).
    expect((await ok("POST", "transit/verify/signer/sha2-256", { input, signature: s.signature })).valid).toBe(true);
    const flipped = sigBody(s.signature);
    flipped[1000] ^= 1;
    expect(
      (await ok("POST", "transit/verify/signer", { input, signature: `vault:v1:${flipped.toString("base64")}` })).valid,
    ).toBe(false);
    expect(
      (await ok("POST", "transit/verify/signer", { input: b64("release 1.2.4"), signature: s.signature })).valid,
    ).toBe(false);
    const truncated = `vault:v1:${sigBody(s.signature).subarray(0, 3000).toString("base64")}`;
    expect((await ok("POST", "transit/verify/signer", { input, signature: truncated })).valid).toBe(false);
    await refused(
      "POST",
      "transit/verify/signer",
      { input, signature: "vault:v1:%%%" },
      400,
      /signature: invalid format/,
    );
    await refused("POST", "transit/verify/signer", { input, signature: "v1:abc" }, 400, /signature: invalid format/);
    await refused(
      "POST",
      "transit/verify/signer",
      { input, signature: s.signature.replace("v1", "v9") },
      400,
      /version 9 does not exist/,
    );
    await refused("POST", "transit/sign/signer", { input, prehashed: true }, 400, /prehashed: not supported/);
    await refused("POST", "transit/sign/signer", {}, 400, /input/);
  });

  it("the wrong key type for the operation is a 400 naming it, both ways", async () => {
    await ok("POST", "transit/keys/aes", {});
    await refused(
      "POST",
      "transit/sign/aes",
      { input: b64("x") },
      400,
      /key type aes256-gcm96 does not support signing/,
    );
    await refused(
      "POST",
      "transit/verify/aes",
      { input: b64("x"), signature: "vault:v1:AAAA" },
      400,
      /does not support signing/,
    );
    await refused(
      "POST",
      "transit/encrypt/signer",
      { plaintext: b64("x") },
      400,
      /key type ml-dsa-65 does not support encrypt/,
    );
    await refused("POST", "transit/decrypt/signer", { ciphertext: "vault:v1:AAAA" }, 400, /does not support decrypt/);
    await refused("POST", "transit/datakey/plaintext/signer", {}, 400, /does not support datakey/);
    await refused("POST", "transit/rewrap/signer", { ciphertext: "vault:v1:AAAA" }, 400, /does not support decrypt/);
  });

  it("rotation: v2 signs, v1 signatures still verify until min_decryption_version; min_encryption_version bounds key_version", async () => {
    const input = b64("doc");
    const v1 = (await ok("POST", "transit/sign/signer", { input })).signature as string;
    const rot = await ok("POST", "transit/keys/signer/rotate");
    expect(rot.latest_version).toBe(2);
    expect(rot.keys["2"].public_key).not.toBe(rot.keys["1"].public_key);
    const v2 = await ok("POST", "transit/sign/signer", { input });
    expect(v2).toMatchObject({ key_version: 2 });
    expect(v2.signature.startsWith("vault:v2:")).toBe(true);
    // A v1 signature relabelled as v2 does not verify under v2's key.
    expect((await ok("POST", "transit/verify/signer", { input, signature: v1.replace("v1:", "v2:") })).valid).toBe(
      false,
    );
    expect((await ok("POST", "transit/verify/signer", { input, signature: v1 })).valid).toBe(true);
    expect((await ok("POST", "transit/sign/signer", { input, key_version: 1 })).key_version).toBe(1);
    await ok("POST", "transit/keys/signer/config", { min_encryption_version: 2 });
    await refused("POST", "transit/sign/signer", { input, key_version: 1 }, 400, /key_version: 1 is not usable/);
    await ok("POST", "transit/keys/signer/config", { min_decryption_version: 2 });
    await refused(
      "POST",
      "transit/verify/signer",
      { input, signature: v1 },
      400,
      /version 1 is below min_decryption_version/,
    );
    expect((await ok("POST", "transit/verify/signer", { input, signature: v2.signature })).valid).toBe(true);
  });

  it("trim deletes versions below min_available_version, within the minimums; trimmed versions are gone", async () => {
    await refused(
      "POST",
      "transit/keys/aes/trim",
      { min_available_version: 2 },
      400,
      /min_available_version: cannot be greater than min_decryption_version/,
    );
    const t = await ok("POST", "transit/keys/signer/trim", { min_available_version: 2 });
    expect(t.min_available_version).toBe(2);
    expect(Object.keys(t.keys)).toEqual(["2"]);
    await refused(
      "POST",
      "transit/keys/signer/config",
      { min_decryption_version: 1 },
      400,
      /versions below 2 were trimmed/,
    );
    await refused("POST", "transit/keys/signer/trim", { min_available_version: 1 }, 400, /cannot go below 2/);
    await refused(
      "POST",
      "transit/verify/signer",
      { input: b64("x"), signature: "vault:v1:AAAA" },
      400,
      /version 1 does not exist/,
    );
  });

  it("batch_input: one result per item, errors per item", async () => {
    const r = await ok("POST", "transit/sign/signer", {
      batch_input: [{ input: b64("a") }, { input: b64("b"), key_version: 1 }],
    });
    expect(r.batch_results[0].signature).toMatch(/^vault:v2:/);
    expect(r.batch_results[1].error).toMatch(/not usable/);
    const v = await ok("POST", "transit/verify/signer", {
      batch_input: [
        { input: b64("a"), signature: r.batch_results[0].signature },
        { input: b64("b"), signature: r.batch_results[0].signature },
      ],
    });
    expect(v.batch_results.map((x: { valid: boolean }) => x.valid)).toEqual([true, false]);
  });

  it("a token allowed only transit/verify cannot sign, rotate or read the key's config", async () => {
    await ok("PUT", "sys/policies/acl/verify-only", {
      policy: 'path "transit/verify/*" { capabilities = ["update"] }',
    });
    const t = (await rt.api("POST", "auth/token/create", { policies: ["verify-only"] })).body.auth.client_token;
    const input = b64("doc");
    const s = (await ok("POST", "transit/sign/signer", { input })).signature;
    expect((await ok("POST", "transit/verify/signer", { input, signature: s }, t)).valid).toBe(true);
    await refused("POST", "transit/sign/signer", { input }, 403, /permission denied/, t);
    await refused("POST", "transit/keys/signer/rotate", {}, 403, /permission denied/, t);
    await refused("POST", "transit/keys/signer/config", { min_decryption_version: 1 }, 403, /permission denied/, t);
  });
});

describe("transit ml-kem-768-x25519 (X-Wing) keys", () => {
  it("encrypts, decrypts, rewraps after rotation and issues data keys; tampering and wrong AAD fail", async () => {
    const k = await ok("POST", "transit/keys/kem", { type: "ml-kem-768-x25519" });
    expect(k).toMatchObject({ supports_encryption: true, supports_decryption: true, supports_signing: false });
    expect(Buffer.from(k.keys["1"].public_key, "base64").length).toBe(1216);
    const aad = b64("ctx");
    const enc = await ok("POST", "transit/encrypt/kem", { plaintext: b64("pq secret"), associated_data: aad });
    expect(enc.ciphertext).toMatch(/^vault:v1:/);
    // 1120-byte X-Wing ciphertext ‖ 12-byte nonce ‖ 9-byte body ‖ 16-byte tag.
    expect(sigBody(enc.ciphertext).length).toBe(1120 + 12 + 9 + 16);
    const dec = await ok("POST", "transit/decrypt/kem", { ciphertext: enc.ciphertext, associated_data: aad });
    expect(Buffer.from(dec.plaintext, "base64").toString()).toBe("pq secret");
    await refused(
      "POST",
      "transit/decrypt/kem",
      { ciphertext: enc.ciphertext, associated_data: b64("other") },
      400,
      /message authentication failed/,
    );
    for (const at of [10, 1125, 1140]) {
      const body = sigBody(enc.ciphertext);
      body[at] ^= 1; // in the KEM ciphertext, the nonce, the GCM body
      await refused(
        "POST",
        "transit/decrypt/kem",
        { ciphertext: `vault:v1:${body.toString("base64")}`, associated_data: aad },
        400,
        /message authentication failed/,
      );
    }
    await refused("POST", "transit/decrypt/kem", { ciphertext: `vault:v1:${b64("short")}` }, 400, /too short/);
    await refused("POST", "transit/sign/kem", { input: b64("x") }, 400, /does not support signing/);

    await ok("POST", "transit/keys/kem/rotate");
    const re = await ok("POST", "transit/rewrap/kem", { ciphertext: enc.ciphertext, associated_data: aad });
    expect(re.ciphertext).toMatch(/^vault:v2:/);
    // v1's ciphertext body under v2's key: ML-KEM's implicit rejection gives another key, GCM refuses.
    await refused(
      "POST",
      "transit/decrypt/kem",
      { ciphertext: enc.ciphertext.replace("v1:", "v2:"), associated_data: aad },
      400,
      /message authentication failed/,
    );
    await ok("POST", "transit/keys/kem/config", { min_decryption_version: 2 });
    await refused(
      "POST",
      "transit/decrypt/kem",
      { ciphertext: enc.ciphertext, associated_data: aad },
      400,
      /below min_decryption_version/,
    );
    expect(
      (await ok("POST", "transit/decrypt/kem", { ciphertext: re.ciphertext, associated_data: aad })).plaintext,
    ).toBe(b64("pq secret"));

    const dk = await ok("POST", "transit/datakey/plaintext/kem", { bits: 256 });
    expect(Buffer.from(dk.plaintext, "base64").length).toBe(32);
    expect((await ok("POST", "transit/decrypt/kem", { ciphertext: dk.ciphertext })).plaintext).toBe(dk.plaintext);
    const wrapped = await ok("POST", "transit/datakey/wrapped/kem", {});
    expect(wrapped.plaintext).toBeUndefined();
  });

  const hasPy = havePqPython();
  it.runIf(hasPy)(
    "interop: dilithium-py verifies a transit ML-DSA-65 signature; a Python X-Wing ciphertext decrypts here",
    async () => {
      const input = Buffer.from("interop message");
      const sig = (await ok("POST", "transit/sign/signer", { input: b64(input) })).signature as string;
      const signerPub = (await ok("GET", "transit/keys/signer")).keys["2"].public_key as string;
      const kemPub = (await ok("GET", "transit/keys/kem")).keys["2"].public_key as string;
      const script = `
import base64, hashlib, json, os, sys
from dilithium_py.ml_dsa import ML_DSA_65
from kyber_py.ml_kem import ML_KEM_768
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
inp = json.load(sys.stdin)
d = base64.b64decode
out = {}
sig = d(inp["sig"].split(":")[2])
out["verified"] = ML_DSA_65.verify(d(inp["signer_pub"]), d(inp["input"]), sig)
out["verified_other"] = ML_DSA_65.verify(d(inp["signer_pub"]), d(inp["input"]) + b"!", sig)
# X-Wing encapsulation (draft-connolly-cfrg-xwing-kem), written from the draft:
pk = d(inp["kem_pub"]); pk_m, pk_x = pk[:1184], pk[1184:]
ss_m, ct_m = ML_KEM_768.encaps(pk_m)
ek_x = X25519PrivateKey.generate()
ct_x = ek_x.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
ss_x = ek_x.exchange(X25519PublicKey.from_public_bytes(pk_x))
ss = hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + b"\\\\.//^\\\\").digest()
nonce = os.urandom(12)
body = ct_m + ct_x + nonce + AESGCM(ss).encrypt(nonce, b"from python", b"py-aad")
out["ciphertext"] = "vault:v2:" + base64.b64encode(body).decode()
print(json.dumps(out))
`;
      const r = (await runPqPython(script, { sig, signer_pub: signerPub, input: b64(input), kem_pub: kemPub })) as {
        verified: boolean;
        verified_other: boolean;
        ciphertext: string;
      };
      expect(r.verified).toBe(true);
      expect(r.verified_other).toBe(false);
      const dec = await ok("POST", "transit/decrypt/kem", { ciphertext: r.ciphertext, associated_data: b64("py-aad") });
      expect(Buffer.from(dec.plaintext, "base64").toString()).toBe("from python");
    },
  );
});
