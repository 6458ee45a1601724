// Boots a real QEMU guest the way the local stack's "hardware" would: the simulated PSP first measures
// the exact files named by the QEMU command line (-bios, -kernel, -initrd, -append, -smp, -cpu), then
// QEMU starts with that same command line plus one virtio-serial port wired to the PSP (the stand-in
// for the SNP guest-request channel). The argv is the one the QEMU/Proxmox components produce for a
// real SNP host minus the sev-snp-guest object (Debian's QEMU 7.2 has none, and TCG cannot run it).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { SnpSimulator } from "../snp.js";
import { measureLaunch, type LaunchMeasurement } from "../localvm/psp.js";
import { parseOvmf, sevHashesTable } from "../../../images/index.js";
import { LocalVmError } from "../localvm/errors.js";
import { startSimulatedPsp, type SimulatedPsp } from "./psp.js";
import { VIRTIO_PSP_PORT_NAME } from "../../guest/evidence/virtio-psp.js";

export type Accel = "kvm" | "tcg";

/** The boot inputs QEMU would load, read from its command line. */
export function bootInputsOf(argv: string[]): {
  firmware: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  vcpus: number;
  vcpuType: string;
} {
  const val = (flag: string) => {
    const i = argv.lastIndexOf(flag);
    return i >= 0 && i + 1 < argv.length ? argv[i + 1] : undefined;
  };
  const firmware = val("-bios");
  if (!firmware) throw new LocalVmError("argv", "has no -bios (the firmware the PSP measures)");
  const smp = val("-smp") ?? "1";
  const vcpus = Number(/^(?:cpus=)?(\d+)/.exec(smp)?.[1]);
  return {
    firmware,
    kernel: val("-kernel"),
    initrd: val("-initrd"),
    append: val("-append"),
    vcpus,
    vcpuType: (val("-cpu") ?? "qemu64").split(",")[0],
  };
}

let kvmVerdict: Accel | undefined;

/** KVM when it really runs a guest here (a /dev/kvm that cannot run stock kernels, like a PVM
 *  module, fails with "KVM internal error"), else TCG. BK_QEMU_ACCEL=kvm|tcg overrides (as the image boot test). */
export function usableAccel(firmware = "/usr/share/ovmf/OVMF.fd"): Accel {
  const forced = process.env.BK_QEMU_ACCEL ?? process.env.BUCKYPAPER_ACCEL;
  if (forced === "kvm" || forced === "tcg") return forced;
  if (kvmVerdict) return kvmVerdict;
  kvmVerdict = "tcg";
  if (existsSync("/dev/kvm") && existsSync(firmware)) {
    const r = spawnSync(
      "timeout",
      // With the guest's firmware: a PVM-style /dev/kvm runs SeaBIOS but stops OVMF with an emulation failure.
      [
        "8",
        "qemu-system-x86_64",
        "-accel",
        "kvm",
        "-machine",
        "q35",
        "-m",
        "256M",
        "-nodefaults",
        "-nographic",
        "-bios",
        firmware,
        "-serial",
        "none",
        "-monitor",
        "none",
      ],
      { encoding: "utf8", input: "" },
    );
    // Still running when the timeout killed it (124) and no KVM error: KVM works.
    const out = `${r.stdout}${r.stderr}`;
    if (r.status === 124 && !/KVM internal error|failed to initialize kvm|Could not access KVM/i.test(out))
      kvmVerdict = "kvm";
  }
  return kvmVerdict;
}

/** Guest RAM in bytes from QEMU's -m (e.g. "1024M", "2G", "512"). */
function memoryBytes(argv: string[]): number {
  const i = argv.lastIndexOf("-m");
  const m = /^(?:size=)?(\d+)([MG]?)/i.exec(i >= 0 ? argv[i + 1] : "128M");
  if (!m) throw new LocalVmError("argv", `-m ${argv[i + 1]} is not a memory size`);
  return Number(m[1]) * (m[2].toUpperCase() === "G" ? 2 ** 30 : 2 ** 20);
}

/**
 * The "kernel" blob the firmware reads over fw_cfg (setup || kernel) when QEMU boots WITHOUT SEV:
 * QEMU then writes the boot-protocol fields into the setup header (hw/i386/x86.c x86_load_linux:
 * loader type, heap, command line and initrd addresses), while with SEV it leaves the file as it is
 * so its hash matches. Only the fields QEMU 7.2 writes for a protocol >= 2.12 relocatable bzImage on
 * q35, no dtb, no vga=; Debian's QEMU 7.2 carries the revert of the setup_data RNG seed.
 */
export function qemuServedKernel(kernel: Buffer, initrdSize: number | undefined, memBytes: number): Buffer {
  const k = Buffer.from(kernel);
  const protocol = k.readUInt16LE(0x206);
  if (k.readUInt32LE(0x202) !== 0x53726448 || protocol < 0x20c || !(k[0x211] & 0x01))
    throw new LocalVmError("kernel", "is not a relocatable bzImage with boot protocol >= 2.12");
  const realAddr = 0x10000;
  const cmdlineAddr = 0x20000;
  // q35: RAM below 4 GiB is all of it up to 0xb0000000; the top 0x28000 bytes hold ACPI tables.
  const below4g = memBytes >= 0xb0000000 ? 0x80000000 : memBytes;
  const acpiDataSize = 0x20000 + 0x8000;
  let initrdMax = k.readUInt16LE(0x236) & (1 << 3) ? 0xffffffff : k.readUInt32LE(0x22c);
  if (initrdMax >= below4g - acpiDataSize) initrdMax = below4g - acpiDataSize - 1;
  k.writeUInt32LE(cmdlineAddr, 0x228);
  k[0x210] = 0xb0;
  k[0x211] |= 0x80;
  k.writeUInt16LE(cmdlineAddr - realAddr - 0x200, 0x224);
  if (initrdSize !== undefined) {
    k.writeUInt32LE(Math.floor((initrdMax - initrdSize) / 4096) * 4096, 0x218);
    k.writeUInt32LE(initrdSize, 0x21c);
  }
  return k;
}

/**
 * Measured direct boot without the SEV object. On an SNP host QEMU (`kernel-hashes=on`) computes the
 * kernel/initrd/cmdline hashes table from the files it loads and places it in the firmware's hashes
 * page, which the PSP measures; the AmdSev firmware then refuses (stops in a dead loop on) a kernel,
 * initrd or command line whose SHA-256 is not in that table. Without SEV, QEMU 7.2 writes no table —
 * the firmware then refuses every kernel and falls back to its grub — so the launcher does QEMU's
 * part: the table computed from the exact files on the command line, loaded at the table's address.
 * The PSP measured the table of those same files (localvm/psp.ts); the only difference is the kernel
 * entry, which here hashes the setup header as QEMU-without-SEV patches it (qemuServedKernel), since
 * that is what the firmware reads back and verifies.
 */
export function kernelHashesLoader(argv: string[], launch: LaunchMeasurement, stateDir: string): string[] {
  if (!launch.kernelMeasured) return [];
  const b = bootInputsOf(argv);
  const gpa = parseOvmf(readFileSync(b.firmware)).hashTableGpa;
  if (gpa === null) throw new LocalVmError("firmware", "has a kernel-hashes section but no hashes table address");
  const initrd = b.initrd ? readFileSync(b.initrd) : undefined;
  const table = sevHashesTable({
    kernel: qemuServedKernel(readFileSync(b.kernel!), initrd?.length, memoryBytes(argv)),
    initrd,
    append: b.append,
  });
  const file = path.join(stateDir, "sev-hashes.bin");
  writeFileSync(file, table);
  return ["-device", `loader,file=${file},addr=0x${gpa.toString(16)},force-raw=on`];
}

/** The SNP launch parameters a host passes besides the files: POLICY and HOST_DATA. */
export interface SnpLaunchParams {
  /** Guest POLICY (QEMU sev-snp-guest policy=; default 0x30000). */
  policy?: bigint;
  /** HOST_DATA, 32 bytes (QEMU sev-snp-guest host-data=, base64): e.g. SHA-256 of the instance identity. */
  hostData?: Uint8Array;
}

/** POLICY and HOST_DATA from a sev-snp-guest object on the command line (absent: none given there). */
export function snpLaunchParamsOf(argv: string[]): SnpLaunchParams {
  const obj = argv.find((a, i) => argv[i - 1] === "-object" && a.startsWith("sev-snp-guest,"));
  if (!obj) return {};
  const props = new Map(
    obj
      .split(",")
      .slice(1)
      .map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)] as const),
  );
  const out: SnpLaunchParams = {};
  const policy = props.get("policy");
  if (policy !== undefined) {
    if (!/^(0x[0-9a-f]+|\d+)$/i.test(policy))
      throw new LocalVmError("argv", `sev-snp-guest policy=${policy} is not a number`);
    out.policy = BigInt(policy);
  }
  const hd = props.get("host-data");
  if (hd !== undefined) {
    const b = Buffer.from(hd, "base64");
    if (b.length !== 32 || b.toString("base64") !== hd)
      throw new LocalVmError("argv", "sev-snp-guest host-data= must be 32 bytes, base64");
    out.hostData = b;
  }
  return out;
}

/** The argv's launch parameters, and the launcher's (for an argv without the SEV object); they must agree. */
function launchParams(argv: string[], given: SnpLaunchParams | undefined): { policy: bigint; hostData: Uint8Array } {
  const fromArgv = snpLaunchParamsOf(argv);
  if (given?.policy !== undefined && fromArgv.policy !== undefined && given.policy !== fromArgv.policy)
    throw new LocalVmError(
      "snp.policy",
      `0x${given.policy.toString(16)} differs from the argv's policy=0x${fromArgv.policy.toString(16)}`,
    );
  const hostData = given?.hostData ?? fromArgv.hostData;
  if (hostData !== undefined && hostData.length !== 32) throw new LocalVmError("snp.hostData", "must be 32 bytes");
  if (given?.hostData && fromArgv.hostData && !Buffer.from(given.hostData).equals(Buffer.from(fromArgv.hostData)))
    throw new LocalVmError("snp.hostData", "differs from the argv's host-data=");
  return { policy: given?.policy ?? fromArgv.policy ?? 0x30000n, hostData: hostData ?? new Uint8Array(32) };
}

export interface GuestLaunchOptions {
  name: string;
  /** The command line the components produce (qemuGuestArgv), program name first. */
  argv: string[];
  /** The simulated platform (the "chip") whose key signs the reports. */
  sim: SnpSimulator;
  /** Holds psp.sock and console.log. */
  stateDir: string;
  /** Replaces the argv's -accel (default: usableAccel()). */
  accel?: Accel;
  /**
   * POLICY and HOST_DATA of the launch, what QEMU's sev-snp-guest object would pass (policy=, host-data=);
   * read from the argv's object when it has one. The PSP puts them in every report.
   */
  snp?: SnpLaunchParams;
}

export interface RunningGuest {
  name: string;
  launch: LaunchMeasurement;
  psp: SimulatedPsp;
  qemu: ChildProcess;
  consoleLog: string;
  argv: string[];
  /** Resolves with the first console line matching `re` (rejects when QEMU exits or on timeout). */
  waitForConsole(re: RegExp, timeoutMs: number): Promise<string>;
  console(): string;
  stop(): Promise<void>;
}

export async function launchGuest(o: GuestLaunchOptions): Promise<RunningGuest> {
  // 1. The PSP measures what QEMU will load: the files named on the command line, read now.
  const launch = measureLaunch(bootInputsOf(o.argv));
  const params = launchParams(o.argv, o.snp);
  const psp = await startSimulatedPsp({
    sim: o.sim,
    measurement: launch.measurement,
    socketPath: path.join(o.stateDir, "psp.sock"),
    policy: params.policy,
    hostData: params.hostData,
    // Derived keys only for a launch whose MEASUREMENT covers kernel, initrd and command line.
    kernelMeasured: launch.kernelMeasured,
  });
  // 2. QEMU with the same command line, the accelerator that works here, and the PSP port.
  const argv = [...o.argv];
  const ai = argv.indexOf("-accel");
  const accel = o.accel ?? usableAccel(bootInputsOf(argv).firmware);
  if (ai >= 0) argv[ai + 1] = accel;
  else argv.push("-accel", accel);
  argv.push(
    "-chardev",
    `socket,id=bkpsp,path=${psp.socketPath}`,
    "-device",
    "virtio-serial-pci,id=bkvser",
    "-device",
    `virtserialport,chardev=bkpsp,name=${VIRTIO_PSP_PORT_NAME}`,
  );
  argv.push(...kernelHashesLoader(o.argv, launch, o.stateDir));
  const consoleLog = path.join(o.stateDir, "console.log");
  const fd = openSync(consoleLog, "w", 0o600);
  const qemu = spawn(argv[0], argv.slice(1), { stdio: ["pipe", fd, fd] });
  closeSync(fd);
  const exited = new Promise<number | null>((resolve) => qemu.once("exit", (code) => resolve(code)));
  const consoleText = () => {
    try {
      return readFileSync(consoleLog, "utf8");
    } catch {
      return "";
    }
  };
  return {
    name: o.name,
    launch,
    psp,
    qemu,
    consoleLog,
    argv,
    console: consoleText,
    async waitForConsole(re, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      let done = false;
      void exited.then(() => (done = true));
      for (;;) {
        const m = consoleText()
          .split(/\r?\n/)
          .find((l) => re.test(l));
        if (m) return m;
        const tail = () => consoleText().slice(-1500);
        if (done) throw new LocalVmError(o.name, `QEMU exited before the console showed ${re}; console:\n${tail()}`);
        if (Date.now() > deadline)
          throw new LocalVmError(o.name, `the console did not show ${re} in ${timeoutMs} ms; console:\n${tail()}`);
        await new Promise((r) => setTimeout(r, 500));
      }
    },
    async stop() {
      if (qemu.exitCode === null && qemu.signalCode === null) {
        qemu.kill("SIGTERM");
        const t = setTimeout(() => qemu.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(t);
      }
      await psp.close();
    },
  };
}
