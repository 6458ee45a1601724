// Pulumi resources that register workloads, secrets, policies and roles with the buckypaper runtime,
// and the Pulumi-free HTTP client they use.
export { Workload, Secret, Policy, PkiRole, SshRole, JwtRole, Mount, AuthMount, RuntimeService } from "./resources.js";
export type {
  WorkloadArgs,
  WorkloadTdxReference,
  WorkloadPkiArgs,
  WorkloadSshArgs,
  SecretArgs,
  PolicyArgs,
  PkiRoleArgs,
  SshRoleArgs,
  JwtRoleArgs,
  RuntimeConnectionArgs,
  RuntimeServiceArgs,
  RuntimeBootstrapArgs,
  RuntimeServiceSshArgs,
  SshTargetArgs,
  MountArgs,
} from "./resources.js";
export {
  runtimeRequest,
  certFingerprint,
  RuntimeApiError,
  RuntimeConnectionError,
  type RuntimeConnection,
} from "./client.js";
export type { SshTarget } from "./ssh-target.js";
export { shellQuote, shellJoin } from "./shell.js";
// The local stack's dynamic resources (simulated platform, local VMs, runtime writes, generated secrets).
export { SimulatedPlatform, LocalVm, QemuGuest, RuntimeWrite, GeneratedSecret } from "./local-vm.js";
export type {
  SimulatedPlatformArgs,
  SimulatedAnchor,
  LocalVmArgs,
  QemuGuestArgs,
  SupervisedGuestArgs,
  RuntimeWriteArgs,
  GeneratedSecretArgs,
} from "./local-vm.js";
