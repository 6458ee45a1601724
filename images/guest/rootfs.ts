// The root filesystem: mmdebstrap installs the locked Debian packages into a directory, the kit adds the
// enclaivelet, and state that must differ per machine (SSH host keys, machine-id) or that records the
// build (logs, caches) is removed, so the tree depends only on the lock and the artifact.
import { existsSync } from "node:fs";
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { run } from "./exec.js";
import { DEBIAN_SOURCES, IMAGE_PACKAGES, SUITE, type PackageLock } from "./lock.js";

/** Documentation and translations are not needed to boot and only add bytes. */
/** Kernel modules for hardware a VM never has (graphics, sound, radios, media) are left out for size. */
const DPKG_EXCLUDES = [
  "/usr/share/doc/*",
  "/usr/share/man/*",
  "/usr/share/info/*",
  "/usr/share/locale/*",
  ...[
    "drivers/gpu",
    "drivers/media",
    "drivers/net/wireless",
    "drivers/infiniband",
    "drivers/staging",
    "drivers/bluetooth",
    "drivers/iio",
    "drivers/isdn",
    "drivers/input/touchscreen",
    "sound",
    "net/bluetooth",
    "net/wireless",
    "net/mac80211",
  ].map((d) => `/lib/modules/*/kernel/${d}/*`),
];

export interface RootfsOptions {
  dest: string;
  /** Locked versions; absent = the archive's current versions (--update-lock). */
  lock?: PackageLock;
  sourceDateEpoch: number;
  onLine?: (line: string) => void;
}

/** The mmdebstrap command line (minus the target directory): with the lock, it is what the base tree depends on. */
export function debootstrapArgv(lock: PackageLock | undefined): string[] {
  const include = lock ? [...lock.debs].map(([n, v]) => `${n}=${v}`) : [...IMAGE_PACKAGES];
  return [
    "mmdebstrap",
    "--mode=root",
    "--variant=apt",
    "--format=directory",
    `--include=${include.join(",")}`,
    ...DPKG_EXCLUDES.map((p) => `--dpkgopt=path-exclude=${p}`),
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    SUITE,
  ];
}

export async function debootstrap(o: RootfsOptions): Promise<void> {
  await rm(o.dest, { recursive: true, force: true });
  await run([...debootstrapArgv(o.lock), o.dest, ...DEBIAN_SOURCES], {
    env: { ...process.env, SOURCE_DATE_EPOCH: String(o.sourceDateEpoch), DEBIAN_FRONTEND: "noninteractive" },
    onLine: o.onLine,
  });
}

/** name → version of every package installed in the tree. */
export async function installedPackages(root: string): Promise<Map<string, string>> {
  const out = await run(["chroot", root, "dpkg-query", "-W", "-f", "${Package} ${Version}\\n"]);
  const m = new Map<string, string>();
  for (const line of out.split("\n")) {
    const [n, v] = line.trim().split(" ");
    if (n && v) m.set(n, v);
  }
  return m;
}

/** Fails unless the tree holds exactly the locked packages at the locked versions. */
export function checkAgainstLock(installed: Map<string, string>, lock: PackageLock): void {
  const problems: string[] = [];
  for (const [n, v] of lock.debs)
    if (installed.get(n) !== v) problems.push(`${n}: locked ${v}, installed ${installed.get(n) ?? "nothing"}`);
  for (const [n, v] of installed) if (!lock.debs.has(n)) problems.push(`${n} ${v}: installed but not locked`);
  if (problems.length)
    throw new Error(
      `the root filesystem does not match packages.lock (the archive moved on? run 'buckypaper image build --update-lock'):\n  ${problems.slice(0, 20).join("\n  ")}`,
    );
}

async function rmGlob(dir: string, pred: (name: string) => boolean): Promise<void> {
  if (!existsSync(dir)) return;
  for (const n of await readdir(dir)) if (pred(n)) await rm(path.join(dir, n), { recursive: true, force: true });
}

/** Removes per-machine and per-build state, installs the enclaivelet artifact, fixes host-derived files. */
export async function finishTree(root: string, enclaiveletTarGz: string): Promise<void> {
  // Per-machine: cloud-init generates host keys on first boot; systemd a machine-id.
  await rmGlob(path.join(root, "etc/ssh"), (n) => n.startsWith("ssh_host_"));
  await writeFile(path.join(root, "etc/machine-id"), "");
  await rm(path.join(root, "var/lib/dbus/machine-id"), { force: true });
  await rm(path.join(root, "var/lib/systemd/random-seed"), { force: true });
  // The initramfs-tools image the kernel package made is neither used (the kit builds its own) nor reproducible.
  await rmGlob(path.join(root, "boot"), (n) => n.startsWith("initrd.img"));
  // Build records.
  for (const d of ["var/log", "var/cache/apt", "var/lib/apt/lists", "tmp", "var/tmp"])
    await rmGlob(path.join(root, d), () => true);
  await rm(path.join(root, "var/cache/ldconfig/aux-cache"), { force: true });
  await rmGlob(path.join(root, "var/lib/dpkg"), (n) => n.endsWith("-old"));
  await rmGlob(path.join(root, "var/cache/debconf"), (n) => n.endsWith("-old"));
  await rmGlob(
    path.join(root, "etc"),
    (n) => n.endsWith("-") && ["passwd-", "group-", "shadow-", "gshadow-", "subuid-", "subgid-"].includes(n),
  );
  // Host files mmdebstrap copied in.
  await writeFile(path.join(root, "etc/hostname"), "localhost\n");
  await rm(path.join(root, "etc/resolv.conf"), { force: true });
  await writeFile(path.join(root, "etc/resolv.conf"), "");
  await writeFile(
    path.join(root, "etc/fstab"),
    "# the root is a dm-verity squashfs under a tmpfs overlay (buckypaper initramfs)\n",
  );
  // The agent, where user-data's `preinstalled` delivery expects it.
  const dir = path.join(root, "opt/buckypaper");
  await mkdir(dir, { recursive: true });
  await run(["tar", "--no-same-owner", "-xzf", enclaiveletTarGz, "-C", dir]);
  await run(["chown", "-R", "0:0", dir]);
}
