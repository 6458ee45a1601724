// Real QEMU guests for the local stack: dev guest image, simulated PSP over virtio-serial, launcher.
export {
  ensureDevGuest,
  devRootImage,
  devGuestDir,
  defaultCacheDir,
  DEV_GUEST_APPEND,
  type DevGuest,
} from "./dev-image.js";
export { startSimulatedPsp, type SimulatedPsp } from "./psp.js";
export { launchGuest, usableAccel, bootInputsOf, type RunningGuest, type Accel } from "./launch.js";
export { GUEST_RUNTIME_ADDR, guestNetOptions, prepareGuestDisks, type GuestDisks } from "./guest.js";
