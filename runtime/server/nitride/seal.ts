// Response sealing: a response carrying secrets is encrypted to the workload's attested ephemeral key
// (the P-384 key bound in REPORT_DATA, carried as cnf.jwk in its token), so a TLS-terminating proxy
// sees only ciphertext. Compact JWE, ECDH-ES+A256KW / A256GCM; when the login also bound an ML-KEM-768 key
// (cnf.mlkem768_ek), the hybrid ML-KEM-768 + P-384 seal of runtime/attestation/hybrid-seal.ts instead, so a
// recorded answer stays closed to an adversary who later breaks P-384 alone.
import { CompactEncrypt, importJWK, type JWK } from "jose";
import { LogicalError, type CallerAuth } from "../vault/backend.js";
import { hybridSeal } from "../../attestation/hybrid-seal.js";
import { SEAL_CONTENT_ENCRYPTION, SEAL_HEADER, SEAL_KEY_MANAGEMENT, SEAL_MODE } from "../../protocol/seal.js";

export { SEAL_HEADER };
/** Token metadata key set by auth/jwt roles with seal_responses=true. */
export const SEAL_REQUIRED_META = "seal_responses";

export async function sealResponse(body: unknown, jwk: JWK): Promise<string> {
  const key = await importJWK({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, SEAL_KEY_MANAGEMENT);
  return new CompactEncrypt(Buffer.from(JSON.stringify(body), "utf8"))
    .setProtectedHeader({ alg: SEAL_KEY_MANAGEMENT, enc: SEAL_CONTENT_ENCRYPTION, cty: "application/json" })
    .encrypt(key);
}

/** The attested ephemeral key of the caller's login, if it has one. */
export function sealingKeyOf(auth: CallerAuth | undefined): JWK | undefined {
  const cnf = auth?.claims?.cnf as { jwk?: JWK } | undefined;
  const jwk = cnf?.jwk;
  return jwk && jwk.kty === "EC" && jwk.crv === "P-384" && typeof jwk.x === "string" && typeof jwk.y === "string"
    ? jwk
    : undefined;
}

/** The caller's attested ML-KEM-768 encapsulation key (hybrid logins), if it has one. */
export function hybridKeyOf(auth: CallerAuth | undefined): Buffer | undefined {
  const ek = (auth?.claims?.cnf as { mlkem768_ek?: unknown } | undefined)?.mlkem768_ek;
  return typeof ek === "string" && /^[A-Za-z0-9_-]+$/.test(ek) ? Buffer.from(ek, "base64url") : undefined;
}

/**
 * The Core's `responseSealer` hook: with `X-Buckypaper-Seal: ephemeral`, a body carrying secrets
 * becomes {"sealed": JWE}. Asking for sealing without an attested login is refused, never answered in clear.
 */
export async function responseSealer(ctx: {
  headers: Record<string, string>;
  auth?: CallerAuth;
  body: Record<string, unknown>;
  secretKeys: string[];
}): Promise<Record<string, unknown> | undefined> {
  const mode = ctx.headers[SEAL_HEADER];
  // A login whose role sets seal_responses is always sealed: whoever sees (or replays) its token in
  // transit, e.g. a TLS-terminating proxy, still cannot read the secrets.
  const required = ctx.auth?.metadata?.[SEAL_REQUIRED_META] === "required";
  if (mode === undefined && !required) return undefined;
  if (mode !== undefined && mode !== SEAL_MODE)
    throw new LogicalError(400, `${SEAL_HEADER}: only "${SEAL_MODE}" is supported`);
  if (!ctx.secretKeys.length) return undefined;
  const jwk = sealingKeyOf(ctx.auth);
  if (!jwk)
    throw new LogicalError(400, `${SEAL_HEADER}: the caller's login is not attested (no ephemeral key to seal to)`);
  // The token's claims were verified against Nitride's key ring: a hybrid login is never sealed classically.
  const ek = hybridKeyOf(ctx.auth);
  return { sealed: ek ? await hybridSeal(ctx.body, jwk, ek) : await sealResponse(ctx.body, jwk) };
}
