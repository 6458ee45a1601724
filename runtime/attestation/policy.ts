// What an appraisal requires (Policy) and what it trusts (TrustConfig), shared by every evidence kind.
// SNP fields are here; the TDX section is owned by the TDX/Azure verifier (runtime/attestation/tdx, azure)
// and is extended additively there. parsePolicy() turns operator JSON/YAML into a checked Policy.
import type { SnpProduct, TcbVersion } from "./snp/abi.js";
import type { KdsClient, KdsOptions } from "./snp/kds.js";
import { checkTdxPolicy, type TdxPolicy } from "./tdx/validate.js";
import type { TdxTrustOptions } from "./tdx/verify.js";
import type { TdxCollateral } from "./tdx/collateral.js";
import { parseAzurePolicy, type AzurePolicy } from "./azure/validate.js";
import { parseVtpmPolicy, type VtpmPolicy } from "./tpm/policy.js";
import { parseGcePolicy, type GcePolicy } from "./gce/policy.js";
import type { GceTrustConfig } from "./gce/verify.js";

/** SEV-SNP appraisal policy. An absent field means "not constrained", except where a default is stated. */
export interface SnpPolicy {
  /** Allowed MEASUREMENT values (48-byte hex). Absent = any measurement (only sensible for `verify` CLI use). */
  measurements?: string[];
  /** POLICY.DEBUG=1 is refused unless true. Default false. */
  allowDebug?: boolean;
  /** POLICY.MIGRATE_MA=1 (a migration agent may be associated) is refused unless true. Default false. */
  allowMigrationAgent?: boolean;
  /** false refuses guests whose POLICY allows SMT. Default: not constrained. */
  allowSmt?: boolean;
  /** true requires POLICY.SINGLE_SOCKET. Default false. */
  requireSingleSocket?: boolean;
  /** Exact VMPL the report was requested from (0..3). */
  vmpl?: number;
  /** Minimum REPORTED_TCB per component (Turin also `fmc`). */
  minTcb?: Partial<TcbVersion>;
  /** Minimum LAUNCH_TCB per component. */
  minLaunchTcb?: Partial<TcbVersion>;
  minGuestSvn?: number;
  /** Exact HOST_DATA (32-byte hex). */
  hostData?: string;
  /** ID_KEY_DIGEST must be one of these (48-byte hex), unless AUTHOR_KEY_EN with a trusted author key. */
  trustedIdKeyDigests?: string[];
  /** AUTHOR_KEY_DIGEST values (48-byte hex) accepted when AUTHOR_KEY_EN=1. */
  trustedAuthorKeyDigests?: string[];
  /** Exact FAMILY_ID / IMAGE_ID (16-byte hex). */
  familyId?: string;
  imageId?: string;
  /** CHIP_ID allow-list (64-byte hex; for Turin the first 8 bytes are compared). */
  allowedChipIds?: string[];
  /** Minimum guest ABI version from POLICY. */
  minAbi?: { major: number; minor: number };
  /** Minimum firmware version (CURRENT_MAJOR.MINOR, BUILD). */
  minFirmware?: { major: number; minor: number; build?: number };
  /** Accepted products. Default: all. */
  products?: SnpProduct[];
  /** VLEK-signed reports (cloud-provider keys) are accepted unless false. Default true. */
  allowVlek?: boolean;
  /** PLATFORM_INFO features the host must have enabled. */
  requirePlatform?: PlatformFeature[];
  /** false refuses hosts with SMT enabled (PLATFORM_INFO.SMT_EN), whatever the guest policy says. */
  allowPlatformSmt?: boolean;
  /** true refuses provisional firmware: COMMITTED_TCB and version must equal CURRENT_TCB and version. */
  requireCommittedFirmware?: boolean;
}

/** PLATFORM_INFO bits a policy can require (firmware ABI spec; bit 0 SMT_EN is `allowPlatformSmt`). */
export const PLATFORM_FEATURES = {
  tsme: 1,
  ecc: 2,
  "rapl-disabled": 3,
  "ciphertext-hiding": 4,
  "alias-check-complete": 5,
} as const;
export type PlatformFeature = keyof typeof PLATFORM_FEATURES;

// ---- TDX section: owned by the TDX/Azure engineer (runtime/attestation/tdx/, azure/). ----------------
export type TdxPolicySection = TdxPolicy;

export interface Policy {
  snp?: SnpPolicy;
  tdx?: TdxPolicySection;
  /** Azure CVMs: vTPM PCR allow-lists and vm-configuration claims (the hardware part uses snp/tdx). */
  azure?: AzurePolicy;
  /** Refuse evidence unless the caller supplied an expected REPORT_DATA (nonce + key binding). Default false. */
  requireReportDataBinding?: boolean;
  /** AWS/GCE: the vTPM quote + event log riding on SNP/TDX evidence (runtime/attestation/tpm/policy.ts). */
  vtpm?: VtpmPolicy;
  /** GCE: the SNP measurement / TDX MRTD must be endorsed by Google for this VM's shape (gce/policy.ts). */
  gce?: GcePolicy;
}

/** The default policy: authentic evidence, debug and migration agents refused, nothing else pinned. */
export const DEFAULT_POLICY: Readonly<Policy> = Object.freeze({ snp: Object.freeze({}) });

// ---- trust ----------------------------------------------------------------------------------------

/** A simulated AMD root (runtime/attestation/snp/simulator.ts). Trusted only when listed in TrustConfig. */
export interface SimulatedSnpAnchor {
  simulated: true;
  product: SnpProduct;
  /** SHA-256 (DER, hex) of the simulated ARK. */
  arkSha256: string;
  /** The simulated ARK/ASK/ASVK certificates (DER), usable as a CA source. */
  caCerts: Uint8Array[];
}

export interface SnpTrustConfig {
  /** Operator directory with ARK/ASK/ASVK certificates (PEM/DER) and CRLs (*.crl), e.g. for air-gapped use. */
  certDir?: string;
  /** Further CA certificates (PEM or DER). Trust still comes only from the pinned ARK fingerprints. */
  caCerts?: Uint8Array[];
  /** CRLs (DER or PEM) to apply. */
  crls?: Uint8Array[];
  /** AMD KDS for VCEKs, chains and CRLs. Absent = no KDS (evidence and certDir only). */
  kds?: KdsClient | KdsOptions;
  /** "if-available" (default): check a CRL when one is at hand; "require": no CRL = reject; "off". */
  crl?: "if-available" | "require" | "off";
  /** Simulated roots: test and local-stack use only; every verdict they produce says simulated. */
  simulated?: SimulatedSnpAnchor[];
}

// ---- TDX/Azure trust: owned by the TDX/Azure engineer; keep additive. ------------------------------
/** Intel trust: simulated roots (tests only), PCS collateral given or fetched. */
export type TdxTrustSection = TdxTrustOptions & {
  collateral?: TdxCollateral;
  fetchCollateral?: boolean | typeof fetch;
};
/** Azure: the TPM quote's expected extraData when it is not SHA-256 of the expected REPORT_DATA. */
export interface AzureTrustSection {
  tpmNonce?: Uint8Array;
}

/** AWS NitroTPM documents: trust comes from the pinned AWS Nitro root; test roots only in tests. */
export interface AwsTrustSection {
  /** Test roots (DER) trusted besides AWS's; verdicts relying on one are marked simulated. */
  testRoots?: Uint8Array[];
  /** How old a NitroTPM document may be (ms). Default 10 minutes. */
  maxDocumentAgeMs?: number;
}

export interface TrustConfig {
  snp?: SnpTrustConfig;
  aws?: AwsTrustSection;
  tdx?: TdxTrustSection;
  azure?: AzureTrustSection;
  /** GCE: Google's TCB root for launch endorsements; simulated AK roots for tests and the local stack. */
  gce?: GceTrustConfig & { simulatedAkRoots?: Uint8Array[] };
}

// ---- parsing operator input -----------------------------------------------------------------------

export class PolicyError extends Error {
  override name = "PolicyError";
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(`policy ${field}: ${message}`);
  }
}

const TCB_KEYS = ["fmc", "bootloader", "tee", "snp", "microcode"] as const;

function hexField(v: unknown, field: string, bytes: number): string {
  if (typeof v !== "string") throw new PolicyError(`expected a hex string of ${bytes} bytes`, field);
  const hex = v.replace(/^0x/i, "").toLowerCase();
  if (!/^[0-9a-f]*$/.test(hex) || hex.length !== bytes * 2)
    throw new PolicyError(`expected ${bytes} bytes of hex (${bytes * 2} digits), got '${v.slice(0, 140)}'`, field);
  return hex;
}

function hexList(v: unknown, field: string, bytes: number): string[] {
  if (!Array.isArray(v)) throw new PolicyError("expected a list of hex strings", field);
  return v.map((x, i) => hexField(x, `${field}[${i}]`, bytes));
}

function bool(v: unknown, field: string): boolean {
  if (typeof v !== "boolean") throw new PolicyError("expected true or false", field);
  return v;
}

function uint(v: unknown, field: string, max = 0xffffffff): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max)
    throw new PolicyError(`expected an integer 0..${max}`, field);
  return v;
}

function tcb(v: unknown, field: string): Partial<TcbVersion> {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new PolicyError("expected {bootloader, tee, snp, microcode[, fmc]}", field);
  const out: Partial<TcbVersion> = {};
  for (const [k, x] of Object.entries(v)) {
    if (!(TCB_KEYS as readonly string[]).includes(k))
      throw new PolicyError(`unknown TCB component '${k}' (known: ${TCB_KEYS.join(", ")})`, `${field}.${k}`);
    out[k as keyof TcbVersion] = uint(x, `${field}.${k}`, 255);
  }
  return out;
}

/** Validates an operator-supplied SNP policy object (from JSON or YAML). Unknown fields are errors. */
export function parseSnpPolicy(v: unknown, field = "snp"): SnpPolicy {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new PolicyError("expected an object", field);
  const out: SnpPolicy = {};
  for (const [k, x] of Object.entries(v)) {
    const f = `${field}.${k}`;
    switch (k) {
      case "measurements":
        out.measurements = hexList(x, f, 48);
        break;
      case "allowDebug":
        out.allowDebug = bool(x, f);
        break;
      case "allowMigrationAgent":
        out.allowMigrationAgent = bool(x, f);
        break;
      case "allowSmt":
        out.allowSmt = bool(x, f);
        break;
      case "requireSingleSocket":
        out.requireSingleSocket = bool(x, f);
        break;
      case "vmpl":
        out.vmpl = uint(x, f, 3);
        break;
      case "minTcb":
        out.minTcb = tcb(x, f);
        break;
      case "minLaunchTcb":
        out.minLaunchTcb = tcb(x, f);
        break;
      case "minGuestSvn":
        out.minGuestSvn = uint(x, f);
        break;
      case "hostData":
        out.hostData = hexField(x, f, 32);
        break;
      case "trustedIdKeyDigests":
        out.trustedIdKeyDigests = hexList(x, f, 48);
        break;
      case "trustedAuthorKeyDigests":
        out.trustedAuthorKeyDigests = hexList(x, f, 48);
        break;
      case "familyId":
        out.familyId = hexField(x, f, 16);
        break;
      case "imageId":
        out.imageId = hexField(x, f, 16);
        break;
      case "allowedChipIds":
        out.allowedChipIds = hexList(x, f, 64);
        break;
      case "minAbi": {
        const o = x as { major?: unknown; minor?: unknown };
        if (typeof o !== "object" || o === null) throw new PolicyError("expected {major, minor}", f);
        out.minAbi = { major: uint(o.major, `${f}.major`, 255), minor: uint(o.minor, `${f}.minor`, 255) };
        break;
      }
      case "minFirmware": {
        const o = x as { major?: unknown; minor?: unknown; build?: unknown };
        if (typeof o !== "object" || o === null) throw new PolicyError("expected {major, minor[, build]}", f);
        out.minFirmware = { major: uint(o.major, `${f}.major`, 255), minor: uint(o.minor, `${f}.minor`, 255) };
        if (o.build !== undefined) out.minFirmware.build = uint(o.build, `${f}.build`, 255);
        break;
      }
      case "products": {
        if (!Array.isArray(x)) throw new PolicyError("expected a list of Milan|Genoa|Turin", f);
        out.products = x.map((p, i) => {
          const s = typeof p === "string" ? p.charAt(0).toUpperCase() + p.slice(1).toLowerCase() : "";
          if (s !== "Milan" && s !== "Genoa" && s !== "Turin")
            throw new PolicyError(`unknown product '${String(p)}'`, `${f}[${i}]`);
          return s;
        });
        break;
      }
      case "allowVlek":
        out.allowVlek = bool(x, f);
        break;
      case "allowPlatformSmt":
        out.allowPlatformSmt = bool(x, f);
        break;
      case "requireCommittedFirmware":
        out.requireCommittedFirmware = bool(x, f);
        break;
      case "requirePlatform": {
        if (!Array.isArray(x))
          throw new PolicyError(`expected a list of ${Object.keys(PLATFORM_FEATURES).join("|")}`, f);
        out.requirePlatform = x.map((p, i) => {
          if (typeof p !== "string" || !(p in PLATFORM_FEATURES))
            throw new PolicyError(
              `unknown platform feature '${String(p)}' (known: ${Object.keys(PLATFORM_FEATURES).join(", ")})`,
              `${f}[${i}]`,
            );
          return p as PlatformFeature;
        });
        break;
      }
      default:
        throw new PolicyError("unknown field", f);
    }
  }
  return out;
}

/** Validates a whole policy document. The `tdx` section is passed through for the TDX verifier to check. */
export function parsePolicy(v: unknown): Policy {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new PolicyError("expected an object", "(root)");
  const out: Policy = {};
  for (const [k, x] of Object.entries(v)) {
    if (k === "snp") out.snp = parseSnpPolicy(x);
    else if (k === "tdx") {
      try {
        out.tdx = checkTdxPolicy(x, "tdx");
      } catch (e) {
        throw new PolicyError((e as Error).message, "tdx");
      }
    } else if (k === "azure") {
      try {
        out.azure = parseAzurePolicy(x);
      } catch (e) {
        throw new PolicyError((e as Error).message, "azure");
      }
    } else if (k === "vtpm") {
      try {
        out.vtpm = parseVtpmPolicy(x);
      } catch (e) {
        const err = e as { reason?: string; field?: string; message: string };
        throw new PolicyError(err.reason ?? err.message, err.field ?? "vtpm");
      }
    } else if (k === "gce") {
      try {
        out.gce = parseGcePolicy(x);
      } catch (e) {
        const err = e as { reason?: string; field?: string; message: string };
        throw new PolicyError(err.reason ?? err.message, err.field ?? "gce");
      }
    } else if (k === "requireReportDataBinding") out.requireReportDataBinding = bool(x, k);
    else throw new PolicyError("unknown field", k);
  }
  return out;
}
