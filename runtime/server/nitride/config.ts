// Nitride's own configuration (PUT nitride/config), stored in its barrier-encrypted mount storage so
// every replica sees the same: token audience/TTL limits and what evidence roots are trusted.
import { LogicalError } from "../vault/backend.js";
import type { TrustConfig, SimulatedSnpAnchor } from "../../attestation/policy.js";
import { optBool, optList, optString } from "../vault/fields.js";
import { parseDuration } from "./duration.js";
import { certsFrom } from "../../attestation/gce/x509.js";

/**
 * JWS algorithms for workload tokens: ES384 (P-384, the default: what Vault/OpenBao JWT auth verify),
 * EdDSA (Ed25519: an order of magnitude less CPU to sign and verify), or ML-DSA-65 (FIPS 204, post-quantum;
 * RFC 9964 identifiers, docs/post-quantum.md lists the verifiers that accept it today).
 */
export type TokenAlgorithm = "ES384" | "EdDSA" | "ML-DSA-65";
export const TOKEN_ALGORITHMS: readonly TokenAlgorithm[] = ["ES384", "EdDSA", "ML-DSA-65"];

/** The algorithm named by field `field`, or a 400 naming the field and the allowed values. */
export function tokenAlgorithmField(v: unknown, field: string): TokenAlgorithm {
  if (!TOKEN_ALGORITHMS.includes(v as TokenAlgorithm))
    throw new LogicalError(400, `${field}: must be ${TOKEN_ALGORITHMS.map((x) => `"${x}"`).join(", ")}`);
  return v as TokenAlgorithm;
}

export interface NitrideConfig {
  /**
   * `aud` of workload tokens when an operator sets one (a relying party's name, e.g. an external Vault's role
   * binding). Empty (the default): each token names this runtime and its workload (workloadTokenAudience).
   */
  audience: string;
  /** Default workload-token lifetime (seconds) when the workload does not set one; minutes-long by design. */
  token_ttl: number;
  /** JWS algorithm of new workload tokens; changing it rotates the signing key (old tokens stay valid). */
  token_algorithm: TokenAlgorithm;
  challenge_ttl: number;
  /**
   * How long an EK credential (vtpm.ekPublics) may go unanswered (seconds). TPM2_ActivateCredential takes well
   * under a second on a vTPM; a short window limits how long a pending attestation is worth attacking.
   */
  ek_credential_ttl: number;
  /** AMD KDS access for VCEKs/CRLs (off in air-gapped or test setups). */
  kds: "online" | "offline" | "off";
  kds_cache_dir?: string;
  /** Operator directory with AMD ARK/ASK/ASVK certificates and CRLs (air-gapped use). */
  amd_cert_dir?: string;
  /** Simulated SNP roots (tests, local stack only): evidence chaining to them is marked simulated. */
  simulated_snp_anchors: Array<{ product: SimulatedSnpAnchor["product"]; ark_sha256: string; ca_certs: string[] }>;
  /** SHA-256 fingerprints of simulated Intel roots (runtime/attestation/tdx/simulator.ts). */
  simulated_tdx_roots: string[];
  /** Simulated AWS Nitro roots (DER, base64; runtime/sim/nitrotpm.ts): NitroTPM documents under them are simulated. */
  simulated_nitro_roots: string[];
  /** Fetch TDX collateral (TCB info, QE identity, CRLs) from Intel PCS. */
  intel_pcs: "online" | "off";
  /** Without it, simulated anchors/roots are ignored (belt and braces for production). */
  accept_simulated: boolean;
  /**
   * Google's GCE-cc-tcb-root (PEM), which GCE launch endorsements must chain to; obtained by the operator from
   * pki.goog/cloud_integrity/GCE-cc-tcb-root_1.crt. Without it no workload with a `gce` policy attests.
   */
  gce_tcb_roots: string[];
  /** Simulated GCE EK/AK CA roots (PEM; tests, local stack), honoured only with accept_simulated. */
  simulated_gce_ak_roots: string[];
}

export const DEFAULT_CONFIG: NitrideConfig = {
  audience: "",
  token_ttl: 300,
  token_algorithm: "ES384",
  challenge_ttl: 60,
  ek_credential_ttl: 30,
  kds: "online",
  simulated_snp_anchors: [],
  simulated_tdx_roots: [],
  simulated_nitro_roots: [],
  intel_pcs: "online",
  accept_simulated: false,
  gce_tcb_roots: [],
  simulated_gce_ak_roots: [],
};

/** Workload tokens are meant to be short-lived. */
export const MAX_TOKEN_TTL_S = 3600;

export function configFrom(data: Record<string, unknown>, prev: NitrideConfig): NitrideConfig {
  const out: NitrideConfig = { ...prev };
  // "" goes back to the runtime-specific default.
  if (data.audience !== undefined) out.audience = optString(data, "audience") ?? "";
  if (data.token_ttl !== undefined) out.token_ttl = parseDuration(data.token_ttl, "token_ttl") ?? prev.token_ttl;
  if (out.token_ttl < 1 || out.token_ttl > MAX_TOKEN_TTL_S)
    throw new LogicalError(400, `token_ttl: must be between 1s and ${MAX_TOKEN_TTL_S}s`);
  if (data.token_algorithm !== undefined) {
    out.token_algorithm = tokenAlgorithmField(optString(data, "token_algorithm"), "token_algorithm");
  }
  if (data.challenge_ttl !== undefined)
    out.challenge_ttl = parseDuration(data.challenge_ttl, "challenge_ttl") ?? prev.challenge_ttl;
  if (out.challenge_ttl < 1 || out.challenge_ttl > 600)
    throw new LogicalError(400, "challenge_ttl: must be between 1s and 600s");
  if (data.ek_credential_ttl !== undefined)
    out.ek_credential_ttl = parseDuration(data.ek_credential_ttl, "ek_credential_ttl") ?? prev.ek_credential_ttl;
  if (out.ek_credential_ttl < 1 || out.ek_credential_ttl > 600)
    throw new LogicalError(400, "ek_credential_ttl: must be between 1s and 600s");
  if (data.kds !== undefined) {
    const k = optString(data, "kds");
    if (k !== "online" && k !== "offline" && k !== "off")
      throw new LogicalError(400, `kds: must be "online", "offline" or "off"`);
    out.kds = k;
  }
  if (data.kds_cache_dir !== undefined) out.kds_cache_dir = optString(data, "kds_cache_dir") || undefined;
  if (data.amd_cert_dir !== undefined) out.amd_cert_dir = optString(data, "amd_cert_dir") || undefined;
  if (data.intel_pcs !== undefined) {
    const v = optString(data, "intel_pcs");
    if (v !== "online" && v !== "off") throw new LogicalError(400, `intel_pcs: must be "online" or "off"`);
    out.intel_pcs = v;
  }
  if (data.simulated_tdx_roots !== undefined) {
    out.simulated_tdx_roots = optList(data, "simulated_tdx_roots").map((r, i) => {
      if (!/^[0-9a-f]{64}$/.test(r))
        throw new LogicalError(400, `simulated_tdx_roots[${i}]: must be 64 lowercase hex digits`);
      return r;
    });
  }
  if (data.simulated_nitro_roots !== undefined)
    out.simulated_nitro_roots = optList(data, "simulated_nitro_roots").map((r, i) => {
      const der = Buffer.from(r, "base64");
      if (der.length < 64 || der.toString("base64") !== r)
        throw new LogicalError(400, `simulated_nitro_roots[${i}]: must be a DER certificate in base64`);
      return r;
    });
  out.accept_simulated = optBool(data, "accept_simulated", prev.accept_simulated);
  for (const k of ["gce_tcb_roots", "simulated_gce_ak_roots"] as const)
    if (data[k] !== undefined)
      out[k] = optList(data, k).map((pem, i) => {
        if (!/^-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----\s*$/.test(pem))
          throw new LogicalError(400, `${k}[${i}]: must be one PEM certificate`);
        return pem;
      });
  if (data.simulated_snp_anchors !== undefined) {
    const v = data.simulated_snp_anchors;
    if (!Array.isArray(v)) throw new LogicalError(400, "simulated_snp_anchors: must be a list");
    out.simulated_snp_anchors = v.map((a, i) => {
      const f = `simulated_snp_anchors[${i}]`;
      if (typeof a !== "object" || a === null) throw new LogicalError(400, `${f}: must be an object`);
      const o = a as Record<string, unknown>;
      const product = optString(o, "product");
      if (product !== "Milan" && product !== "Genoa" && product !== "Turin")
        throw new LogicalError(400, `${f}.product: must be Milan, Genoa or Turin`);
      const ark = optString(o, "ark_sha256") ?? "";
      if (!/^[0-9a-f]{64}$/.test(ark)) throw new LogicalError(400, `${f}.ark_sha256: must be 64 lowercase hex digits`);
      return { product, ark_sha256: ark, ca_certs: optList(o, "ca_certs") };
    });
  }
  return out;
}

export function trustFrom(c: NitrideConfig): TrustConfig {
  const snp: NonNullable<TrustConfig["snp"]> = {};
  if (c.amd_cert_dir) snp.certDir = c.amd_cert_dir;
  if (c.kds !== "off")
    snp.kds = { offline: c.kds === "offline", ...(c.kds_cache_dir ? { cacheDir: c.kds_cache_dir } : {}) };
  if (c.accept_simulated && c.simulated_snp_anchors.length) {
    snp.simulated = c.simulated_snp_anchors.map((a) => ({
      simulated: true as const,
      product: a.product,
      arkSha256: a.ark_sha256,
      caCerts: a.ca_certs.map((x) => new Uint8Array(Buffer.from(x, "base64"))),
    }));
  }
  const tdx: NonNullable<TrustConfig["tdx"]> = { fetchCollateral: c.intel_pcs === "online" };
  if (c.accept_simulated && c.simulated_tdx_roots?.length) tdx.simulatedRoots = [...c.simulated_tdx_roots];
  const aws: NonNullable<TrustConfig["aws"]> = {};
  if (c.accept_simulated && c.simulated_nitro_roots?.length)
    aws.testRoots = c.simulated_nitro_roots.map((r) => new Uint8Array(Buffer.from(r, "base64")));
  const pem = (p: string) => new Uint8Array(Buffer.from(p));
  const gce: NonNullable<TrustConfig["gce"]> = { tcbRoots: (c.gce_tcb_roots ?? []).map(pem) };
  if (c.accept_simulated && c.simulated_gce_ak_roots?.length)
    gce.simulatedAkRoots = c.simulated_gce_ak_roots.flatMap((p) => certsFrom(p));
  return { snp, tdx, aws, gce };
}

/** The config as shown by GET nitride/config (nothing in it is secret). */
/** The prefix of the default audiences: `buckypaper-nitride:<mount uuid>[:<workload id>]`. */
export const AUDIENCE_PREFIX = "buckypaper-nitride";

/**
 * This runtime's own audience: its Nitride mount's uuid (made once when the mount was created, kept in the
 * mount table, so the same for every worker and replica on the same storage and across restarts, and different
 * for every other runtime).
 */
export function runtimeAudience(mountUuid: string): string {
  return `${AUDIENCE_PREFIX}:${mountUuid}`;
}

/**
 * The `aud` of a workload token. Configured: that value, as before. Default: two values — this runtime's audience
 * and that plus the workload id — so a relying party binds either "any workload of this runtime" (then checks
 * `sub`) or exactly one workload of it; a token from another runtime matches neither (JWT `aud` semantics,
 * RFC 7519 §4.1.3: a recipient that does not identify itself with a value in `aud` rejects the token; Vault's
 * JWT auth: any one of `aud` must be in the role's `bound_audiences`).
 */
export function workloadTokenAudience(c: NitrideConfig, mountUuid: string, workloadId: string): string | string[] {
  if (c.audience) return c.audience;
  const rt = runtimeAudience(mountUuid);
  return [rt, `${rt}:${workloadId}`];
}

export function configView(c: NitrideConfig): Record<string, unknown> {
  return {
    ...c,
    simulated_snp_anchors: c.simulated_snp_anchors.map((a) => ({
      product: a.product,
      ark_sha256: a.ark_sha256,
      ca_certs: a.ca_certs.length,
    })),
    simulated_nitro_roots: (c.simulated_nitro_roots ?? []).length,
  };
}
