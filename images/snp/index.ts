// Public API of the AMD SEV / SEV-ES / SEV-SNP launch-measurement engine (docs/measurement.md).
export { MeasurementInputError } from "./errors.js";
export {
  parseOvmf,
  svsmEntryEip,
  SectionType,
  OVMF_GUIDS,
  FOUR_GIB,
  type OvmfImage,
  type SevMetadataSection,
} from "./ovmf.js";
export {
  parseFirmwareDescription,
  firmwareDescriptionJson,
  describeOvmf,
  type FirmwareDescription,
} from "./firmware-description.js";
export { LaunchDigest, PageType, VMSA_GPA, LD_SIZE } from "./gctx.js";
export { VCPU_TYPES, vcpuSignature, resolveVcpuSignature, type CpuModel, type VcpuSpec } from "./vcpu.js";
export { VMM_TYPES, BSP_EIP, buildVmsa, buildSvsmVmsa, type VmmType } from "./vmsa.js";
export { sevHashesTable, PADDED_TABLE_SIZE, type KernelInputs } from "./sev-hashes.js";
export { snpLaunchDigest, snpLaunchDigestTable, snpOvmfHash, MAX_VCPUS, type SnpMeasureInput } from "./snp.js";
export { sevDigest, sevEsDigest, sevEsDigestTable, type SevMeasureInput, type SevEsMeasureInput } from "./sev.js";
