// Public API of the guest image builder (docs/images.md): `buckypaper image build` and
// `buckypaper measure snp --manifest`.
export {
  buildImage,
  inputHash,
  DEFAULT_SOURCE_DATE_EPOCH,
  type ImageBuildOptions,
  type ImageBuildResult,
  type ImageRole,
  type ImageFormat,
} from "./build.js";
export {
  RUNTIME_GUEST_CONFIG,
  RUNTIME_PSPS,
  SEV_GUEST_DEVICE,
  runtimeGuestConfig,
  type RuntimePsp,
  RUNTIME_GUEST_DATA_DEVICE,
  RUNTIME_GUEST_PORT,
  RUNTIME_MASKED_UNITS,
  RUNTIME_UNIT_NAME,
  RUNTIME_CLOUDS,
  RUNTIME_UNSEALS,
  RUNTIME_DATA_LABEL,
  RuntimeImageError,
  runtimeVariant,
  type RuntimeCloud,
  type RuntimeUnseal,
  type RuntimeVariant,
} from "./runtime-role.js";
export { newcArchive } from "./cpio.js";
export { moduleLoadOrder, INITRD_MODULES } from "./initrd.js";
export {
  IMAGE_PACKAGES,
  VTPM_PACKAGES,
  SUITE,
  parseLock,
  formatLock,
  lockDigest,
  LockError,
  type PackageLock,
} from "./lock.js";
export {
  MANIFEST_SCHEMA,
  ManifestError,
  parseManifest,
  readManifestFile,
  kernelCmdline,
  type ImageManifest,
  type ManifestFile,
} from "./manifest.js";
export { snpDigestsFromManifest, loadManifest, type ManifestMeasureOptions } from "./measure.js";
export { veritySalt, type VerityInfo } from "./verity.js";
export {
  buildDisk,
  diskCmdline,
  parseBootLock,
  ukiFromDiskFile,
  DISK_MODULES,
  UKI_ESP_PATH,
  type DiskRecord,
} from "./disk.js";
export { decodeGpt, encodeGpt, GptError, PARTITION_TYPE, type GptLayout, type GptPartition } from "./gpt.js";
export { readFatFile, FatError } from "./fat.js";
export { DISK_INIT_SCRIPT } from "./disk-init.js";
export {
  checkFixedVhd,
  decodeVhdFooter,
  encodeVhdFooter,
  vhdGeometry,
  vhdUniqueId,
  writeFixedVhd,
  VhdError,
  VHD_FOOTER_SIZE,
  type FixedVhd,
  type VhdFooter,
  type VhdGeometry,
} from "./vhd.js";
