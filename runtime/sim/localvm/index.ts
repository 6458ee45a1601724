// Local confidential VMs for the `local` stack: a persistent simulated SEV-SNP platform, a simulated
// PSP that measures the boot inputs a VM is started with, and the VM process (enclaivelet + private root).
export { LocalVmError } from "./errors.js";
export { initPlatform, loadPlatform, readAnchor, PLATFORM_FILE, ANCHOR_FILE, type PlatformAnchor } from "./platform.js";
export { measureLaunch, firmwareMeasuresKernel, type BootInputs, type LaunchMeasurement } from "./psp.js";
export {
  bootLocalVm,
  runLocalVm,
  readStatus,
  STATUS_FILE,
  PID_FILE,
  type LocalVmOptions,
  type LocalVmStatus,
  type Verdict,
} from "./vm.js";
