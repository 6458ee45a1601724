// Legacy SEV and SEV-ES launch digests: SHA-256 over what LAUNCH_UPDATE_DATA/VMSA encrypt, in order —
// the firmware, the padded kernel hashes table (measured direct boot), then (SEV-ES) every vCPU's VMSA.
import { createHash, type Hash } from "node:crypto";
import { MeasurementInputError } from "./errors.js";
import { parseOvmf, type OvmfImage } from "./ovmf.js";
import { sevHashesTable } from "./sev-hashes.js";
import { checkVcpuCount } from "./snp.js";
import type { VcpuSpec } from "./vcpu.js";
import { BSP_EIP, VMM_TYPES, buildVmsa, vmsaVcpuSignature, type VmmType } from "./vmsa.js";

export interface SevMeasureInput {
  /** Firmware binary (SEV/SEV-ES may use the pflash code part, e.g. OVMF_CODE.fd) or a parsed image. */
  ovmf: Uint8Array | OvmfImage;
  kernel?: Uint8Array;
  initrd?: Uint8Array;
  append?: string;
}

export interface SevEsMeasureInput extends SevMeasureInput {
  vcpus: number;
  vcpu?: VcpuSpec;
  vmm?: VmmType;
}

/** SEV (no VMSA measurement): SHA-256(firmware || hashes table). 32 bytes. */
export function sevDigest(input: SevMeasureInput): Buffer {
  return sevBase(input).h.digest();
}

/** SEV-ES: SHA-256(firmware || hashes table || VMSA(BSP) || VMSA(AP) × (vcpus − 1)). 32 bytes. */
export function sevEsDigest(input: SevEsMeasureInput): Buffer {
  return sevEsDigestTable(input, [input.vcpus]).get(input.vcpus)!;
}

/** SEV-ES digests for several vCPU counts, extending one running hash. */
export function sevEsDigestTable(
  input: Omit<SevEsMeasureInput, "vcpus">,
  vcpuCounts: readonly number[],
): Map<number, Buffer> {
  if (vcpuCounts.length === 0) throw new MeasurementInputError("vcpus", "no vCPU counts given");
  for (const n of vcpuCounts) checkVcpuCount(n);
  const vmm = input.vmm ?? "qemu";
  if (!VMM_TYPES.includes(vmm))
    throw new MeasurementInputError("vmm", `unknown VMM type '${String(vmm)}'; valid types: ${VMM_TYPES.join(", ")}`);
  const vcpuSig = vmsaVcpuSignature(vmm, input.vcpu);
  const { img, h } = sevBase(input);
  if (img.resetEip === null)
    throw new MeasurementInputError(
      "ovmf",
      "firmware has no SEV-ES reset block (SEV_ES_RESET_BLOCK); it cannot start SEV-ES vCPUs",
    );
  // SEV-ES guests run with SEV_FEATURES 0 in these VMSAs (no SNP features).
  const bsp = buildVmsa({ eip: BSP_EIP, vmm, vcpuSig, sevFeatures: 0n });
  const ap = buildVmsa({ eip: img.resetEip, vmm, vcpuSig, sevFeatures: 0n });
  const wanted = new Set(vcpuCounts);
  const out = new Map<number, Buffer>();
  for (let n = 1; n <= Math.max(...vcpuCounts); n++) {
    h.update(n === 1 ? bsp : ap);
    if (wanted.has(n)) out.set(n, h.copy().digest());
  }
  return out;
}

function sevBase(input: SevMeasureInput): { img: OvmfImage; h: Hash } {
  if (input.ovmf === undefined) throw new MeasurementInputError("ovmf", "a firmware binary is required");
  const img =
    input.ovmf instanceof Uint8Array
      ? parseOvmf(Buffer.from(input.ovmf.buffer, input.ovmf.byteOffset, input.ovmf.byteLength))
      : input.ovmf;
  const h = createHash("sha256").update(img.data);
  if (input.kernel !== undefined) {
    if (img.hashTableGpa === null)
      throw new MeasurementInputError(
        "kernel",
        "the firmware has no SEV hashes table (SEV_HASH_TABLE_RV), so it cannot verify a kernel/initrd/cmdline",
      );
    h.update(sevHashesTable({ kernel: input.kernel, initrd: input.initrd, append: input.append }));
  } else {
    if (input.initrd !== undefined)
      throw new MeasurementInputError("initrd", "an initrd is only measured together with a kernel");
    if (input.append !== undefined)
      throw new MeasurementInputError("append", "a command line is only measured together with a kernel");
  }
  return { img, h };
}
