// Recovery shares encrypted to operators — Vault's `pgp_keys` with a modern format: each Shamir share of
// the unseal key becomes one compact JWE (ECDH-ES+A256KW, A256GCM) to one operator's public JWK (X25519,
// or EC P-256/P-384/P-521). The ciphertext may sit anywhere (Pulumi outputs, a ticket); only the holder
// of the matching private JWK can open it, and a quorum of holders is needed to unseal.
import {
  CompactEncrypt,
  calculateJwkThumbprint,
  compactDecrypt,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JWK,
} from "jose";
import { SEAL_CONTENT_ENCRYPTION, SEAL_KEY_MANAGEMENT } from "../protocol/seal.js";

/** What one encrypted share carries (the JWE plaintext). */
export interface RecoveryShare {
  /** Format version. */
  v: 1;
  /** 1-based index of this share among `shares`. */
  index: number;
  shares: number;
  threshold: number;
  /** The share itself, base64 (what `runtime unseal` takes). */
  key: string;
}

export const RECOVERY_SHARE_CTY = "buckypaper-recovery-share+json";
// The same JWE algorithms as sealed answers (runtime/protocol/seal.ts).
const ALG = SEAL_KEY_MANAGEMENT;
const ENC = SEAL_CONTENT_ENCRYPTION;

export class RecoveryKeyError extends Error {
  override name = "RecoveryKeyError";
}

/** Parses an operator's public JWK (JSON text or object), naming `field` in errors. */
export function parseRecoveryPublicKey(v: unknown, field: string): JWK {
  let jwk: unknown = v;
  if (typeof v === "string") {
    try {
      jwk = JSON.parse(v);
    } catch {
      throw new RecoveryKeyError(`${field} is not a JSON Web Key (JSON)`);
    }
  }
  if (!jwk || typeof jwk !== "object" || Array.isArray(jwk)) throw new RecoveryKeyError(`${field} is not a JWK object`);
  const k = jwk as JWK;
  if ("d" in k) throw new RecoveryKeyError(`${field} is a private key; pass only the operator's public JWK`);
  const ok =
    (k.kty === "OKP" && k.crv === "X25519") || (k.kty === "EC" && ["P-256", "P-384", "P-521"].includes(k.crv ?? ""));
  if (!ok)
    throw new RecoveryKeyError(
      `${field} has kty '${String(k.kty)}' crv '${String(k.crv)}'; allowed: OKP X25519, EC P-256, EC P-384, EC P-521`,
    );
  return { kty: k.kty, crv: k.crv, x: k.x, ...(k.y !== undefined ? { y: k.y } : {}) };
}

/** A new operator recovery key pair (X25519): give the public JWK to the deployment, keep the private one. */
export async function generateRecoveryKey(): Promise<{ publicJwk: JWK; privateJwk: JWK }> {
  const { publicKey, privateKey } = await generateKeyPair(ALG, { crv: "X25519", extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const privateJwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(publicJwk);
  return { publicJwk: { ...publicJwk, kid }, privateJwk: { ...privateJwk, kid } };
}

/** Encrypts one share to one operator key. */
export async function encryptShare(share: RecoveryShare, operator: JWK): Promise<string> {
  const key = await importJWK({ ...operator, alg: ALG }, ALG);
  const kid = await calculateJwkThumbprint(operator);
  return new CompactEncrypt(new TextEncoder().encode(JSON.stringify(share)))
    .setProtectedHeader({ alg: ALG, enc: ENC, kid, cty: RECOVERY_SHARE_CTY })
    .encrypt(key);
}

export const ROOT_TOKEN_CTY = "buckypaper-root-token";

/** Encrypts a root token to one operator key (`runtime init --root-token-key`, Vault's -root-token-pgp-key). */
export async function encryptRootToken(token: string, operator: JWK): Promise<string> {
  const key = await importJWK({ ...operator, alg: ALG }, ALG);
  const kid = await calculateJwkThumbprint(operator);
  return new CompactEncrypt(new TextEncoder().encode(token))
    .setProtectedHeader({ alg: ALG, enc: ENC, kid, cty: ROOT_TOKEN_CTY })
    .encrypt(key);
}

/** Opens an encrypted root token with the operator's private JWK. */
export async function decryptRootToken(jwe: string, privateJwk: JWK): Promise<string> {
  const key = await importJWK({ ...privateJwk, alg: ALG }, ALG);
  let opened;
  try {
    opened = await compactDecrypt(jwe.trim(), key, {
      keyManagementAlgorithms: [ALG],
      contentEncryptionAlgorithms: [ENC],
    });
  } catch {
    throw new RecoveryKeyError(
      `this root token does not open with that key (it was encrypted to key ${shareKeyId(jwe) ?? "?"})`,
    );
  }
  if (opened.protectedHeader.cty !== ROOT_TOKEN_CTY)
    throw new RecoveryKeyError(`not an encrypted root token (cty '${String(opened.protectedHeader.cty)}')`);
  return new TextDecoder().decode(opened.plaintext);
}

/** Opens a share with the operator's private JWK; errors say which key the share was made for. */
export async function decryptShare(jwe: string, privateJwk: JWK): Promise<RecoveryShare> {
  const key = await importJWK({ ...privateJwk, alg: ALG }, ALG);
  let plaintext: Uint8Array;
  let header: { cty?: string };
  try {
    ({ plaintext, protectedHeader: header } = await compactDecrypt(jwe.trim(), key, {
      keyManagementAlgorithms: [ALG],
      contentEncryptionAlgorithms: [ENC],
    }));
  } catch {
    throw new RecoveryKeyError(
      `this recovery share does not open with that key (it was encrypted to key ${shareKeyId(jwe) ?? "?"})`,
    );
  }
  if (header.cty !== RECOVERY_SHARE_CTY)
    throw new RecoveryKeyError(`not a recovery share (cty '${String(header.cty)}')`);
  const s = JSON.parse(new TextDecoder().decode(plaintext)) as RecoveryShare;
  if (s.v !== 1 || typeof s.key !== "string") throw new RecoveryKeyError("recovery share: unknown format");
  return s;
}

/** The kid (operator key thumbprint) a share is encrypted to, from its protected header. */
export function shareKeyId(jwe: string): string | undefined {
  try {
    const h = JSON.parse(Buffer.from(jwe.trim().split(".")[0], "base64url").toString("utf8")) as { kid?: unknown };
    return typeof h.kid === "string" ? h.kid : undefined;
  } catch {
    return undefined;
  }
}

/** RFC 7638 thumbprint of a (public or private) JWK's public part. */
export function recoveryKeyId(jwk: JWK): Promise<string> {
  return calculateJwkThumbprint(
    jwk.kty === "OKP" ? { kty: jwk.kty, crv: jwk.crv, x: jwk.x } : { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y },
  );
}
