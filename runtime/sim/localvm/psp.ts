// The simulated PSP: what an AMD security processor measures when QEMU launches an SEV-SNP guest with
// the given boot inputs. The digest is derived from the files the VM is actually started with — never
// from what was registered — with the same engine (images/) that predicts it at deploy time.
//
// Honest about the firmware: the kernel, initrd and command line are measured only when the firmware
// has an SNP kernel-hashes table (QEMU `kernel-hashes=on`, e.g. OvmfPkg/AmdSev builds). Debian's
// OVMF.fd has none, so with it the digest covers firmware + vCPU count/type, exactly as on hardware;
// the kernel is then loaded unmeasured through fw_cfg.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { MeasurementInputError, SectionType, parseOvmf, snpLaunchDigest } from "../../../images/index.js";
import { LocalVmError } from "./errors.js";

export interface BootInputs {
  firmware: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  vcpus: number;
  /** QEMU CPU model (EPYC-v4, EPYC-Milan, …): its signature is in every VMSA. */
  vcpuType: string;
}

export interface LaunchMeasurement {
  /** SNP launch digest (MEASUREMENT), 48 bytes hex. */
  measurement: string;
  /** True when the firmware verifies kernel/initrd/cmdline hashes (they are then in the digest). */
  kernelMeasured: boolean;
  /** What the digest was computed from (SHA-256 of each file). */
  inputs: {
    firmwareSha256: string;
    kernelSha256?: string;
    initrdSha256?: string;
    append?: string;
    vcpus: number;
    vcpuType: string;
  };
}

function readInput(field: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new LocalVmError(
      field,
      `'${file}' cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** Does this firmware verify a directly booted kernel (SNP_KERNEL_HASHES section)? */
export function firmwareMeasuresKernel(firmware: Buffer, field = "firmware"): boolean {
  try {
    return (parseOvmf(firmware).sevMetadata ?? []).some((s) => s.type === SectionType.SNP_KERNEL_HASHES);
  } catch (e) {
    if (e instanceof MeasurementInputError) throw new LocalVmError(field, e.reason);
    throw e;
  }
}

export function measureLaunch(b: BootInputs): LaunchMeasurement {
  if (!Number.isInteger(b.vcpus) || b.vcpus < 1 || b.vcpus > 512)
    throw new LocalVmError("vcpus", `is ${b.vcpus}; must be an integer 1..512`);
  if ((b.initrd || b.append !== undefined) && !b.kernel)
    throw new LocalVmError("kernel", "is required with an initrd or a command line");
  const firmware = readInput("firmware", b.firmware);
  const kernel = b.kernel ? readInput("kernel", b.kernel) : undefined;
  const initrd = b.initrd ? readInput("initrd", b.initrd) : undefined;
  const kernelMeasured = kernel !== undefined && firmwareMeasuresKernel(firmware);
  let digest: Buffer;
  try {
    digest = snpLaunchDigest({
      ovmf: firmware,
      vcpus: b.vcpus,
      vcpu: b.vcpuType,
      vmm: "qemu",
      ...(kernelMeasured ? { kernel, initrd, append: b.append } : {}),
    });
  } catch (e) {
    if (e instanceof MeasurementInputError) throw new LocalVmError(e.field === "ovmf" ? "firmware" : e.field, e.reason);
    throw e;
  }
  return {
    measurement: digest.toString("hex"),
    kernelMeasured,
    inputs: {
      firmwareSha256: sha256(firmware),
      ...(kernel ? { kernelSha256: sha256(kernel) } : {}),
      ...(initrd ? { initrdSha256: sha256(initrd) } : {}),
      ...(b.append !== undefined ? { append: b.append } : {}),
      vcpus: b.vcpus,
      vcpuType: b.vcpuType,
    },
  };
}
