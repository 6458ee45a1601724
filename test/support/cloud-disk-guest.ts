// Booting the kit's cloud disk the way EC2 and GCE do, shared by the cloud-disk boot tests (the workload disk:
// test/images/guest/cloud-disk-boot.test.ts; the runtime's: runtime-cloud-disk-boot.test.ts): UEFI firmware
// (Debian's OVMF.fd, no direct kernel boot) loading \EFI\BOOT\BOOTX64.EFI from the disk's ESP, a real software TPM
// (swtpm) as the instance's vTPM, the disk on NVMe (EC2 Nitro) or virtio-scsi (GCE), and the simulated PSP on its
// virtio-serial port (runtime/sim/qemu/psp.ts).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { VIRTIO_PSP_PORT_NAME } from "../../runtime/guest/evidence/virtio-psp.js";
import { agentEvents, type SimulatedPsp } from "../../runtime/sim/qemu/index.js";
import { KIT_GUEST_CPU } from "./kit-guest.js";
import { freePort } from "./net.js";
import { haveCommand, requireTool } from "./prereq.js";

/** Debian's OVMF with the SEV metadata the PSP measures (OVMF_CODE_4M.fd has none), a TPM 2.0 driver and event log. */
export const DEBIAN_OVMF = "/usr/share/ovmf/OVMF.fd";

export type DiskShape = "nvme" | "virtio-scsi";

/**
 * What booting a workload cloud disk with its metadata service needs here (each missing tool is reported): root for
 * the image build (mmdebstrap --mode=root), QEMU, Debian's OVMF.fd, swtpm, tpm2-tools (`tpm2Use`: what the test does
 * with the instance's vTPM before the boot) and socat (the guest's forwards to the metadata service and the runtime).
 */
export function cloudDiskBootReady(tpm2Use: string): boolean {
  return (
    requireTool("root (the image build runs mmdebstrap --mode=root)", process.getuid?.() === 0) &&
    requireTool("qemu-system-x86_64", haveCommand("qemu-system-x86_64", ["--version"])) &&
    requireTool("Debian's OVMF.fd (ovmf)", existsSync(DEBIAN_OVMF)) &&
    requireTool("swtpm", haveCommand("swtpm", ["--version"])) &&
    requireTool(`tpm2-tools (${tpm2Use})`, haveCommand("tpm2_createek", ["--version"])) &&
    requireTool("socat (the guest's forwards to the metadata service and the runtime)", haveCommand("socat", ["-V"]))
  );
}

/** The instance's vTPM for one boot: swtpm on a UNIX control socket QEMU's tpm-emulator connects to (state kept in
 *  `tpmDir` across boots of the same instance). */
export async function startInstanceTpm(
  tpmDir: string,
  scratch: string,
): Promise<{ sock: string; child: ChildProcess }> {
  const sock = path.join(mkdtempSync(path.join(scratch, "tpmsock-")), "sock");
  const child = spawn(
    "swtpm",
    ["socket", "--tpm2", "--tpmstate", `dir=${tpmDir}`, "--ctrl", `type=unixio,path=${sock}`, "--terminate"],
    { stdio: "ignore" },
  );
  for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
  return { sock, child };
}

/**
 * QEMU's argv for one boot of a cloud disk: q35 under TCG, the kit's guest CPU, 1 vCPU (the firmware-only launch
 * digest is per vCPU count), the boot disk read-only in `shape`, `dataDisks` as further blank volumes of the same
 * shape (EBS data volumes: more NVMe controllers; GCE: more SCSI disks), user-mode networking with `netOptions`
 * (restrict=on plus the one forward the test needs), and the PSP's port.
 */
export function cloudDiskArgv(o: {
  disk: string;
  shape: DiskShape;
  tpmSock: string;
  netOptions: string[];
  pspSocket: string;
  dataDisks?: string[];
  memoryMb?: number;
  /** Further QEMU arguments, appended (e.g. the SMBIOS strings a cloud's VMs carry). */
  extra?: string[];
}): string[] {
  const drives: string[] =
    o.shape === "nvme"
      ? ["-drive", `file=${o.disk},if=none,id=d0,format=raw,readonly=on`, "-device", "nvme,drive=d0,serial=bkdisk"]
      : [
          "-device",
          "virtio-scsi-pci,id=scsi0",
          "-drive",
          `file=${o.disk},if=none,id=d0,format=raw,readonly=on`,
          "-device",
          "scsi-hd,drive=d0,bus=scsi0.0",
        ];
  (o.dataDisks ?? []).forEach((f, i) => {
    drives.push("-drive", `file=${f},if=none,id=data${i},format=raw`);
    drives.push(
      "-device",
      o.shape === "nvme" ? `nvme,drive=data${i},serial=bkdata${i}` : `scsi-hd,drive=data${i},bus=scsi0.0`,
    );
  });
  return [
    "-machine",
    "q35,accel=tcg",
    "-cpu",
    KIT_GUEST_CPU,
    "-m",
    String(o.memoryMb ?? 1024),
    "-smp",
    "1",
    "-nographic",
    "-no-reboot",
    "-bios",
    DEBIAN_OVMF,
    "-chardev",
    `socket,id=chrtpm,path=${o.tpmSock}`,
    "-tpmdev",
    "emulator,id=tpm0,chardev=chrtpm",
    "-device",
    "tpm-crb,tpmdev=tpm0",
    ...drives,
    "-netdev",
    ["user", "id=n0", ...o.netOptions].join(","),
    "-device",
    "virtio-net-pci,netdev=n0",
    "-chardev",
    `socket,id=bkpsp,path=${o.pspSocket}`,
    "-device",
    "virtio-serial-pci,id=bkvser",
    "-device",
    `virtserialport,chardev=bkpsp,name=${VIRTIO_PSP_PORT_NAME}`,
    ...(o.extra ?? []),
  ];
}

/**
 * Runs `fn` against the instance's vTPM state before (or between) boots, over a TCP swtpm (tpm2-tools' swtpm TCTI):
 * what the cloud's API reads of the instance's TPM (EC2 GetInstanceTpmEkPub) or provisions in it.
 */
export async function withInstanceTpm<T>(tpmDir: string, fn: (tcti: string) => Promise<T>): Promise<T> {
  const port = await freePort();
  const child = spawn(
    "swtpm",
    [
      "socket",
      "--tpm2",
      "--tpmstate",
      `dir=${tpmDir}`,
      "--server",
      `type=tcp,port=${port},bindaddr=127.0.0.1`,
      "--ctrl",
      `type=tcp,port=${port + 1},bindaddr=127.0.0.1`,
      "--flags",
      "not-need-init,startup-clear",
    ],
    { stdio: "ignore" },
  );
  const exited = new Promise((r) => child.once("exit", r));
  const tcti = `swtpm:host=127.0.0.1,port=${port}`;
  try {
    for (let i = 0; i < 50; i++) {
      if (
        spawnSync("tpm2_getcap", ["properties-fixed"], { env: { ...process.env, TPM2TOOLS_TCTI: tcti } }).status === 0
      )
        break;
      await new Promise((res) => setTimeout(res, 100));
    }
    return await fn(tcti);
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
}

/**
 * The instance's EK as EC2's GetInstanceTpmEkPub returns it (`--key-format tpmt`): the TCG default RSA EK of the
 * swtpm whose state the guest will boot with, derived from its endorsement seed before the first boot (nothing is
 * persisted: the agent creates its own EK and AK in the guest).
 */
export function instanceEkTpmt(tpmDir: string, scratch: string): Promise<string> {
  return withInstanceTpm(tpmDir, async (tcti) => {
    const env = { ...process.env, TPM2TOOLS_TCTI: tcti };
    const dir = mkdtempSync(path.join(scratch, "ek-"));
    const r = spawnSync(
      "tpm2_createek",
      ["-c", path.join(dir, "ek.ctx"), "-G", "rsa", "-u", path.join(dir, "ek.pub")],
      {
        env,
      },
    );
    if (r.status !== 0) throw new Error(`tpm2_createek: ${r.stderr?.toString()}`);
    // TPM2B_PUBLIC → TPMT_PUBLIC
    return readFileSync(path.join(dir, "ek.pub")).subarray(2).toString("base64");
  });
}

export interface CloudDiskBoot {
  console: string;
  /** base64 blocks the guest printed between `bk-quote-begin NAME` and `bk-quote-end NAME`, decoded. */
  evidence?: Record<string, Buffer>;
  seconds: number;
  /** Seconds from QEMU's start to the agent's `done` (its bundle written), when it came. */
  toSecrets?: number;
}

export interface CloudDiskBootOptions {
  /** swtpm state directory: the instance's vTPM (kept across boots of the same instance). */
  tpmDir: string;
  /** Where the boot's sockets go. */
  scratch: string;
  /** The user network (restrict=on and the forwards to the cloud's metadata service and the runtime). */
  netOptions: string[];
  pspSocket: string;
  /** The cloud's DMI strings (ec2Smbios, gceSmbios): what cloud-init's ds-identify reads. */
  smbios: string[];
  /** Names the console file BK_DISKBOOT_CONSOLE=DIR keeps. */
  label: string;
  /** Sees the console as it grows. */
  onConsole?: (text: string) => void;
}

/** Boots `disk` under OVMF + the instance's swtpm + the PSP until `until(console)` (or `timeoutMs`), one guest. */
export async function bootCloudDisk(
  disk: string,
  shape: DiskShape,
  o: CloudDiskBootOptions,
  until: (text: string) => boolean,
  timeoutMs: number,
): Promise<CloudDiskBoot> {
  const t0 = Date.now();
  const { sock, child: swtpm } = await startInstanceTpm(o.tpmDir, o.scratch);
  const argv = cloudDiskArgv({
    disk,
    shape,
    tpmSock: sock,
    netOptions: o.netOptions,
    pspSocket: o.pspSocket,
    extra: o.smbios,
  });
  const q: ChildProcess = spawn("qemu-system-x86_64", argv, { stdio: ["ignore", "pipe", "pipe"] });
  let toSecrets: number | undefined;
  const text = await watchConsole(q, timeoutMs, (t) => {
    o.onConsole?.(t);
    if (toSecrets === undefined && agentEvents(t).some((e) => e.event === "done"))
      toSecrets = Math.round((Date.now() - t0) / 1000);
    return until(t) || /powering off/.test(t);
  });
  swtpm.kill();
  // BK_DISKBOOT_CONSOLE=DIR keeps each boot's console for reading after the run.
  if (process.env.BK_DISKBOOT_CONSOLE)
    writeFileSync(path.join(process.env.BK_DISKBOOT_CONSOLE, `cloud-disk-boot-${o.label}.log`), text);
  const evidence = consoleBlocks(text, "bk-quote");
  return {
    console: text,
    seconds: Math.round((Date.now() - t0) / 1000),
    ...(Object.keys(evidence).length ? { evidence } : {}),
    ...(toSecrets !== undefined ? { toSecrets } : {}),
  };
}

/**
 * The console (stdout and stderr) of a QEMU guest until it exits: killed once `stop(text so far)` says so, or after
 * `timeoutMs`.
 */
export function watchConsole(q: ChildProcess, timeoutMs: number, stop: (text: string) => boolean): Promise<string> {
  let text = "";
  return new Promise<string>((resolve) => {
    const timer = setTimeout(() => q.kill("SIGKILL"), timeoutMs);
    const onData = (c: Buffer) => {
      text += c.toString("latin1");
      if (stop(text)) q.kill("SIGKILL");
    };
    q.stdout!.on("data", onData);
    q.stderr!.on("data", onData);
    q.on("close", () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}

/**
 * The base64 blocks a guest printed on its console between `<tag>-begin NAME` and `<tag>-end NAME` (kernel lines may
 * interleave: only base64 lines count), decoded, by NAME.
 */
export function consoleBlocks(text: string, tag: string): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const m of text.matchAll(new RegExp(`${tag}-begin (\\S+)\\r?\\n([\\s\\S]*?)${tag}-end \\1`, "g")))
    out[m[1]] = Buffer.from(
      m[2]
        .split(/\r?\n/)
        .filter((l) => /^[A-Za-z0-9+/=]+$/.test(l))
        .join(""),
      "base64",
    );
  return out;
}

/** One request to the simulated PSP on its socket, as the guest's virtio-serial port sends it. */
export function pspReport(psp: SimulatedPsp, reportData: Buffer): Promise<{ report: string; cert_table: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(psp.socketPath);
    let buf = "";
    s.on("error", reject);
    s.on("data", (d) => {
      buf += d.toString("utf8");
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      s.destroy();
      const a = JSON.parse(buf.slice(0, nl)) as { report?: string; cert_table?: string; error?: string };
      if (!a.report || !a.cert_table) reject(new Error(`PSP: ${a.error ?? "no report"}`));
      else resolve({ report: a.report, cert_table: a.cert_table });
    });
    s.write(`${JSON.stringify({ report_data: reportData.toString("hex") })}\n`);
  });
}

/** The agent's events printed `event` (its unit's output goes to the console). */
export const sawEvent = (text: string, event: string) => text.includes(`"event":"${event}"`);

/** The user-data with a runcmd the host adds before the registered ones: printing `marker`, it must never run. */
export function injectRuncmd(userData: string, marker: string): string {
  const at = userData.indexOf("\nruncmd:\n");
  if (at < 0) throw new Error("the user-data has no runcmd to add to");
  const to = at + "\nruncmd:\n".length;
  return `${userData.slice(0, to)}  - [ sh, -c, 'echo ${marker} >/dev/console' ]\n${userData.slice(to)}`;
}

/**
 * Nitride's failed check ids in the agent's refusal ("attestation refused (HTTP 403): id: detail; id: detail"),
 * without the EK credential round still pending (it is listed until the round trip, which a refusal never reaches)
 * and without nitride.reference-values (a refused verdict has no claims to compare).
 */
export function refusedIds(error: string): string[] {
  return [...error.matchAll(/(?:\): |; )([a-z][\w-]*(?:\.[\w-]+)+): (pending:)?/g)]
    .filter((m) => !(m[1] === "vtpm.ek-credential" && m[2]) && m[1] !== "nitride.reference-values")
    .map((m) => m[1]);
}
