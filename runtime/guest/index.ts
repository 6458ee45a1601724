// Public API of the enclaivelet: the agent (runAgent), its configuration, the evidence providers and
// the cloud-init renderer the components use.
export { runAgent, type AgentDeps, type AgentOutcome, type FailureReason } from "./agent.js";
export { parseConfig, loadConfig, ConfigError, type EnclaiveletConfig, type ProviderName } from "./config.js";
export { selectProvider, candidateProviders } from "./evidence/detect.js";
export { configfsTsmProvider } from "./evidence/configfs-tsm.js";
export { sevGuestProvider } from "./evidence/sev-guest.js";
export { azureProvider, parseHclReport } from "./evidence/azure.js";
export { EvidenceError, type EvidenceProvider, type WireEvidence } from "./evidence/types.js";
export { buildArtifact } from "./artifact.js";
export * from "./cloud-init/index.js";
