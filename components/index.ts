// Public entry point of the `buckypaper` package (package.json "main"). Each component area adds its
// exports here.
export { Vhsm, VhsmMode, VhsmPlatform, VHSM_LOCAL_PLATFORM, renderRuntimeConfig } from "./vhsm.js";
export type { VhsmArgs, VhsmSshArgs, VhsmAttestationSummary } from "./vhsm.js";
export {
  Workload,
  Secret,
  Policy,
  PkiRole,
  SshRole,
  JwtRole,
  Mount,
  AuthMount,
  RuntimeService,
} from "../provider/resources.js";
// Confidential VMs: the cloud-neutral facade and one component per platform.
export { ConfidentialVm } from "./confidential-vm.js";
export type { ConfidentialVmArgs } from "./confidential-vm.js";
export { AwsConfidentialVm } from "./aws/confidential-vm.js";
export type { AwsConfidentialVmArgs } from "./aws/confidential-vm.js";
export { AzureConfidentialVm } from "./azure/confidential-vm.js";
export type { AzureConfidentialVmArgs } from "./azure/confidential-vm.js";
export { GcpConfidentialVm } from "./gcp/confidential-vm.js";
export type { GcpConfidentialVmArgs } from "./gcp/confidential-vm.js";
// The kit's cloud disk as a cloud image enrolling the customer's Secure Boot keys (pass it as a VM's kitImage).
export { AwsKitImage } from "./aws/kit-image.js";
export type { AwsKitImageArgs } from "./aws/kit-image.js";
export { GcpKitImage } from "./gcp/kit-image.js";
export type { GcpKitImageArgs } from "./gcp/kit-image.js";
export { AzureKitImage } from "./azure/kit-image.js";
export type { AzureKitImageArgs, AzureGalleryImageIdentifier } from "./azure/kit-image.js";
export type { KitImageRef, SecureBootKeysArgs } from "./common/kit-image.js";
export { ProxmoxConfidentialVm } from "./proxmox/confidential-vm.js";
export type { ProxmoxConfidentialVmArgs } from "./proxmox/confidential-vm.js";
export { QemuConfidentialVm } from "./qemu/confidential-vm.js";
export type { QemuConfidentialVmArgs } from "./qemu/confidential-vm.js";
export { Platform, Tee } from "./common/types.js";
export type { VhsmConnectionArgs, DataVolumeArgs, SshHostArgs } from "./common/types.js";
export type { BootInputsArgs } from "./common/boot-measure.js";
export { ConfigError } from "./common/errors.js";
// The local stack's confidential VM (simulated platform; a real QEMU guest, or a local process tree).
export { LocalConfidentialVm } from "./local/confidential-vm.js";
export type { LocalConfidentialVmArgs, LocalBootOverride } from "./local/confidential-vm.js";
export { resolveMode as resolveLocalVmMode } from "./local/real-guest.js";
export { localVhsmGuestSupport } from "./local/vhsm-guest.js";
export type { LocalVmMode } from "./local/real-guest.js";
export { LOCAL_TAMPER_CASES, TAMPER_DESCRIPTION } from "./local/tamper.js";
export type { LocalTamperCase } from "./local/tamper.js";
export { SimulatedPlatform, LocalVm, RuntimeWrite, GeneratedSecret } from "../provider/local-vm.js";
export type { SimulatedAnchor } from "../provider/local-vm.js";
