// ML-DSA-65 (FIPS 204) in JOSE, as RFC 9964 specifies it (published May 2026 from
// draft-ietf-cose-dilithium; the JOSE identifiers are unchanged since draft -08):
//   JWS "alg": "ML-DSA-65"; the signature is the raw 3309-byte FIPS 204 signature over the JWS signing
//   input, pure ML-DSA with the empty context string.
//   JWK "kty": "AKP" (Algorithm Key Pair) with "alg": "ML-DSA-65", "pub": base64url(1952-byte public
//   key) and, in a private JWK only, "priv": base64url(the 32-byte seed ξ of ML-DSA.KeyGen).
// jose (panva) knows these identifiers but signs and verifies through WebCrypto, which Node 22 has no
// ML-DSA for; so the JWS is built and checked here with @noble/post-quantum, and only this narrow
// subset is accepted: compact serialization, alg ML-DSA-65, no "crit", no unencoded payload.
import { randomBytes } from "node:crypto";
import { ml_dsa65 } from "@noble/post-quantum/ml-dsa.js";

export const ML_DSA_65 = "ML-DSA-65";
export const AKP = "AKP";
export const ML_DSA_65_PUBLIC_KEY_BYTES = 1952;
export const ML_DSA_65_SIGNATURE_BYTES = 3309;
export const ML_DSA_SEED_BYTES = 32;

/** A malformed key or JWS: names the field, never a key's bytes. */
export class JoseFormatError extends Error {
  override name = "JoseFormatError";
  constructor(
    readonly field: string,
    readonly detail: string,
  ) {
    super(`${field}: ${detail}`);
  }
}

/** The JWK members RFC 9964 defines for an ML-DSA key (plus the usual kid/use). */
export interface AkpJwk {
  kty: typeof AKP;
  alg: typeof ML_DSA_65;
  pub: string;
  priv?: string;
  kid?: string;
  use?: string;
}

const B64URL = /^[A-Za-z0-9_-]*$/;

/** Strict base64url (no padding, canonical: re-encodes to the same text), optionally of a fixed length. */
export function b64urlBytes(v: unknown, field: string, length?: number): Uint8Array {
  if (typeof v !== "string" || !B64URL.test(v)) throw new JoseFormatError(field, "must be base64url (no padding)");
  const b = Buffer.from(v, "base64url");
  if (b.toString("base64url") !== v) throw new JoseFormatError(field, "must be canonical base64url");
  if (length !== undefined && b.length !== length) throw new JoseFormatError(field, `must encode ${length} bytes`);
  return new Uint8Array(b);
}

function checkAkpHeader(jwk: unknown, field: string): Record<string, unknown> {
  if (typeof jwk !== "object" || jwk === null || Array.isArray(jwk))
    throw new JoseFormatError(field, "must be a JWK object");
  const o = jwk as Record<string, unknown>;
  if (o.kty !== AKP) throw new JoseFormatError(`${field}.kty`, `must be "${AKP}"`);
  // RFC 9964: the AKP key type needs "alg"; the parameter set is not guessed from the key's length.
  if (o.alg !== ML_DSA_65) throw new JoseFormatError(`${field}.alg`, `must be "${ML_DSA_65}"`);
  return o;
}

/** The public key of an AKP JWK. A JWK that also carries "priv" is refused: public keys are published. */
export function akpPublicKey(jwk: unknown, field = "jwk"): Uint8Array {
  const o = checkAkpHeader(jwk, field);
  if (o.priv !== undefined) throw new JoseFormatError(`${field}.priv`, "must not be present in a public key");
  return b64urlBytes(o.pub, `${field}.pub`, ML_DSA_65_PUBLIC_KEY_BYTES);
}

/** The key pair of a private AKP JWK: expanded from the seed, and "pub" must be the seed's public key. */
export function akpPrivateKey(jwk: unknown, field = "jwk"): { publicKey: Uint8Array; secretKey: Uint8Array } {
  const o = checkAkpHeader(jwk, field);
  const seed = b64urlBytes(o.priv, `${field}.priv`, ML_DSA_SEED_BYTES);
  const pub = b64urlBytes(o.pub, `${field}.pub`, ML_DSA_65_PUBLIC_KEY_BYTES);
  const kp = ml_dsa65.keygen(seed);
  if (Buffer.compare(Buffer.from(kp.publicKey), Buffer.from(pub)) !== 0)
    throw new JoseFormatError(`${field}.pub`, "is not the public key of priv");
  return kp;
}

/** A fresh ML-DSA-65 key as a private AKP JWK (seed) and its public JWK. */
export function generateAkpKeyPair(seed: Uint8Array = randomBytes(ML_DSA_SEED_BYTES)): {
  privateJwk: AkpJwk;
  publicJwk: AkpJwk;
} {
  const { publicKey } = ml_dsa65.keygen(seed);
  const pub = Buffer.from(publicKey).toString("base64url");
  return {
    privateJwk: { kty: AKP, alg: ML_DSA_65, pub, priv: Buffer.from(seed).toString("base64url") },
    publicJwk: { kty: AKP, alg: ML_DSA_65, pub },
  };
}

/** A compact JWS signed with ML-DSA-65 (hedged signing, empty context, as RFC 9964 says for JOSE). */
export function signMlDsaJws(header: Record<string, unknown>, payload: Uint8Array, secretKey: Uint8Array): string {
  if (header.alg !== ML_DSA_65) throw new JoseFormatError("header.alg", `must be "${ML_DSA_65}"`);
  const input = `${Buffer.from(JSON.stringify(header)).toString("base64url")}.${Buffer.from(payload).toString("base64url")}`;
  const sig = ml_dsa65.sign(new TextEncoder().encode(input), secretKey);
  return `${input}.${Buffer.from(sig).toString("base64url")}`;
}

export interface ParsedJws {
  header: Record<string, unknown>;
  payload: Uint8Array;
  signature: Uint8Array;
  /** ASCII(BASE64URL(header) ‖ "." ‖ BASE64URL(payload)): what the signature covers. */
  signingInput: Uint8Array;
}

/** Parses a compact JWS without checking its signature; refuses anything outside the subset above. */
export function parseCompactJws(jws: unknown, field = "jwt"): ParsedJws {
  if (typeof jws !== "string") throw new JoseFormatError(field, "must be a compact JWS string");
  const parts = jws.split(".");
  if (parts.length !== 3) throw new JoseFormatError(field, "must have three dot-separated parts");
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(b64urlBytes(parts[0], `${field} header`)).toString("utf8"));
  } catch (e) {
    if (e instanceof JoseFormatError) throw e;
    throw new JoseFormatError(`${field} header`, "must be JSON");
  }
  if (typeof header !== "object" || header === null || Array.isArray(header))
    throw new JoseFormatError(`${field} header`, "must be a JSON object");
  const h = header as Record<string, unknown>;
  if (typeof h.alg !== "string") throw new JoseFormatError(`${field} header.alg`, "must be a string");
  if (h.crit !== undefined) throw new JoseFormatError(`${field} header.crit`, "no critical extensions are supported");
  if (h.b64 !== undefined) throw new JoseFormatError(`${field} header.b64`, "unencoded payloads are not supported");
  return {
    header: h,
    payload: b64urlBytes(parts[1], `${field} payload`),
    signature: b64urlBytes(parts[2], `${field} signature`),
    signingInput: new TextEncoder().encode(`${parts[0]}.${parts[1]}`),
  };
}

/** Is this (untrusted) compact JWS's header alg ML-DSA-65? For routing only; proves nothing. */
export function isMlDsaJws(jws: string): boolean {
  try {
    return parseCompactJws(jws).header.alg === ML_DSA_65;
  } catch {
    return false;
  }
}

/** Why a JWS did not verify (the signature, or no key for it); a malformed JWS is a JoseFormatError. */
export class JwsVerificationError extends Error {
  override name = "JwsVerificationError";
}

/**
 * Verifies an ML-DSA-65 compact JWS against the ML-DSA-65 AKP keys of a JWKS (other keys are ignored:
 * an ES384 key never verifies an ML-DSA header, and the reverse). With a "kid" in the header, only the
 * key of that kid is tried. Returns the payload bytes and the key's kid.
 */
export function verifyMlDsaJws(jws: string, keys: readonly unknown[]): { payload: Uint8Array; kid?: string } {
  const p = parseCompactJws(jws);
  if (p.header.alg !== ML_DSA_65) throw new JoseFormatError("jwt header.alg", `must be "${ML_DSA_65}"`);
  if (p.signature.length !== ML_DSA_65_SIGNATURE_BYTES)
    throw new JwsVerificationError(`signature: an ML-DSA-65 signature is ${ML_DSA_65_SIGNATURE_BYTES} bytes`);
  const kid = p.header.kid;
  const candidates = keys.filter((k): k is Record<string, unknown> => {
    if (typeof k !== "object" || k === null) return false;
    const o = k as Record<string, unknown>;
    return o.kty === AKP && o.alg === ML_DSA_65 && (kid === undefined || o.kid === kid);
  });
  if (!candidates.length) throw new JwsVerificationError("no ML-DSA-65 key matches the JWS");
  for (const k of candidates) {
    let pub: Uint8Array;
    try {
      pub = akpPublicKey(k, "jwks key");
    } catch {
      continue; // a malformed key in a JWKS verifies nothing
    }
    if (ml_dsa65.verify(p.signature, p.signingInput, pub))
      return { payload: p.payload, ...(typeof k.kid === "string" ? { kid: k.kid } : {}) };
  }
  throw new JwsVerificationError("the signature does not verify with any ML-DSA-65 key");
}

/**
 * An ML-DSA-65 JWT's claims after its signature verified (verifyMlDsaJws) and, when given, its issuer
 * matched. Time claims are the caller's (Vault's leeway rules differ from jose's single tolerance).
 */
export function verifyMlDsaJwt(jwt: string, keys: readonly unknown[], opts: { issuer?: string } = {}) {
  const { payload, kid } = verifyMlDsaJws(jwt, keys);
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(payload).toString("utf8"));
  } catch {
    throw new JoseFormatError("jwt payload", "must be JSON");
  }
  if (typeof claims !== "object" || claims === null || Array.isArray(claims))
    throw new JoseFormatError("jwt payload", "must be a JSON object");
  const c = claims as Record<string, unknown>;
  if (opts.issuer !== undefined && c.iss !== opts.issuer) throw new JwsVerificationError("iss claim is invalid");
  return { claims: c, kid };
}
