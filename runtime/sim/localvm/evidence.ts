// Simulated SEV-SNP hardware as an evidence source, for the local stack and tests: reports are
// signed by runtime/attestation/snp/simulator.ts's fake AMD hierarchy, which a runtime only accepts
// when configured to trust that simulator's anchor (and then marks the verdict simulated).
import type { SnpSimulator, SimulatedReportOptions } from "../snp.js";
import { EvidenceError, b64, type EvidenceProvider } from "../../guest/evidence/types.js";

export function simulatorProvider(
  sim: SnpSimulator,
  opts: Omit<SimulatedReportOptions, "reportData"> = {},
): EvidenceProvider {
  return {
    name: "simulator",
    async available() {
      return true;
    },
    async collect(reportData) {
      if (reportData.length !== 64)
        throw new EvidenceError("simulator", "report", `REPORT_DATA must be 64 bytes, got ${reportData.length}`);
      const r = await sim.report({ ...opts, reportData });
      return { kind: "snp", report: b64(r.report), cert_table: b64(r.certTable) };
    },
  };
}
