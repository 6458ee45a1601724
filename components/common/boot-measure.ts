// Expected launch state of a QEMU-family guest (Proxmox VE, plain KVM hosts, the local stack), where
// every boot input is known: firmware, kernel, initrd, command line, vCPU count and type.
// SNP: the launch digest covers all of them (kernel-hashes=on). TDX: MRTD covers the firmware only;
// RTMR0 depends on ACPI tables QEMU generates at run time, so only MRTD is registered (docs/measurement.md).
import type { Policy } from "../../runtime/protocol/policy.js";
import { measureTdx, snpLaunchDigestTable, MeasurementInputError, TdxInputError } from "../../images/index.js";
import { ConfigError } from "./errors.js";
import { readInputFile } from "./input-file.js";
import { Tee } from "./types.js";
import type { GuestReference } from "./guest.js";

/** Paths on the machine that runs `pulumi up`; the same bytes are what the host boots. */
export interface BootInputsArgs {
  /** Firmware image given to -bios (e.g. OVMF.fd, or Proxmox's OVMF_SEV_4M.fd). */
  firmware: string;
  kernel?: string;
  initrd?: string;
  /** Kernel command line. */
  append?: string;
}

export interface ExpectedLaunch {
  measurements: string[];
  reference: GuestReference;
  policy: Policy;
}

export function expectedQemuLaunch(
  component: string,
  tee: Tee,
  boot: BootInputsArgs,
  vcpus: number,
  cpuModel: string,
  memoryMb: number,
): ExpectedLaunch {
  const firmware = readInputFile(component, "boot.firmware", boot.firmware);
  const kernel = boot.kernel === undefined ? undefined : readInputFile(component, "boot.kernel", boot.kernel);
  const initrd = boot.initrd === undefined ? undefined : readInputFile(component, "boot.initrd", boot.initrd);
  if (!kernel && (initrd || boot.append !== undefined))
    throw new ConfigError(component, "boot.kernel", "is required when boot.initrd or boot.append is set");
  try {
    if (tee === Tee.SevSnp) {
      const digest = snpLaunchDigestTable(
        { ovmf: firmware, kernel, initrd, append: boot.append, vcpu: cpuModel, vmm: "qemu" },
        [vcpus],
      )
        .get(vcpus)!
        .toString("hex");
      return {
        measurements: [digest],
        reference: { snpMeasurements: [digest] },
        policy: { snp: { allowDebug: false, allowMigrationAgent: false, measurements: [digest] } },
      };
    }
    const m = measureTdx({ firmware, kernel, initrd, cmdline: boot.append, memory: memoryMb * 1024 * 1024 });
    return {
      measurements: [m.mrtd],
      reference: { tdx: [{ mrtd: m.mrtd }] },
      policy: { tdx: { allowDebug: false, mrTd: [m.mrtd] } },
    };
  } catch (e) {
    if (e instanceof MeasurementInputError) throw new ConfigError(component, `boot (${e.field})`, e.reason);
    if (e instanceof TdxInputError) throw new ConfigError(component, "boot", e.message);
    throw e;
  }
}
