// `buckypaper measure tdx`: MRTD and RTMR[0..3] of a TD booted by QEMU + edk2 OVMF, as JSON. Registers
// whose inputs were not given come out null with the missing inputs named (also printed on stderr).
import { parseFlags, readFlagFile } from "./args.js";
import { Exit, UsageError, type CliIo } from "./io.js";
import {
  KERNEL_SETUPS,
  MRTD_ORDERS,
  OVMF_PROFILES,
  TdxInputError,
  dumpQemuAcpi,
  measureTdx,
  parseMemorySize,
  type KernelSetup,
  type MrtdOrder,
  type OvmfProfile,
  type QemuAcpiBlobs,
} from "../images/tdx/index.js";

const USAGE = `usage: buckypaper measure tdx --firmware FILE [--mrtd-order single|two-pass]
    [--kernel F [--initrd F] [--append STR]] [--memory SIZE]
    [--acpi-loader F --acpi-rsdp F --acpi-tables F | --acpi-qemu-args "ARGS" [--acpi-qemu BIN]]
    [--kernel-setup patched|unpatched] [--ovmf-profile P]

  --firmware       unified OVMF image with TDVF metadata (e.g. Debian /usr/share/ovmf/OVMF.fd)
  --mrtd-order     page-add order of the host: single (default; upstream KVM >= 6.16 + QEMU >= 10.1, GCE)
                   or two-pass (KVM TDX patches v19 / QEMU 8.2 TDX builds, e.g. Canonical 24.04 TDX)
  --memory         guest RAM as QEMU -m takes it (2G, 4096M; bare number = MiB): RTMR[0] TD HOB, and
                   RTMR[1] when the patched kernel carries an initrd address
  --acpi-*         QEMU's fw_cfg ACPI blobs (etc/table-loader, etc/acpi/rsdp, etc/acpi/tables) dumped
                   from the QEMU that will run the TD; RTMR[0] needs them
  --acpi-qemu-args read those blobs from a real QEMU started (stopped, qtest) with these machine/device
                   arguments of the launch, without the TDX object/firmware/kernel, e.g.
                   --acpi-qemu-args="-machine q35 -smp 4 -nodefaults" (note the =); -m is added from --memory
  --acpi-qemu      QEMU binary for --acpi-qemu-args (default qemu-system-x86_64)
  --kernel-setup   patched (default; QEMU < 10 writes into the setup header) or unpatched (QEMU >= 10
                   with firmware reading fw_cfg etc/boot/kernel)
  --ovmf-profile   ${OVMF_PROFILES.join(" | ")} (default pre-202505): OVMF event-log shape

Prints JSON {mrtd, rtmr0, rtmr1, rtmr2, rtmr3, mrtdOrder, kernelSetup, ovmfProfile,
registers: {<reg>: {value, dependsOn, missing, events}}, notes}.`;

const FLAGS = {
  firmware: { type: "string" },
  kernel: { type: "string" },
  initrd: { type: "string" },
  append: { type: "string" },
  memory: { type: "string" },
  "mrtd-order": { type: "string" },
  "kernel-setup": { type: "string" },
  "ovmf-profile": { type: "string" },
  "acpi-loader": { type: "string" },
  "acpi-rsdp": { type: "string" },
  "acpi-tables": { type: "string" },
  "acpi-qemu-args": { type: "string" },
  "acpi-qemu": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

function choice<T extends string>(flag: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value))
    throw new UsageError(`--${flag}: '${value}' is not one of ${allowed.join(", ")}`);
  return value as T;
}

function acpiBlobs(v: Record<string, string | boolean | undefined>): QemuAcpiBlobs | undefined {
  const names = ["acpi-loader", "acpi-rsdp", "acpi-tables"] as const;
  const given = names.filter((n) => v[n] !== undefined);
  if (given.length === 0) return undefined;
  if (given.length !== names.length)
    throw new UsageError(
      `--${names.find((n) => v[n] === undefined)}: the three ACPI blobs go together (${names.map((n) => "--" + n).join(", ")})`,
    );
  const read = (n: (typeof names)[number]) => readFlagFile(`--${n}`, v[n] as string);
  return { tableLoader: read("acpi-loader"), rsdp: read("acpi-rsdp"), tables: read("acpi-tables") };
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values: v } = parseFlags(argv, FLAGS);
  if (v.help) {
    io.out(USAGE);
    return Exit.ok;
  }
  if (v.firmware === undefined) throw new UsageError(`--firmware is required\n\n${USAGE}`);
  if (v.kernel === undefined && (v.initrd !== undefined || v.append !== undefined)) {
    throw new UsageError("--initrd/--append need --kernel (they are only measured with direct kernel boot)");
  }
  const mrtdOrder = choice<MrtdOrder>("mrtd-order", v["mrtd-order"], MRTD_ORDERS);
  const kernelSetup = choice<KernelSetup>("kernel-setup", v["kernel-setup"], KERNEL_SETUPS);
  const ovmfProfile = choice<OvmfProfile>("ovmf-profile", v["ovmf-profile"], OVMF_PROFILES);
  try {
    const memory = v.memory === undefined ? undefined : parseMemorySize(v.memory);
    let acpi = acpiBlobs(v);
    if (v["acpi-qemu-args"] !== undefined) {
      if (acpi) throw new UsageError("--acpi-qemu-args: give either the ACPI blob files or QEMU arguments, not both");
      const args = v["acpi-qemu-args"].split(/\s+/).filter(Boolean);
      if (memory !== undefined && !args.includes("-m")) args.push("-m", `${memory / 1024 / 1024}M`);
      acpi = await dumpQemuAcpi({ qemu: v["acpi-qemu"], args });
    } else if (v["acpi-qemu"] !== undefined) {
      throw new UsageError("--acpi-qemu: only used with --acpi-qemu-args");
    }
    const result = measureTdx({
      firmware: readFlagFile("--firmware", v.firmware),
      kernel: v.kernel === undefined ? undefined : readFlagFile("--kernel", v.kernel),
      initrd: v.initrd === undefined ? undefined : readFlagFile("--initrd", v.initrd),
      cmdline: v.append,
      memory,
      acpi,
      mrtdOrder,
      kernelSetup,
      ovmfProfile,
    });
    io.out(JSON.stringify(result, null, 2));
    for (const [reg, r] of Object.entries(result.registers)) {
      if (r.value === null) io.err(`note: ${reg} not computed; missing: ${r.missing.join("; ")}`);
    }
    return Exit.ok;
  } catch (e) {
    if (e instanceof TdxInputError) {
      // "firmware: …" → "--firmware: …"; "firmware.sections[0]: …" keeps the inner field in the text.
      const whole = FIELD_FLAGS[e.field] !== undefined;
      throw new UsageError(`--${flagOf(e.field)}: ${whole ? e.message.slice(e.field.length + 2) : e.message}`);
    }
    throw e;
  }
}

// Library field names → CLI flags, so the message names what the user typed.
const FIELD_FLAGS: Record<string, string> = {
  firmware: "firmware",
  kernel: "kernel",
  initrd: "initrd",
  memory: "memory",
  acpiQemuArgs: "acpi-qemu-args",
  acpiQemu: "acpi-qemu",
  mrtdOrder: "mrtd-order",
  kernelSetup: "kernel-setup",
  ovmfProfile: "ovmf-profile",
};

function flagOf(field: string): string {
  const head = field.split(/[.[]/)[0];
  return FIELD_FLAGS[head] ?? head;
}
