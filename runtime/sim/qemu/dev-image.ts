// A plain Debian guest for the local stack's real QEMU guests, until the kit's reproducible image
// (images/guest/, `buckypaper image build`) replaces it: mmdebstrap from Debian's registry, cached
// under ~/.cache/buckypaper/dev-guest/<inputs hash>/. It has the guest kernel (dm-crypt, virtio),
// cloud-init (NoCloud), sshd and cryptsetup; the enclaivelet artifact (Node + agent) is laid into the
// root filesystem image per artifact hash, so a changed agent costs one mkfs, not a rebuild.
// Not measured beyond firmware (Debian's OVMF has no kernel-hashes table) and not verity-protected:
// the root filesystem is NOT bound by this image — that is the kit image's job.
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import { symlinkSync } from "node:fs";
import { MEASURED_UNIT_NAME, renderMeasuredUnit } from "../../guest/boot-unit.js";
import {
  RUNTIME_DATA_SCRIPT,
  RUNTIME_GUEST_CONFIG,
  RUNTIME_GUEST_DATA_DEVICE,
  RUNTIME_GUEST_PORT,
  RUNTIME_UNIT,
  RUNTIME_UNIT_NAME,
} from "../../../images/guest/runtime-role.js";

export const DEV_GUEST_SUITE = "bookworm";
export const DEV_GUEST_PACKAGES = [
  "linux-image-amd64",
  "initramfs-tools",
  "systemd-sysv",
  "udev",
  "cloud-init",
  "openssh-server",
  "cryptsetup-bin",
  "e2fsprogs",
  "kmod",
  "ca-certificates",
  "iproute2",
  "netbase",
];
/** Kernel command line of the dev guest: root on the first virtio disk (the boot disk). */
export const DEV_GUEST_APPEND = "console=ttyS0 root=LABEL=bkroot rw quiet";

// Bump when the customisation below changes: it is part of the cache key.
const RECIPE_VERSION = 1;

const CUSTOMISE = [
  // DHCP on the user-mode NIC; cloud-init's own network rendering is off (one NIC, nothing to render).
  `mkdir -p "$1/etc/systemd/network" && printf '[Match]\\nName=en* eth*\\n\\n[Network]\\nDHCP=ipv4\\n' > "$1/etc/systemd/network/10-dhcp.network"`,
  `chroot "$1" systemctl enable systemd-networkd.service`,
  `printf 'datasource_list: [ NoCloud, None ]\\nnetwork: {config: disabled}\\n' > "$1/etc/cloud/cloud.cfg.d/90-buckypaper.cfg"`,
  `printf 'LABEL=bkroot / ext4 defaults 0 1\\n' > "$1/etc/fstab"`,
  // Host keys are made per instance (cloud-init ssh_genkeytypes), never baked into the image.
  `rm -f "$1"/etc/ssh/ssh_host_* && : > "$1/etc/machine-id"`,
  `rm -rf "$1/var/cache/apt/archives"/*.deb "$1/var/lib/apt/lists"/*`,
];

export interface DevGuest {
  dir: string;
  kernel: string;
  initrd: string;
  /** The customised root tree (root-owned), from which root filesystem images are made. */
  rootDir: string;
  append: string;
}

export type Progress = (line: string) => void;

export function defaultCacheDir(): string {
  return process.env.BUCKYPAPER_CACHE ?? path.join(os.homedir(), ".cache", "buckypaper");
}

function run(argv: string[], progress?: Progress, env?: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
    let tail = "";
    const take = (d: Buffer) => {
      const t = d.toString("utf8");
      tail = (tail + t).slice(-4000);
      for (const l of t.split("\n")) if (/^I: /.test(l)) progress?.(`  ${argv[0]}: ${l.slice(3)}`);
    };
    p.stdout.on("data", take);
    p.stderr.on("data", take);
    p.on("error", reject);
    p.on("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`${argv.join(" ").slice(0, 200)} exited ${code}: ${tail}`)),
    );
  });
}

/** The cache directory of the dev guest: keyed by everything that goes into it. */
export function devGuestDir(cacheDir = defaultCacheDir()): string {
  const key = createHash("sha256")
    .update(JSON.stringify({ suite: DEV_GUEST_SUITE, packages: DEV_GUEST_PACKAGES, CUSTOMISE, RECIPE_VERSION }))
    .digest("hex")
    .slice(0, 16);
  return path.join(cacheDir, "dev-guest", key);
}

/** Builds (or finds in the cache) the dev guest's kernel, initrd and root tree. */
export async function ensureDevGuest(o: { cacheDir?: string; progress?: Progress } = {}): Promise<DevGuest> {
  const dir = devGuestDir(o.cacheDir);
  const out: DevGuest = {
    dir,
    kernel: path.join(dir, "vmlinuz"),
    initrd: path.join(dir, "initrd.img"),
    rootDir: path.join(dir, "root"),
    append: DEV_GUEST_APPEND,
  };
  if (existsSync(path.join(dir, "done"))) {
    o.progress?.(`dev guest: cached (${dir})`);
    return out;
  }
  if (process.getuid?.() !== 0) throw new Error("building the dev guest needs root (mmdebstrap --mode=root)");
  mkdirSync(dir, { recursive: true });
  const tmpRoot = path.join(dir, "root.tmp");
  rmSync(tmpRoot, { recursive: true, force: true });
  o.progress?.(`dev guest: building Debian ${DEV_GUEST_SUITE} with mmdebstrap (a few minutes, once)…`);
  const t0 = Date.now();
  await run(
    [
      "mmdebstrap",
      "--variant=apt",
      "--mode=root",
      `--include=${DEV_GUEST_PACKAGES.join(",")}`,
      "--dpkgopt=path-exclude=/usr/share/doc/*",
      "--dpkgopt=path-exclude=/usr/share/man/*",
      "--dpkgopt=path-exclude=/usr/share/locale/*",
      ...CUSTOMISE.map((c) => `--customize-hook=${c}`),
      DEV_GUEST_SUITE,
      tmpRoot,
      "http://deb.debian.org/debian",
    ],
    o.progress,
  );
  const boot = path.join(tmpRoot, "boot");
  const kernel = readdirSync(boot).find((f) => f.startsWith("vmlinuz-"));
  const initrd = readdirSync(boot).find((f) => f.startsWith("initrd.img-"));
  if (!kernel || !initrd) throw new Error(`mmdebstrap produced no kernel/initrd in ${boot}`);
  copyFileSync(path.join(boot, kernel), out.kernel);
  copyFileSync(path.join(boot, initrd), out.initrd);
  rmSync(out.rootDir, { recursive: true, force: true });
  renameSync(tmpRoot, out.rootDir);
  writeFileSync(path.join(dir, "done"), `${new Date().toISOString()} ${Math.round((Date.now() - t0) / 1000)} s\n`);
  o.progress?.(`dev guest: built in ${Math.round((Date.now() - t0) / 1000)} s`);
  return out;
}

/** The root filesystem image (ext4, label bkroot) of the dev guest with this enclaivelet artifact
 *  installed at /opt/buckypaper/enclaivelet; cached per artifact hash. */
export async function devRootImage(
  g: DevGuest,
  artifact: { file: string; sha256: string },
  progress?: Progress,
): Promise<string> {
  // The image runs the agent before cloud-init (boot-unit.ts), reading the NoCloud seed itself.
  const unit = renderMeasuredUnit("nocloud");
  const key = createHash("sha256").update(artifact.sha256).update(unit).digest("hex").slice(0, 16);
  const img = path.join(g.dir, `rootfs-${key}.img`);
  if (existsSync(img)) return img;
  progress?.("dev guest: root filesystem with this enclaivelet…");
  return buildRootImage(g, img, `stage-${process.pid}`, artifact, /^rootfs-[0-9a-f]{16}\.img$/, (stage) => {
    writeFileSync(path.join(stage, "opt/buckypaper/.artifact-sha256"), `${artifact.sha256}\n`);
    const units = path.join(stage, "etc/systemd/system");
    writeFileSync(path.join(units, MEASURED_UNIT_NAME), unit);
    for (const by of [
      "cloud-init.service.requires",
      "cloud-config.service.requires",
      "cloud-final.service.requires",
      "multi-user.target.wants",
    ]) {
      mkdirSync(path.join(units, by), { recursive: true });
      symlinkSync(`../${MEASURED_UNIT_NAME}`, path.join(units, by, MEASURED_UNIT_NAME));
    }
  });
}

// The runtime's config, unit and data-disk script are the kit image's runtime role's (one definition).
export { RUNTIME_GUEST_DATA_DEVICE, RUNTIME_GUEST_PORT, RUNTIME_UNIT_NAME, RUNTIME_GUEST_CONFIG };

/** The dev guest's root filesystem with the vHSM runtime artifact (buildArtifact kind "runtime") at
 *  /opt/buckypaper/bk-runtime, its config and a unit that starts it; cached per artifact hash. */
export async function devRuntimeRootImage(
  g: DevGuest,
  artifact: { file: string; sha256: string },
  progress?: Progress,
): Promise<string> {
  const key = createHash("sha256")
    .update(artifact.sha256)
    .update(RUNTIME_UNIT)
    .update(RUNTIME_DATA_SCRIPT)
    .update(RUNTIME_GUEST_CONFIG)
    .digest("hex")
    .slice(0, 16);
  const img = path.join(g.dir, `rootfs-runtime-${key}.img`);
  if (existsSync(img)) return img;
  progress?.("dev guest: root filesystem with the vHSM runtime…");
  return buildRootImage(g, img, `stage-rt-${process.pid}`, artifact, /^rootfs-runtime-[0-9a-f]{16}\.img$/, (stage) => {
    writeFileSync(path.join(stage, "opt/buckypaper/.runtime-artifact-sha256"), `${artifact.sha256}\n`);
    writeFileSync(path.join(stage, "opt/buckypaper/bk-runtime-data"), RUNTIME_DATA_SCRIPT, { mode: 0o755 });
    mkdirSync(path.join(stage, "etc/buckypaper"), { recursive: true });
    writeFileSync(path.join(stage, "etc/buckypaper/runtime.hcl"), RUNTIME_GUEST_CONFIG, { mode: 0o644 });
    const units = path.join(stage, "etc/systemd/system");
    writeFileSync(path.join(units, RUNTIME_UNIT_NAME), RUNTIME_UNIT);
    mkdirSync(path.join(units, "multi-user.target.wants"), { recursive: true });
    symlinkSync(`../${RUNTIME_UNIT_NAME}`, path.join(units, "multi-user.target.wants", RUNTIME_UNIT_NAME));
  });
}

/** The dev guest's root filesystem with `artifact` unpacked in /opt/buckypaper and what `addFiles` writes
 *  into the staged tree, as an ext4 image at `img` (written aside, then renamed: a cut build leaves no
 *  half image). Other images matching `olderImages` in the guest's directory are removed. */
async function buildRootImage(
  g: DevGuest,
  img: string,
  stageName: string,
  artifact: { file: string; sha256: string },
  olderImages: RegExp,
  addFiles: (stage: string) => void,
): Promise<string> {
  const stage = path.join(g.dir, stageName);
  rmSync(stage, { recursive: true, force: true });
  try {
    await run(["cp", "-a", "--reflink=auto", g.rootDir, stage]);
    mkdirSync(path.join(stage, "opt/buckypaper"), { recursive: true });
    await run(["tar", "-xzf", artifact.file, "-C", path.join(stage, "opt/buckypaper")]);
    addFiles(stage);
    const bytes = await duBytes(stage);
    const sizeMb = Math.ceil((bytes * 1.3) / 2 ** 20) + 256;
    const tmpImg = `${img}.tmp`;
    rmSync(tmpImg, { force: true });
    await run(["mkfs.ext4", "-q", "-F", "-L", "bkroot", "-d", stage, tmpImg, `${sizeMb}M`], undefined, {
      E2FSPROGS_FAKE_TIME: "1700000000",
    });
    renameSync(tmpImg, img);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
  for (const f of readdirSync(g.dir))
    if (olderImages.test(f) && path.join(g.dir, f) !== img) rmSync(path.join(g.dir, f), { force: true });
  return img;
}

async function duBytes(dir: string): Promise<number> {
  let total = 0;
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) total += statSync(p).size + 4096;
      else total += 4096;
    }
  };
  walk(dir);
  return total;
}
