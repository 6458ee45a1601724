// vTPM evidence: TPM 2.0 structures (abi), the TCG event log (eventlog), quote + log verification (verify)
// and the measured-boot policy over events (boot-policy).
export * from "./abi.js";
export * from "./eventlog.js";
export * from "./verify.js";
export * from "./boot-policy.js";
export * from "./policy.js";
export * from "./credential.js";
export * from "./ek-credential.js";
