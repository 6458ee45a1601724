// Reads the ACPI blobs QEMU hands to the firmware (fw_cfg files etc/table-loader, etc/acpi/rsdp,
// etc/acpi/tables) from a real QEMU started with the qtest accelerator: no guest runs, the fw_cfg I/O
// ports (0x510 selector, 0x511 data) are driven over the qtest line protocol. RTMR[0] measures these
// blobs, and they depend on QEMU version, machine type, vCPUs, RAM and devices — so they must come from
// the QEMU (and arguments) that will run the TD, minus the TDX object itself.
import { spawn } from "node:child_process";
import { TdxInputError } from "./errors.js";
import type { QemuAcpiBlobs } from "./measure.js";

const FW_CFG_CTL = 0x510;
const FW_CFG_DATA = 0x511;
const FW_CFG_FILE_DIR = 0x19;
export const QEMU_ACPI_FILES = {
  tableLoader: "etc/table-loader",
  rsdp: "etc/acpi/rsdp",
  tables: "etc/acpi/tables",
} as const;

/** Arguments that would make QEMU run a guest, need TDX hardware or fight with qtest. */
const REFUSED =
  /^-(accel|enable-kvm|qtest|object|bios|pflash|kernel|initrd|append|daemonize|monitor|serial|display|nographic|S)$/;

export interface DumpQemuAcpiOptions {
  /** QEMU binary (default qemu-system-x86_64). */
  qemu?: string;
  /** Machine/device arguments of the real launch, e.g. ["-machine", "q35", "-smp", "4", "-m", "4G"]. */
  args: string[];
  timeoutMs?: number;
  /** Read byte by byte through the data port even when fw_cfg DMA is available (slow; for cross-checks). */
  ioPortsOnly?: boolean;
}

class QtestSession {
  private buf = "";
  private waiting: ((line: string) => void)[] = [];
  private failed: Error | null = null;
  constructor(private readonly child: ReturnType<typeof spawn>) {
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => {
      this.buf += chunk;
      let nl: number;
      while ((nl = this.buf.indexOf("\n")) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        if (!line.startsWith("OK") && !line.startsWith("FAIL") && !line.startsWith("ERR")) continue; // async events
        this.waiting.shift()?.(line);
      }
    });
  }
  fail(e: Error) {
    this.failed = e;
    for (const w of this.waiting.splice(0)) w(`ERR ${e.message}`);
  }
  /** Sends commands in one write and resolves with their response lines, in order. */
  run(commands: string[]): Promise<string[]> {
    if (this.failed) return Promise.reject(this.failed);
    const replies = commands.map(() => new Promise<string>((resolve) => this.waiting.push(resolve)));
    this.child.stdin!.write(commands.join("\n") + "\n");
    return Promise.all(replies).then((lines) => {
      const bad = lines.find((l) => !l.startsWith("OK"));
      if (bad) throw new Error(`qtest: ${bad}`);
      return lines;
    });
  }
  async select(selector: number) {
    await this.run([`outw 0x${FW_CFG_CTL.toString(16)} 0x${selector.toString(16)}`]);
  }
  async read(n: number): Promise<Buffer> {
    const lines = await this.run(Array.from({ length: n }, () => `inb 0x${FW_CFG_DATA.toString(16)}`));
    return Buffer.from(lines.map((l) => parseInt(l.split(" ")[1], 16)));
  }
  /**
   * fw_cfg DMA (feature bit 1 of FW_CFG_ID): one descriptor write, a doorbell on port 0x514/0x518 and one
   * memory read instead of an I/O round trip per byte. The registers are big-endian, so the value the
   * CPU writes is the byte-swapped address.
   */
  async dmaRead(selector: number, size: number): Promise<Buffer> {
    const desc = Buffer.alloc(16);
    desc.writeUInt32BE(((selector << 16) | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ) >>> 0, 0);
    desc.writeUInt32BE(size, 4);
    desc.writeUInt32BE(DMA_BUFFER, 12);
    const doorbell = Buffer.alloc(4);
    doorbell.writeUInt32BE(DMA_DESCRIPTOR);
    const [, , , status, data] = await this.run([
      `write 0x${DMA_DESCRIPTOR.toString(16)} 0x10 0x${desc.toString("hex")}`,
      `outl 0x${FW_CFG_DMA.toString(16)} 0x0`,
      `outl 0x${(FW_CFG_DMA + 4).toString(16)} 0x${doorbell.readUInt32LE(0).toString(16)}`,
      `read 0x${DMA_DESCRIPTOR.toString(16)} 0x4`,
      `b64read 0x${DMA_BUFFER.toString(16)} 0x${size.toString(16)}`,
    ]);
    if (parseInt(status.split(" ")[1], 16) !== 0)
      throw new Error(`fw_cfg DMA of selector 0x${selector.toString(16)} failed (control ${status.split(" ")[1]})`);
    const out = Buffer.from(data.split(" ")[1] ?? "", "base64");
    if (out.length !== size) throw new Error(`fw_cfg DMA returned ${out.length} of ${size} bytes`);
    return out;
  }
}

const FW_CFG_ID = 0x01;
const FW_CFG_DMA = 0x514;
const FW_CFG_DMA_READ = 0x02;
const FW_CFG_DMA_SELECT = 0x08;
// Guest-physical scratch addresses (low RAM, present with any -m QEMU accepts for q35/pc).
const DMA_DESCRIPTOR = 0x10_0000;
const DMA_BUFFER = 0x20_0000;

/**
 * Starts QEMU with the given machine arguments, stopped, with a qtest socket on stdio, and reads the three
 * ACPI blobs. Uses the qtest accelerator, or a stopped TCG vCPU where the build lacks it (Debian's 7.2).
 */
export async function dumpQemuAcpi(opts: DumpQemuAcpiOptions): Promise<QemuAcpiBlobs> {
  const files = await readFwCfgFiles(opts, Object.values(QEMU_ACPI_FILES));
  return {
    tableLoader: files.get(QEMU_ACPI_FILES.tableLoader)!,
    rsdp: files.get(QEMU_ACPI_FILES.rsdp)!,
    tables: files.get(QEMU_ACPI_FILES.tables)!,
  };
}

/** Reads named fw_cfg files from QEMU (see dumpQemuAcpi). */
export async function readFwCfgFiles(
  opts: DumpQemuAcpiOptions,
  names: readonly string[],
): Promise<Map<string, Buffer>> {
  const bad = opts.args.find((a) => REFUSED.test(a));
  if (bad)
    throw new TdxInputError(
      "acpiQemuArgs",
      `'${bad}' is not accepted: give only the machine/device arguments of the launch (no accelerator, TDX object, firmware or kernel)`,
    );
  try {
    return await dumpWith(opts, ["-accel", "qtest"], names);
  } catch (e) {
    if (e instanceof TdxInputError && /invalid accelerator qtest/.test(e.message))
      return dumpWith(opts, ["-accel", "tcg", "-S"], names);
    throw e;
  }
}

async function dumpWith(
  opts: DumpQemuAcpiOptions,
  accel: string[],
  names: readonly string[],
): Promise<Map<string, Buffer>> {
  const fixed = [
    ...accel,
    "-qtest",
    "stdio",
    "-qtest-log",
    "/dev/null",
    "-display",
    "none",
    "-monitor",
    "none",
    "-serial",
    "none",
  ];
  const child = spawn(opts.qemu ?? "qemu-system-x86_64", [...opts.args, ...fixed], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (d: string) => (stderr = (stderr + d).slice(-2000)));
  const session = new QtestSession(child);
  const exited = new Promise<never>((_, reject) => {
    child.on("error", (e) =>
      reject(new TdxInputError("acpiQemu", `cannot start ${opts.qemu ?? "qemu-system-x86_64"}: ${e.message}`)),
    );
    child.on("exit", (code) =>
      reject(
        new TdxInputError(
          "acpiQemuArgs",
          `QEMU exited (${code}) before the ACPI blobs were read: ${stderr.trim().split("\n").slice(-3).join(" | ")}`,
        ),
      ),
    );
  });
  exited.catch((e: Error) => session.fail(e));
  const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
  try {
    const work = (async () => {
      await session.select(FW_CFG_ID);
      const dma = !opts.ioPortsOnly && ((await session.read(4)).readUInt32LE(0) & 2) !== 0;
      const fetch = async (selector: number, size: number) => {
        if (dma) return session.dmaRead(selector, size);
        await session.select(selector);
        return session.read(size);
      };
      const head = await fetch(FW_CFG_FILE_DIR, 4);
      const count = head.readUInt32BE(0);
      if (count === 0 || count > 1024)
        throw new TdxInputError("acpiQemuArgs", `fw_cfg file directory has ${count} entries`);
      const dir = (await fetch(FW_CFG_FILE_DIR, 4 + count * 64)).subarray(4);
      const files = new Map<string, { size: number; select: number }>();
      for (let i = 0; i < count; i++) {
        const e = dir.subarray(i * 64, (i + 1) * 64);
        const name = e.toString("latin1", 8, 64).replace(/\0.*$/s, "");
        files.set(name, { size: e.readUInt32BE(0), select: e.readUInt16BE(4) });
      }
      const read = async (name: string) => {
        const f = files.get(name);
        if (!f)
          throw new TdxInputError(
            "acpiQemuArgs",
            `QEMU offers no fw_cfg file '${name}' (ACPI disabled or not a q35/pc machine?)`,
          );
        return fetch(f.select, f.size);
      };
      const out = new Map<string, Buffer>();
      for (const name of names) out.set(name, await read(name));
      return out;
    })();
    return await Promise.race([work, exited]);
  } finally {
    clearTimeout(timer);
    child.stdin!.end();
    child.kill("SIGKILL");
  }
}
