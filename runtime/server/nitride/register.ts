// Registers Nitride and the engines/auth method that come with it (PKI, transit, SSH CA, JWT auth)
// in a BackendRegistry; the core then auto-mounts Nitride at "nitride/" and sys/mounts, sys/auth
// accept the other types.
import type { BackendRegistry } from "../vault/registry.js";
import { NitrideBackend, WORKLOAD_POLICY_PREFIX, type NitrideOptions } from "./backend.js";
import { LogicalError } from "../vault/backend.js";
import { PkiBackend } from "../vault/engines/pki.js";
import { TransitBackend } from "../vault/engines/transit.js";
import { SshBackend } from "../vault/engines/ssh.js";
import { JwtAuthBackend, type JwtAuthHooks } from "../vault/auth-jwt.js";
import { issuerFor } from "./token.js";
import { createLocalJWKSet, jwtVerify, type JWK } from "jose";
import { SEAL_REQUIRED_META, sealingKeyOf } from "./seal.js";
import { isMlDsaJws, verifyMlDsaJwt } from "../../attestation/ml-dsa-jose.js";

/** What Nitride adds to the JWT auth method: in-process verification of its tokens and response sealing. */
export const nitrideJwtHooks: JwtAuthHooks = {
  localIssuer: issuerFor,
  hasSealingKey: (claims) => sealingKeyOf({ accessor: "", policies: [], metadata: {}, claims }) !== undefined,
  sealRequiredMeta: SEAL_REQUIRED_META,
  attestationCurrent: async (system, mount, workloadId, hash) => {
    const r = await system.internalRequest("read", `${mount}/workloads/${workloadId}`).catch((e: unknown) => {
      if (e instanceof LogicalError && e.status < 500) return undefined; // deleted: the login no longer stands
      throw e;
    });
    return r?.data?.policy_hash === hash;
  },
  localAttestation: async (system, jwt, claims) => {
    // Only the auto-mounted Nitride (nitride/): its JWKS path is served by Nitride and nothing else.
    const mount = "nitride";
    const iss = issuerFor(system.apiAddr(), mount);
    if (claims.iss !== iss) return undefined;
    const r = await system.internalRequest("read", `${mount}/jwks/pq`).catch(() => undefined);
    const raw = r?.data?.http_raw_body;
    if (typeof raw !== "string") return undefined;
    try {
      const keys = (JSON.parse(raw) as { keys?: JWK[] }).keys ?? [];
      // Only the signature matters here; the auth method has already checked the claims.
      if (isMlDsaJws(jwt)) verifyMlDsaJwt(jwt, keys, { issuer: iss });
      else await jwtVerify(jwt, createLocalJWKSet({ keys }), { issuer: iss, clockTolerance: Number.MAX_SAFE_INTEGER });
      return mount;
    } catch {
      return undefined;
    }
  },
  workloadOfPolicy: (policy) =>
    policy.startsWith(WORKLOAD_POLICY_PREFIX) ? policy.slice(WORKLOAD_POLICY_PREFIX.length) : undefined,
};

export function registerNitrideEngines(r: BackendRegistry, opts: NitrideOptions = {}): BackendRegistry {
  r.registerSecret("nitride", (m) => new NitrideBackend({ ...opts, mountUuid: m.uuid }));
  r.registerSecret("pki", () => new PkiBackend());
  r.registerSecret("transit", () => new TransitBackend());
  r.registerSecret("ssh", () => new SshBackend());
  r.registerAuth("jwt", () => new JwtAuthBackend(nitrideJwtHooks));
  return r;
}

export { responseSealer, sealResponse } from "./seal.js";
