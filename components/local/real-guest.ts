// The real-guest mode of LocalConfidentialVm: which mode a VM gets on this machine, the kit guest image
// (built once, cached), and the exact QEMU command line — the one the QEMU/Proxmox components produce
// for a real SNP host (qemuGuestArgv) minus the sev-snp-guest object, which Debian's QEMU and TCG lack.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { qemuGuestArgv } from "../qemu/settings.js";
import { Tee } from "../common/types.js";
import { ConfigError } from "../common/errors.js";
import { realGuestSupport } from "../../runtime/sim/qemu/local-image.js";
import type { LocalGuestImage } from "../../runtime/sim/qemu/local-image.js";
import { GUEST_RUNTIME_ADDR, guestNetOptions } from "../../runtime/sim/qemu/guest.js";

/** How a LocalConfidentialVm runs. */
export type LocalVmMode = "auto" | "real" | "process";

// components/ in the sources, dist/components/ when compiled: the package root is two or three levels up.
const HERE = path.dirname(fileURLToPath(import.meta.url));
const PACKAGE_ROOT =
  path.basename(path.dirname(path.dirname(HERE))) === "dist"
    ? path.resolve(HERE, "..", "..", "..")
    : path.resolve(HERE, "..", "..");

let support: { ok: boolean; reason: string } | undefined;

/** real or process, and why not real (empty when real). `auto` is real when this machine can run guests
 *  (QEMU, root, the kit image's build tools and the AmdSev firmware or what its build needs). */
export function resolveMode(who: string, mode: LocalVmMode): { mode: "real" | "process"; why: string } {
  if (!["auto", "real", "process"].includes(mode))
    throw new ConfigError(who, "mode", `is '${String(mode)}'`, ["auto", "real", "process"]);
  if (mode === "process") return { mode, why: "mode 'process' was asked for" };
  if (process.env.BK_LOCAL_VMS === "process" && mode === "auto")
    return { mode: "process", why: "BK_LOCAL_VMS=process" };
  support ??= realGuestSupport(PACKAGE_ROOT);
  if (support.ok) return { mode: "real", why: "" };
  if (mode === "real")
    throw new ConfigError(who, "mode", `is 'real' but this machine cannot run guests (${support.reason})`);
  return { mode: "process", why: support.reason };
}

let image: LocalGuestImage | undefined;

/** The kit image (AmdSev firmware, kernel, initrd, command line with the dm-verity root hash, verity root
 *  with this build's enclaivelet). Built by `buckypaper simulate guest-image` (a child process: a
 *  component constructor cannot wait for a promise), cached under ~/.cache/buckypaper, so every VM of a
 *  program shares one. */
export function localGuestImage(who: string): { image: LocalGuestImage; log: string } {
  if (image) return { image, log: "" };
  const built = imageFromCli<LocalGuestImage>(who, "mode", PACKAGE_ROOT, "guest-image", "guest image");
  image = built.image;
  return built;
}

/**
 * An image `buckypaper simulate <command> --json` builds or finds in the cache, in a child process (a
 * component constructor cannot wait for a promise), and its progress lines. Failing: a ConfigError on `field`.
 */
export function imageFromCli<T>(
  who: string,
  field: string,
  packageRoot: string,
  command: string,
  what: string,
): { image: T; log: string } {
  const r = spawnSync(
    process.execPath,
    [path.join(packageRoot, "bin", "buckypaper.js"), "simulate", command, "--json"],
    {
      encoding: "utf8",
      maxBuffer: 16 * 2 ** 20,
    },
  );
  if (r.status !== 0)
    throw new ConfigError(
      who,
      field,
      `the ${what} could not be built: ${(r.stderr || r.error?.message || "").slice(-2000)}`,
    );
  return { image: JSON.parse(r.stdout.trim().split("\n").pop()!) as T, log: r.stderr.trim() };
}

export interface RealGuestArgvInputs {
  name: string;
  vcpus: number;
  memoryMb: number;
  cpuModel: string;
  firmware: string;
  kernel: string;
  initrd: string;
  append: string;
  stateDir: string;
  runtimePort: number;
  sshPort?: number;
  dataDisk: boolean;
}

/** The guest's QEMU command line: its disks in stateDir, user-mode network restricted to the runtime forward. */
export function realGuestArgv(i: RealGuestArgvInputs): string[] {
  return qemuGuestArgv({
    name: i.name,
    tee: Tee.SevSnp,
    sevObject: false,
    vcpus: i.vcpus,
    memoryMb: i.memoryMb,
    cpuModel: i.cpuModel,
    firmwarePath: i.firmware,
    kernelPath: i.kernel,
    initrdPath: i.initrd,
    append: i.append,
    diskPath: path.join(i.stateDir, "root.qcow2"),
    seedIsoPath: path.join(i.stateDir, "seed.iso"),
    ...(i.dataDisk ? { dataDiskPath: path.join(i.stateDir, "data.qcow2") } : {}),
    userNetOptions: guestNetOptions({ runtimePort: i.runtimePort, ...(i.sshPort ? { sshHostPort: i.sshPort } : {}) }),
  });
}

/** The runtime URL as the guest reaches it (the user-mode network's forward to the host's loopback). */
export function guestRuntimeUrl(runtimeUrl: string): string {
  const u = new URL(runtimeUrl);
  return `${u.protocol}//${GUEST_RUNTIME_ADDR}:${u.port || (u.protocol === "https:" ? 443 : 80)}`;
}
