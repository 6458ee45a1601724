// The appraisal policy a workload is registered with (POST /v1/nitride/workloads/:id {policy}) — the
// JSON shape parsePolicy() (runtime/attestation/policy.ts) checks on the runtime. Components and the
// provider type their `policy` inputs with it instead of Record<string, unknown>.
export type { Policy, SnpPolicy, PlatformFeature, TdxPolicySection } from "../attestation/policy.js";
export type { AzurePolicy } from "../attestation/azure/validate.js";
