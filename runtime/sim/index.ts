// Simulated hardware for development and tests: a fake AMD SEV-SNP platform and a fake Intel TDX
// quoting stack, and the local stack's process-tree VMs. Their roots are accepted only where a trust
// configuration lists them explicitly, and every verdict they produce says `simulated`.
export {
  createSnpSimulator,
  type SnpSimulator,
  type SnpSimulatorOptions,
  type SimulatedReportOptions,
  type SimulatedReport,
} from "./snp.js";
export { TdxSimulator } from "./tdx.js";
export { simulatorProvider } from "./localvm/evidence.js";
export * as localvm from "./localvm/index.js";
export {
  createGceEndorsementSimulator,
  type GceEndorsementSimulator,
  type SimulatedGolden,
} from "./gce-endorsement.js";
export { createGceAkCaSimulator, type GceAkCaSimulator, type SimulatedGceInstance } from "./gce-ak-ca.js";
