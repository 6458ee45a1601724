// The shape every TEE folder's entry point shares: snp/appraise.ts, tdx/appraise.ts and azure/appraise.ts each
// export an Appraiser for their evidence kinds, and appraise.ts dispatches to them the same way.
import type { Evidence, Verdict } from "./types.js";
import type { Policy, TrustConfig } from "./policy.js";
import type { SnpProduct } from "./snp/abi.js";

export interface AppraiseOptions {
  trust: TrustConfig;
  /** Verification time (certificate validity). Default: now. */
  now?: Date;
  /** Expected 64-byte REPORT_DATA (shorter values are zero-padded on the right, as Azure's SHA-256 ‖ 0^32). */
  expectedReportData?: Uint8Array;
  /** Alternative to expectedReportData: derive it from Nitride's nonce and the workload's key (binding.ts). */
  binding?: { nonce: Uint8Array; publicKeySpki: Uint8Array; userDataSha256?: Uint8Array };
  /**
   * vTPM evidence whose REPORT_DATA binds the AK in a caller-defined format (the runtime's attested TLS:
   * binding.ts runtimeTlsVtpmReportData): the expected 64 bytes given the AK's TPM2B_PUBLIC that signed the
   * quote. The TPM quote's qualifying data must then be SHA-256 of that value. Ignored when `binding` is given.
   */
  vtpmReportData?: (akPublic: Uint8Array) => Uint8Array;
  /** Explain mode: same checks, no side effects (no network, no cache writes); claims even when rejected. */
  explain?: boolean;
  /** SNP v2 reports only: the product when neither the report nor its VEK names it. */
  snpProduct?: SnpProduct;
}

/** Evidence of the given kinds. */
export type EvidenceOf<K extends Evidence["kind"]> = Extract<Evidence, { kind: K }>;

/** Verifies evidence of one or more kinds and appraises it against the policy. Never throws for bad evidence. */
export type Appraiser<E extends Evidence = Evidence> = (
  evidence: E,
  policy: Policy,
  opts: AppraiseOptions,
) => Promise<Verdict>;
