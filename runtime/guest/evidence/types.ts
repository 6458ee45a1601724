// One interface for every way a guest can obtain attestation evidence bound to 64 bytes of
// REPORT_DATA. Providers return the wire form of runtime-api.md `evidence` (runtime/protocol/evidence.ts).
import type { ProviderName } from "../config.js";
import type { WireEvidence } from "../../protocol/evidence.js";

export type { WireEvidence };

export interface EvidenceProvider {
  readonly name: Exclude<ProviderName, "auto">;
  /** Cheap probe: is this evidence source present on this machine? */
  available(): Promise<boolean>;
  /** Evidence whose REPORT_DATA (or equivalent binding) is `reportData` (64 bytes). */
  collect(reportData: Buffer): Promise<WireEvidence>;
}

/** The evidence source failed or is absent: names the provider and the step, never a secret. */
export class EvidenceError extends Error {
  override name = "EvidenceError";
  constructor(
    readonly provider: string,
    readonly step: string,
    message: string,
  ) {
    super(`${provider}: ${step}: ${message}`);
  }
}

export function b64(buf: Uint8Array): string {
  return Buffer.from(buf).toString("base64");
}
