// The hybrid seal (runtime/attestation/hybrid-seal.ts) recomputed by independent code: kyber-py
// (ML-KEM-768, FIPS 203) decapsulates the seal's bp_mlkem_ct to the same shared secret as ours, and
// Python opens the whole seal from the documented construction (docs/post-quantum.md): P-384 ECDH with
// `cryptography`, ss = SHA3-256(ss_M ‖ ss_X ‖ ct_X ‖ pk_X ‖ "buckypaper/mlkem768-p384/v1"), then the
// JWE's AES-256-GCM with the protected header as AAD. With a wrong ML-KEM key it must not open.
import { describe, expect, it } from "vitest";
import { generateKeyPairSync } from "node:crypto";
import type { JWK } from "jose";
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";
import { hybridSeal } from "../../../runtime/attestation/hybrid-seal.js";
import { havePqPython, runPqPython } from "../../support/pq-python.js";

const SCRIPT = `
import base64, hashlib, json, sys
from kyber_py.ml_kem import ML_KEM_768
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_private_key, Encoding, PublicFormat
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
inp = json.load(sys.stdin)
b64u = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
h, ek, iv, ct, tag = inp["sealed"].split(".")
hdr = json.loads(b64u(h))
assert hdr["alg"] == "dir" and hdr["enc"] == "A256GCM" and ek == ""
ss_m = ML_KEM_768.decaps(bytes.fromhex(inp["dk"]), b64u(hdr["bp_mlkem_ct"]))
out = {"ss_m": ss_m.hex()}
priv = load_der_private_key(bytes.fromhex(inp["p384_pkcs8"]), None)
epk = hdr["epk"]
ct_x = b"\\x04" + b64u(epk["x"]) + b64u(epk["y"])
ss_x = priv.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP384R1(), ct_x))
pk_x = priv.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
cek = hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + b"buckypaper/mlkem768-p384/v1").digest()
try:
    out["plaintext"] = AESGCM(cek).decrypt(b64u(iv), b64u(ct) + b64u(tag), h.encode()).decode()
except Exception as e:
    out["error"] = type(e).__name__
print(json.dumps(out))
`;

describe("hybrid seal interop with kyber-py + cryptography", () => {
  const hasPy = havePqPython();
  it.runIf(hasPy)(
    "Python decapsulates to our ML-KEM shared secret and opens the seal; a wrong ML-KEM key does not",
    async () => {
      const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
      const kem = ml_kem768.keygen();
      const body = { disk_key: "k".repeat(44), kv: { "secret/data/web/db": { password: "pw" } } };
      const sealed = await hybridSeal(body, publicKey.export({ format: "jwk" }) as JWK, kem.publicKey);
      const header = JSON.parse(Buffer.from(sealed.split(".")[0], "base64url").toString()) as { bp_mlkem_ct: string };
      const ours = ml_kem768.decapsulate(Buffer.from(header.bp_mlkem_ct, "base64url"), kem.secretKey);
      const input = {
        sealed,
        dk: Buffer.from(kem.secretKey).toString("hex"),
        p384_pkcs8: privateKey.export({ format: "der", type: "pkcs8" }).toString("hex"),
      };
      const r = (await runPqPython(SCRIPT, input)) as { ss_m: string; plaintext?: string; error?: string };
      expect(r.ss_m).toBe(Buffer.from(ours).toString("hex"));
      expect(r.error).toBeUndefined();
      expect(JSON.parse(r.plaintext!)).toEqual(body);

      const wrong = ml_kem768.keygen();
      const w = (await runPqPython(SCRIPT, { ...input, dk: Buffer.from(wrong.secretKey).toString("hex") })) as {
        ss_m: string;
        plaintext?: string;
        error?: string;
      };
      expect(w.ss_m).not.toBe(r.ss_m);
      expect(w.plaintext).toBeUndefined();
      expect(w.error).toBe("InvalidTag");
    },
  );
});
