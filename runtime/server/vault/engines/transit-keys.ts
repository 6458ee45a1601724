// Transit key types and their primitives. Each key version stores 32 random bytes ("key"): the AES key,
// or the FIPS 204 / X-Wing seed the asymmetric key pair is expanded from; public keys are stored beside
// them (they are shown by keys/:name, so a client can verify or encrypt without the runtime).
//   aes256-gcm96       AES-256-GCM, 96-bit nonce (Vault's default type)
//   ml-dsa-65          ML-DSA-65 (FIPS 204) signatures: pure ML-DSA, empty context, hedged signing
//   ml-kem-768-x25519  hybrid public-key encryption: the X-Wing KEM (draft-connolly-cfrg-xwing-kem:
//                      ML-KEM-768 + X25519, SHA3-256 combiner) + AES-256-GCM keyed by the KEM's shared
//                      secret. Like Vault's RSA keys: anyone with the public key can encrypt, only the
//                      runtime can decrypt; unlike them, a quantum adversary cannot.
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { ml_dsa65 } from "@noble/post-quantum/ml-dsa.js";
import { ml_kem768_x25519 } from "@noble/post-quantum/hybrid.js";
import { LogicalError } from "../backend.js";

export const KEY_TYPES = ["aes256-gcm96", "ml-dsa-65", "ml-kem-768-x25519"] as const;
export type TransitKeyType = (typeof KEY_TYPES)[number];

export const XWING_CIPHERTEXT_BYTES = 1120;
const GCM_NONCE = 12;
const GCM_TAG = 16;

export interface KeyVersion {
  /** base64 of 32 bytes: the AES key, or the seed of the asymmetric key pair. */
  key: string;
  /** base64 of the public key (asymmetric types). */
  public_key?: string;
  creation_time: string;
}

export const supportsSigning = (t: TransitKeyType) => t === "ml-dsa-65";
export const supportsEncryption = (t: TransitKeyType) => t !== "ml-dsa-65";

export function checkKeyType(type: string): TransitKeyType {
  if (!(KEY_TYPES as readonly string[]).includes(type))
    throw new LogicalError(400, `type: unsupported key type "${type}" (supported: ${KEY_TYPES.join(", ")})`);
  return type as TransitKeyType;
}

export function newKeyVersion(type: TransitKeyType): KeyVersion {
  const seed = randomBytes(32);
  const creation_time = new Date().toISOString();
  if (type === "aes256-gcm96") return { key: seed.toString("base64"), creation_time };
  const pub = type === "ml-dsa-65" ? ml_dsa65.keygen(seed).publicKey : ml_kem768_x25519.keygen(seed).publicKey;
  return { key: seed.toString("base64"), public_key: Buffer.from(pub).toString("base64"), creation_time };
}

/** `vault:v<N>:<base64>` → version and body; a 400 naming the field otherwise. */
export function parseVaultString(s: string, field: string): { version: number; body: Buffer } {
  const m = /^vault:v([1-9][0-9]{0,8}):([A-Za-z0-9+/]+={0,2})$/.exec(s);
  if (!m) throw new LogicalError(400, `${field}: invalid format (want vault:v<N>:<base64>)`);
  return { version: Number(m[1]), body: Buffer.from(m[2], "base64") };
}

/** Encrypts under one key version; the body format depends on the key type. */
export function encryptBody(type: TransitKeyType, v: KeyVersion, plaintext: Buffer, aad: Buffer): Buffer {
  let key: Buffer;
  let prefix = Buffer.alloc(0);
  if (type === "aes256-gcm96") key = Buffer.from(v.key, "base64");
  else if (type === "ml-kem-768-x25519") {
    const { cipherText, sharedSecret } = ml_kem768_x25519.encapsulate(Buffer.from(v.public_key!, "base64"));
    key = Buffer.from(sharedSecret);
    prefix = Buffer.from(cipherText);
  } else throw new LogicalError(400, `key type ${type} does not support encryption`);
  const nonce = randomBytes(GCM_NONCE);
  const c = createCipheriv("aes-256-gcm", key, nonce);
  if (aad.length) c.setAAD(aad);
  return Buffer.concat([prefix, nonce, c.update(plaintext), c.final(), c.getAuthTag()]);
}

/** Decrypts a body of encryptBody; any tampering is "message authentication failed". */
export function decryptBody(type: TransitKeyType, v: KeyVersion, body: Buffer, aad: Buffer): Buffer {
  let key: Buffer;
  let rest = body;
  if (type === "aes256-gcm96") key = Buffer.from(v.key, "base64");
  else if (type === "ml-kem-768-x25519") {
    if (body.length < XWING_CIPHERTEXT_BYTES + GCM_NONCE + GCM_TAG)
      throw new LogicalError(400, "ciphertext: too short");
    // ML-KEM decapsulation never fails: a changed KEM ciphertext gives another key (implicit rejection),
    // which the GCM tag then refuses.
    key = Buffer.from(
      ml_kem768_x25519.decapsulate(body.subarray(0, XWING_CIPHERTEXT_BYTES), Buffer.from(v.key, "base64")),
    );
    rest = body.subarray(XWING_CIPHERTEXT_BYTES);
  } else throw new LogicalError(400, `key type ${type} does not support decryption`);
  if (rest.length < GCM_NONCE + GCM_TAG) throw new LogicalError(400, "ciphertext: too short");
  try {
    const d = createDecipheriv("aes-256-gcm", key, rest.subarray(0, GCM_NONCE));
    if (aad.length) d.setAAD(aad);
    d.setAuthTag(rest.subarray(rest.length - GCM_TAG));
    return Buffer.concat([d.update(rest.subarray(GCM_NONCE, rest.length - GCM_TAG)), d.final()]);
  } catch {
    throw new LogicalError(400, "ciphertext: message authentication failed");
  }
}

/** Expanded ML-DSA secret keys by seed (expansion costs about as much as a signature). */
const expanded = new Map<string, Uint8Array>();

/** ML-DSA-65 signature (3309 bytes) over the input. */
export function signWith(v: KeyVersion, input: Buffer): Buffer {
  let sk = expanded.get(v.key);
  if (!sk) {
    if (expanded.size >= 64) expanded.delete(expanded.keys().next().value!);
    expanded.set(v.key, (sk = ml_dsa65.keygen(Buffer.from(v.key, "base64")).secretKey));
  }
  return Buffer.from(ml_dsa65.sign(input, sk));
}

export function verifyWith(v: KeyVersion, input: Buffer, signature: Buffer): boolean {
  if (signature.length !== ml_dsa65.lengths.signature) return false;
  return ml_dsa65.verify(signature, input, Buffer.from(v.public_key!, "base64"));
}
