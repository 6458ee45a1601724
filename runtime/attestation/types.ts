import type { TpmEvidence } from "./tpm/evidence.js";

// Shared vocabulary of evidence verification, used by Nitride, the CLI and the enclaivelet.
// Format-specific parsing/verification lives in snp/, tdx/, azure/ (abi → verify → validate).

/** Evidence as a workload submits it. Binary fields are raw bytes. */
export type Evidence =
  | {
      kind: "snp";
      report: Uint8Array;
      certTable?: Uint8Array;
      vek?: Uint8Array;
      caChain?: Uint8Array[];
      /** Cloud vTPM quote + event log (AWS NitroTPM, GCE vTPM), its AK bound into REPORT_DATA. */
      vtpm?: TpmEvidence;
    }
  | { kind: "tdx"; quote: Uint8Array; vtpm?: TpmEvidence }
  /** Azure: `eventLog` is the guest's TCG event log (binary_bios_measurements), appraised with azure.measuredBoot. */
  | { kind: "azure-snp"; hclReport: Uint8Array; tpmQuote: TpmQuote; vcekChainPem?: string; eventLog?: Uint8Array }
  | { kind: "azure-tdx"; hclReport: Uint8Array; tdQuote: Uint8Array; tpmQuote: TpmQuote; eventLog?: Uint8Array };

export interface TpmQuote {
  /** TPMS_ATTEST bytes. */
  message: Uint8Array;
  /** TPMT_SIGNATURE or raw RSASSA signature bytes. */
  signature: Uint8Array;
  /** Selected PCR values (SHA-256 bank), index → 32 bytes. */
  pcrs: Record<number, Uint8Array>;
}

export type Platform = "snp" | "tdx" | "azure-snp" | "azure-tdx";

/** One check of an appraisal: every verdict lists all of them, passed or not. */
export interface Check {
  /** Stable identifier, e.g. "snp.signature", "policy.debug", "policy.measurement". */
  id: string;
  ok: boolean;
  /** Human reason, naming expected vs actual where it helps (never a secret). */
  detail: string;
}

/** Normalised claims extracted from verified evidence (hex strings, lowercase). */
export interface Claims {
  platform: Platform;
  /** SNP MEASUREMENT, or TDX MRTD. */
  measurement: string;
  /** TDX only. */
  rtmrs?: string[];
  reportData: string;
  /** SNP: chip id / hwID; TDX: absent. */
  chipId?: string;
  /** Human-readable TCB, e.g. {bootloader:3, tee:0, snp:8, microcode:115} or TDX TEE_TCB_SVN hex. */
  tcb: Record<string, number | string>;
  debug: boolean;
  product?: string;
  /** Extra platform-specific claims (policy bits, host data, PCRs, runtime JSON ...). */
  extra: Record<string, unknown>;
}

export interface Verdict {
  accepted: boolean;
  /** True when the evidence chains to a simulated (test) root: never accepted unless configured. */
  simulated: boolean;
  checks: Check[];
  /** Present when the evidence parsed and verified far enough to extract claims. */
  claims?: Claims;
  /** SHA-384 hex of the evidence bytes, for audit records. */
  evidenceDigest: string;
}

/** Thrown for evidence that cannot be parsed at all; verifiers turn it into a failed check. */
export class EvidenceFormatError extends Error {
  override name = "EvidenceFormatError";
  constructor(
    message: string,
    readonly field?: string,
    readonly offset?: number,
  ) {
    super(message);
  }
}
