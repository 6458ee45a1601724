// The workload token: a short-lived JWT (ES384, or EdDSA / ML-DSA-65 when configured) that says which
// workload proved what, bound (cnf) to the ephemeral key whose hash was in REPORT_DATA. External
// Vault/OpenBao verify it through the JWKS (ES384/EdDSA; ML-DSA-65: see docs/post-quantum.md).
import { randomUUID } from "node:crypto";
import { SignJWT, type JWK } from "jose";
import type { Verdict } from "../../attestation/types.js";
import { signMlDsaJws } from "../../attestation/ml-dsa-jose.js";
import type { TokenSigningKey } from "./signing-keys.js";

export interface WorkloadTokenClaims {
  iss: string;
  sub: string;
  /** One configured audience, or this runtime's and this runtime's + workload's (nitride/config.ts). */
  aud: string | string[];
  exp: number;
  iat: number;
  nbf: number;
  jti: string;
  platform: string;
  measurement: string;
  rtmrs?: string[];
  tcb: Record<string, number | string>;
  evidence_digest: string;
  ref_version: number;
  policy_hash: string;
  simulated: boolean;
  /** The attested keys: the P-384 key, and with hybrid PQ sealing the ML-KEM-768 encapsulation key (base64url). */
  cnf: { jwk: JWK; mlkem768_ek?: string };
}

export function issuerFor(apiAddr: string, mountPoint: string): string {
  return `${apiAddr.replace(/\/+$/, "")}/v1/${mountPoint.replace(/\/+$/, "")}`;
}

export async function signWorkloadToken(input: {
  issuer: string;
  audience: string | string[];
  workloadId: string;
  ttlS: number;
  verdict: Verdict;
  refVersion: number;
  policyHash: string;
  ephemeralJwk: JWK;
  /** Bound in REPORT_DATA with the P-384 key (hybrid PQ sealing); answers are then sealed to both. */
  mlkemPublicKey?: Uint8Array;
  key: TokenSigningKey;
}): Promise<{ token: string; claims: WorkloadTokenClaims }> {
  const now = Math.floor(Date.now() / 1000);
  const c = input.verdict.claims!;
  const claims: WorkloadTokenClaims = {
    iss: input.issuer,
    sub: input.workloadId,
    aud: input.audience,
    iat: now,
    nbf: now,
    exp: now + input.ttlS,
    jti: randomUUID(),
    platform: c.platform,
    measurement: c.measurement,
    ...(c.rtmrs ? { rtmrs: c.rtmrs } : {}),
    tcb: c.tcb,
    evidence_digest: input.verdict.evidenceDigest,
    ref_version: input.refVersion,
    policy_hash: input.policyHash,
    simulated: input.verdict.simulated,
    cnf: input.mlkemPublicKey
      ? { jwk: input.ephemeralJwk, mlkem768_ek: Buffer.from(input.mlkemPublicKey).toString("base64url") }
      : { jwk: input.ephemeralJwk },
  };
  const header = { alg: input.key.alg, kid: input.key.kid, typ: "JWT" };
  const token =
    input.key.alg === "ML-DSA-65"
      ? signMlDsaJws(header, new TextEncoder().encode(JSON.stringify(claims)), input.key.key)
      : await new SignJWT({ ...claims }).setProtectedHeader(header).sign(input.key.key);
  return { token, claims };
}
