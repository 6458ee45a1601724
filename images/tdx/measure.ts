// TDX launch measurement of a QEMU/KVM TD booted by edk2 OVMF with direct kernel boot: MRTD and the
// RTMR[0..2] event logs. Every register reports what it depends on; a register whose inputs were not
// supplied is null with the missing inputs named, never a guess.
import { authenticodeSha384 } from "./authenticode.js";
import { qemuPatchKernel } from "./bzimage.js";
import { TdxInputError } from "./errors.js";
import {
  DIGEST_BYTES,
  EFI_ACTIONS,
  bootOrderEvent,
  cmdlineEvent,
  efiActionEvent,
  replay,
  secureBootVariableEvents,
  separatorEvent,
  sha384,
  uiAppBootOptionEvent,
  type MeasuredEvent,
} from "./events.js";
import { createHash } from "node:crypto";
import { KNOWN_TDX_FIRMWARE } from "./known-firmware.js";
import { computeMrtd, MRTD_ORDERS, type MrtdOrder } from "./mrtd.js";
import { checkMemoryBytes } from "./memory.js";
import { buildTdHob } from "./tdhob.js";
import { parseTdvf, sectionBytes, TdvfSectionType, type TdvfMetadata } from "./tdvf.js";

/**
 * OVMF event-log shape. "pre-202505": edk2 releases up to edk2-stable202502 (dstack-mr's Pre202505,
 * Fraunhofer's default); "202408.01": edk2-stable202408.01 as Fraunhofer models it (RTMR[0] ends with
 * a separator, RTMR[1] has none). edk2-stable202505+ logs more events (boot-menu fw_cfg, authority,
 * Boot0001) and is not modelled.
 */
export type OvmfProfile = "pre-202505" | "202408.01";
export const OVMF_PROFILES: readonly OvmfProfile[] = ["pre-202505", "202408.01"];

/** "patched": QEMU < 10, or firmware that reads the legacy fw_cfg kernel; "unpatched": QEMU ≥ 10 "etc/boot/kernel". */
export type KernelSetup = "patched" | "unpatched";
export const KERNEL_SETUPS: readonly KernelSetup[] = ["patched", "unpatched"];

/** QEMU's ACPI fw_cfg blobs, as dumped from the QEMU that will run the TD (same version, machine, devices, vCPUs, RAM). */
export interface QemuAcpiBlobs {
  tableLoader: Buffer;
  rsdp: Buffer;
  tables: Buffer;
}

export interface TdxMeasureInput {
  firmware: Buffer;
  mrtdOrder?: MrtdOrder;
  kernel?: Buffer;
  initrd?: Buffer;
  cmdline?: string;
  /** Guest RAM in bytes (see parseMemorySize). */
  memory?: number;
  acpi?: QemuAcpiBlobs;
  kernelSetup?: KernelSetup;
  ovmfProfile?: OvmfProfile;
}

export interface RegisterReport {
  /** Lower-case hex, or null when an input it depends on was not supplied. */
  value: string | null;
  dependsOn: string[];
  missing: string[];
  events: { event: string; digest: string }[];
}

export interface TdxMeasurement {
  mrtd: string;
  rtmr0: string | null;
  rtmr1: string | null;
  rtmr2: string | null;
  rtmr3: string;
  mrtdOrder: MrtdOrder;
  kernelSetup: KernelSetup;
  ovmfProfile: OvmfProfile;
  registers: {
    mrtd: RegisterReport;
    rtmr0: RegisterReport;
    rtmr1: RegisterReport;
    rtmr2: RegisterReport;
    rtmr3: RegisterReport;
  };
  notes: string[];
}

const hex = (b: Buffer) => b.toString("hex");

function report(events: MeasuredEvent[] | null, dependsOn: string[], missing: string[]): RegisterReport {
  const ready = events !== null && missing.length === 0;
  return {
    value: ready ? hex(replay(events)) : null,
    dependsOn,
    missing,
    events: ready ? events.map((e) => ({ event: e.event, digest: hex(e.digest) })) : [],
  };
}

function oneOf<T extends string>(field: string, value: T | undefined, allowed: readonly T[], dflt: T): T {
  if (value === undefined) return dflt;
  if (!allowed.includes(value)) throw new TdxInputError(field, `'${value}' is not one of ${allowed.join(", ")}`);
  return value;
}

export function measureTdx(input: TdxMeasureInput): TdxMeasurement {
  const mrtdOrder = oneOf("mrtdOrder", input.mrtdOrder, MRTD_ORDERS, "single");
  const kernelSetup = oneOf("kernelSetup", input.kernelSetup, KERNEL_SETUPS, "patched");
  const ovmfProfile = oneOf("ovmfProfile", input.ovmfProfile, OVMF_PROFILES, "pre-202505");
  if (input.kernel === undefined && (input.initrd !== undefined || input.cmdline !== undefined)) {
    throw new TdxInputError(
      "kernel",
      "initrd and command line are only measured with direct kernel boot: give the kernel too",
    );
  }
  if (input.memory !== undefined) checkMemoryBytes(input.memory);
  const meta = parseTdvf(input.firmware);
  const mrtd = computeMrtd(input.firmware, meta, mrtdOrder);

  const rtmr0 = rtmr0Report(input, meta, ovmfProfile);
  const rtmr1 = rtmr1Report(input, kernelSetup, ovmfProfile);
  const rtmr2 = rtmr2Report(input);
  const known = KNOWN_TDX_FIRMWARE[createHash("sha256").update(input.firmware).digest("hex")];
  return {
    mrtd: hex(mrtd),
    rtmr0: rtmr0.value,
    rtmr1: rtmr1.value,
    rtmr2: rtmr2.value,
    rtmr3: "00".repeat(DIGEST_BYTES),
    mrtdOrder,
    kernelSetup,
    ovmfProfile,
    registers: {
      mrtd: {
        value: hex(mrtd),
        dependsOn: [
          "firmware: the TDVF sections marked MR_EXTEND (the boot firmware volume) and the GPAs of all PAGE.ADDed pages",
          `page-add order of the VMM/KVM (${mrtdOrder}): single = upstream KVM ≥ 6.16 with QEMU ≥ 10.1, GCE; two-pass = KVM TDX patches v19 / QEMU 8.2 TDX builds (intel qemu-tdx, Canonical 24.04 TDX)`,
        ],
        missing: [],
        events: [],
      },
      rtmr0,
      rtmr1,
      rtmr2,
      rtmr3: {
        value: "00".repeat(DIGEST_BYTES),
        dependsOn: ["nothing at boot: RTMR[3] is left for the guest (runtime/application measurements)"],
        missing: [],
        events: [],
      },
    },
    notes: [
      "MRTD does not depend on vCPU count or memory size; MRCONFIGID/MROWNER/MROWNERCONFIG, ATTRIBUTES, XFAM and MRSEAM are separate TD report fields to pin.",
      "RTMR values model QEMU direct boot with edk2 OVMF that extends RTMRs (CC measurement enabled); verifying by replaying the guest's CCEL event log is more robust than comparing predicted RTMR[0].",
      "Secure-boot variables are modelled as unprovisioned (SecureBoot/PK/KEK/db/dbx absent).",
      ...(known ? [`${known.name}: ${known.note}`] : []),
    ],
  };
}

function rtmr0Report(input: TdxMeasureInput, meta: TdvfMetadata, profile: OvmfProfile): RegisterReport {
  const dependsOn = [
    "memory: the TD HOB lists the guest RAM ranges (q35 split at 2 GiB when RAM ≥ 2.75 GiB)",
    "firmware: the CFV (variable store) content at launch — a separate OVMF_VARS file changes it",
    "ACPI tables QEMU generates (etc/table-loader, etc/acpi/rsdp, etc/acpi/tables): QEMU version, machine type, vCPU count, memory, devices",
    `OVMF event sequence (profile ${profile}) and unprovisioned secure-boot variables`,
  ];
  const missing: string[] = [];
  if (input.memory === undefined) missing.push("memory");
  if (input.acpi === undefined)
    missing.push("acpi (QEMU's table-loader, rsdp and tables blobs; dump them from the QEMU that runs the TD)");
  const cfv = meta.sections.find((s) => s.type === TdvfSectionType.CFV);
  if (!cfv) missing.push("firmware CFV section");
  if (missing.length > 0) return report(null, dependsOn, missing);
  const acpi = input.acpi!;
  const events: MeasuredEvent[] = [
    { event: "TD HOB", digest: sha384(buildTdHob(meta, input.memory!)) },
    { event: "CFV (configuration firmware volume)", digest: sha384(sectionBytes(input.firmware, cfv!)) },
    ...secureBootVariableEvents(),
    separatorEvent(),
    { event: "ACPI etc/table-loader", digest: sha384(acpi.tableLoader) },
    { event: "ACPI etc/acpi/rsdp", digest: sha384(acpi.rsdp) },
    { event: "ACPI etc/acpi/tables", digest: sha384(acpi.tables) },
    bootOrderEvent(),
    uiAppBootOptionEvent(),
  ];
  if (profile === "202408.01") events.push(separatorEvent());
  return report(events, dependsOn, []);
}

function rtmr1Report(input: TdxMeasureInput, setup: KernelSetup, profile: OvmfProfile): RegisterReport {
  const dependsOn = [
    "kernel: Authenticode SHA-384 of the EFI-stub bzImage as the firmware sees it",
    setup === "patched"
      ? "QEMU's setup-header patch (QEMU < 10 or firmware reading the legacy fw_cfg kernel): with an initrd, the initrd load address — i.e. initrd size and memory below 4 GiB — is part of the hash"
      : "unpatched kernel (QEMU ≥ 10 'etc/boot/kernel' read by the firmware)",
    `OVMF boot-service events (profile ${profile})`,
  ];
  if (input.kernel === undefined) {
    return report(
      null,
      [...dependsOn, "without direct boot, the boot loader chain (shim, grub, UKI) determines RTMR[1]: not modelled"],
      ["kernel"],
    );
  }
  const initrdSize = input.initrd?.length ?? 0;
  if (setup === "patched" && initrdSize > 0 && input.memory === undefined)
    return report(null, dependsOn, ["memory (the patched kernel carries the initrd address)"]);
  const image = setup === "patched" ? qemuPatchKernel(input.kernel, initrdSize, input.memory) : input.kernel;
  const events: MeasuredEvent[] = [
    { event: `kernel (Authenticode, ${setup})`, digest: authenticodeSha384(image) },
    efiActionEvent(EFI_ACTIONS.callingBootOption),
  ];
  if (profile === "pre-202505") events.push(separatorEvent());
  events.push(efiActionEvent(EFI_ACTIONS.exitBootServices), efiActionEvent(EFI_ACTIONS.exitBootServicesOk));
  return report(events, dependsOn, []);
}

function rtmr2Report(input: TdxMeasureInput): RegisterReport {
  const dependsOn = [
    "kernel command line (UTF-16LE + NUL; ' initrd=initrd' appended by OVMF's loader when an initrd is given)",
    "initrd bytes (measured by the kernel's EFI stub)",
    "further events the guest adds (IMA …) are not part of the boot-time value",
  ];
  if (input.kernel === undefined) return report(null, dependsOn, ["kernel"]);
  const cmdline = (input.cmdline ?? "") + (input.initrd ? " initrd=initrd" : "");
  const events: MeasuredEvent[] = [cmdlineEvent(cmdline)];
  if (input.initrd) events.push({ event: "initrd", digest: sha384(input.initrd) });
  return report(events, dependsOn, []);
}
