// Hybrid post-quantum sealing of answers to an attested workload: ML-KEM-768 (FIPS 203) + ECDH P-384,
// combined with the X-Wing combiner shape (draft-connolly-cfrg-xwing-kem, §"Combiner"):
//   ss = SHA3-256( ss_M ‖ ss_X ‖ ct_X ‖ pk_X ‖ label )
// ss_M: ML-KEM-768 shared secret (32 B); ss_X: P-384 ECDH x-coordinate (48 B); ct_X: the sender's
// ephemeral P-384 point and pk_X: the recipient's P-384 point (both SEC1 uncompressed, 97 B).
// Deviations from X-Wing (so this is NOT X-Wing and carries its own label): P-384 instead of X25519
// (P-384 is what the attested key already is), the label is ASCII HYBRID_LABEL instead of "\.//^\",
// and the ML-KEM key is a separate key (bound separately into REPORT_DATA), not derived from one seed.
// An attacker has to recover both ss_M and ss_X to get ss: breaking P-384 alone (a quantum adversary
// with a recorded bundle) or ML-KEM alone is not enough.
// The wire form is a compact JWE with alg "dir" / enc "A256GCM": the CEK is ss, and the protected header
// (authenticated as AES-GCM AAD) carries epk (ct_X as a JWK) and bp_mlkem_ct (ct_M, base64url).
import { createECDH, createPublicKey, type KeyObject } from "node:crypto";
import { CompactEncrypt, compactDecrypt, decodeProtectedHeader, type JWK } from "jose";
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";
import { sha3_256 } from "@noble/hashes/sha3.js";

/** A malformed key or seal header; names the field, never a secret. */
export class HybridSealError extends Error {
  override name = "HybridSealError";
  constructor(
    readonly field: string,
    readonly detail: string,
  ) {
    super(`${field}: ${detail}`);
  }
}

/** The `bp_kem` header value of a hybrid seal. */
export const HYBRID_KEM = "MLKEM768-P384-XWingCombiner-v1";
/** Domain-separation label hashed last, as X-Wing's label is. */
export const HYBRID_LABEL = Buffer.from("buckypaper/mlkem768-p384/v1", "ascii");
export const MLKEM768_EK_BYTES = 1184;
export const MLKEM768_CT_BYTES = 1088;

/** SHA3-256(ss_M ‖ ss_X ‖ ct_X ‖ pk_X ‖ label). */
export function combineSharedSecrets(ssM: Uint8Array, ssX: Uint8Array, ctX: Uint8Array, pkX: Uint8Array): Uint8Array {
  const h = sha3_256.create();
  for (const part of [ssM, ssX, ctX, pkX, HYBRID_LABEL]) h.update(part);
  return h.digest();
}

/** The SEC1 uncompressed point of a P-384 public key given as a JWK or a KeyObject. */
export function p384Point(key: JWK | KeyObject): Buffer {
  // The header's epk is untrusted JSON: anything but an object is a malformed key, not a TypeError.
  if (typeof key !== "object" || key === null || Array.isArray(key)) throw new HybridSealError("epk", "a P-384 key");
  const jwk = ("asymmetricKeyType" in key ? key.export({ format: "jwk" }) : key) as JWK;
  if (jwk.kty !== "EC" || jwk.crv !== "P-384" || typeof jwk.x !== "string" || typeof jwk.y !== "string")
    throw new HybridSealError("epk", "a P-384 key");
  const x = Buffer.from(jwk.x, "base64url");
  const y = Buffer.from(jwk.y, "base64url");
  if (x.length !== 48 || y.length !== 48) throw new HybridSealError("epk", "a P-384 key");
  return Buffer.concat([Buffer.from([4]), x, y]);
}

function pointJwk(point: Buffer): JWK {
  return {
    kty: "EC",
    crv: "P-384",
    x: point.subarray(1, 49).toString("base64url"),
    y: point.subarray(49, 97).toString("base64url"),
  };
}

export function checkMlKemPublicKey(ek: Uint8Array, field = "mlkem_public_key"): Uint8Array {
  // FIPS 203 §7.2 encapsulation-key check (length + modulus), done by the library.
  if (ek.length !== MLKEM768_EK_BYTES)
    throw new HybridSealError(field, `an ML-KEM-768 encapsulation key (${MLKEM768_EK_BYTES} bytes)`);
  try {
    ml_kem768.encapsulate(ek);
  } catch {
    throw new HybridSealError(field, "a valid ML-KEM-768 encapsulation key (FIPS 203 modulus check failed)");
  }
  return ek;
}

/** Seals a JSON body to (recipient P-384 key, recipient ML-KEM-768 encapsulation key). */
export async function hybridSeal(body: unknown, recipientP384: JWK, recipientMlKemEk: Uint8Array): Promise<string> {
  const pkX = p384Point(recipientP384);
  const { cipherText: ctM, sharedSecret: ssM } = ml_kem768.encapsulate(recipientMlKemEk);
  const ecdh = createECDH("secp384r1");
  const ctX = ecdh.generateKeys();
  const ssX = ecdh.computeSecret(pkX);
  const cek = combineSharedSecrets(ssM, ssX, ctX, pkX);
  return new CompactEncrypt(Buffer.from(JSON.stringify(body), "utf8"))
    .setProtectedHeader({
      alg: "dir",
      enc: "A256GCM",
      cty: "application/json",
      bp_kem: HYBRID_KEM,
      epk: pointJwk(ctX),
      bp_mlkem_ct: Buffer.from(ctM).toString("base64url"),
    })
    .encrypt(cek);
}

/** True when a sealed string is a hybrid seal (by its protected header). */
export function isHybridSeal(sealed: string): boolean {
  try {
    return decodeProtectedHeader(sealed).bp_kem === HYBRID_KEM;
  } catch {
    return false;
  }
}

/** The recipient's half: needs BOTH the P-384 private key and the ML-KEM-768 decapsulation key. */
export interface HybridRecipient {
  p384PrivateKey: KeyObject;
  mlkemSecretKey: Uint8Array;
}

/** Opens a hybrid seal; throws HybridSealError on a malformed header, jose errors on a wrong key. */
export async function hybridOpen(sealed: string, r: HybridRecipient): Promise<unknown> {
  const { plaintext } = await compactDecrypt(
    sealed,
    (header) => {
      if (header.bp_kem !== HYBRID_KEM) throw new HybridSealError("bp_kem", HYBRID_KEM);
      const ctMText = header.bp_mlkem_ct;
      if (typeof ctMText !== "string" || !/^[A-Za-z0-9_-]+$/.test(ctMText))
        throw new HybridSealError("bp_mlkem_ct", "base64url");
      const ctM = Buffer.from(ctMText, "base64url");
      if (ctM.length !== MLKEM768_CT_BYTES)
        throw new HybridSealError("bp_mlkem_ct", `an ML-KEM-768 ciphertext (${MLKEM768_CT_BYTES} bytes)`);
      const ctX = p384Point(header.epk as JWK);
      const pkX = p384Point(createPublicKey(r.p384PrivateKey));
      const ecdh = createECDH("secp384r1");
      const d = r.p384PrivateKey.export({ format: "jwk" }).d;
      if (!d) throw new HybridSealError("p384PrivateKey", "a P-384 private key");
      ecdh.setPrivateKey(Buffer.from(d, "base64url"));
      const ssX = ecdh.computeSecret(ctX);
      const ssM = ml_kem768.decapsulate(ctM, r.mlkemSecretKey);
      return combineSharedSecrets(ssM, ssX, ctX, pkX);
    },
    { keyManagementAlgorithms: ["dir"], contentEncryptionAlgorithms: ["A256GCM"] },
  );
  return JSON.parse(new TextDecoder().decode(plaintext));
}
