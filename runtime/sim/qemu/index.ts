// Real QEMU guests for the local stack: the kit image's boot files, simulated PSP over virtio-serial, launcher.
export { defaultCacheDir, type Progress } from "./cache.js";
export {
  RUNTIME_GUEST_CONFIG,
  RUNTIME_GUEST_PORT,
  RUNTIME_GUEST_DATA_DEVICE,
} from "../../../images/guest/runtime-role.js";
export {
  ensureRuntimeGuestImage,
  amdSevFirmware,
  type RuntimeGuestImage,
  type RuntimeGuestImageOptions,
} from "./runtime-image.js";
export { startSimulatedPsp, type SimulatedPsp } from "./psp.js";
export { launchGuest, usableAccel, bootInputsOf, type RunningGuest, type Accel } from "./launch.js";
export {
  GUEST_RUNTIME_ADDR,
  guestNetOptions,
  runtimeGuestNetOptions,
  prepareGuestDisks,
  type GuestDisks,
} from "./guest.js";
export { realGuestSupport, ensureLocalGuestImage, type RealGuestSupport, type LocalGuestImage } from "./local-image.js";
export {
  superviseQemuGuest,
  readGuestStatus,
  agentEvents,
  GUEST_CONFIG_FILE,
  GUEST_STATUS_FILE,
  GUEST_PROGRESS_FILE,
  type QemuGuestConfig,
  type QemuGuestStatus,
  type QemuGuestState,
} from "./supervise.js";
