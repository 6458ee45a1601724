// What the local stack's real guests need from this machine, and the image they boot. One place decides
// "can this machine run real guests?" (the stack falls back to process-tree VMs with the printed
// reason when not) and one place builds the boot files, so the components never see how.
// The image is the kit's own (images/guest, `buckypaper image build`): kernel, initramfs, a squashfs
// root under dm-verity whose root hash is on the measured command line, booted by OVMF's AmdSev build
// (scripts/build-firmware.sh), whose kernel-hashes table puts kernel, initrd and command line — and so
// the root filesystem — into the launch digest. The same files test/runtime/sim/qemu-guest.test.ts boots.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  buildImage,
  installedTreeCached,
  recipeDigest,
  writeImageManifest,
  DEFAULT_SOURCE_DATE_EPOCH,
} from "../../../images/guest/build.js";
import type { ImageManifest } from "../../../images/guest/manifest.js";
import { bootFiles, hashImportClosure, memoizedImage, type GuestBootImage } from "./boot-image.js";
import { defaultCacheDir, type Progress } from "./cache.js";

function have(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { stdio: "ignore" });
  return r.error === undefined && r.status !== null && r.status !== 127;
}

export interface RealGuestSupport {
  ok: boolean;
  /** Why not (every missing piece), empty when ok. */
  reason: string;
}

/** The package root holding scripts/ and images/guest/packages.lock (dist/runtime/sim/qemu or runtime/sim/qemu). */
function defaultPackageRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const up = path.resolve(here, "..", "..", "..");
  return path.basename(up) === "dist" ? path.dirname(up) : up;
}

const firmwareScript = (root: string) => path.join(root, "scripts", "build-firmware.sh");
const lockFile = (root: string) => path.join(root, "images", "guest", "packages.lock");

/** The AmdSev firmware scripts/build-firmware.sh built (undefined: not built yet). */
export function amdSevFirmware(packageRoot = defaultPackageRoot()): string | undefined {
  const r = spawnSync(firmwareScript(packageRoot), ["--print-path"], { encoding: "utf8" });
  const p = r.status === 0 ? r.stdout.trim() : "";
  return p && existsSync(p) ? p : undefined;
}

/** Can this machine boot the local stack's real guests? QEMU and the guest-side tools, root, the AmdSev
 *  firmware (built, or what its build needs) and what the kit image's build needs (a cached installed
 *  tree spares mmdebstrap; squashfs and dm-verity are made anew whenever the agent changes). */
export function realGuestSupport(packageRoot = defaultPackageRoot()): RealGuestSupport {
  const missing: string[] = [];
  if (!have("qemu-system-x86_64", ["--version"])) missing.push("qemu-system-x86_64 (apt-get install qemu-system-x86)");
  if (!have("qemu-img", ["--version"])) missing.push("qemu-img (apt-get install qemu-utils)");
  if (!have("genisoimage", ["--version"])) missing.push("genisoimage (the NoCloud seed)");
  if (!have("socat", ["-V"])) missing.push("socat (the guest's forward to the runtime)");
  if (!have("mksquashfs", ["-version"])) missing.push("mksquashfs (apt-get install squashfs-tools; the image's root)");
  if (!have("veritysetup", ["--version"])) missing.push("veritysetup (apt-get install cryptsetup-bin; dm-verity)");
  let lockText: string | undefined;
  try {
    lockText = readFileSync(lockFile(packageRoot), "utf8");
  } catch {
    missing.push(`${lockFile(packageRoot)} (the image's package lock)`);
  }
  let treeCached = false;
  try {
    treeCached = lockText !== undefined && installedTreeCached(defaultCacheDir(), lockText, DEFAULT_SOURCE_DATE_EPOCH);
  } catch {
    // an unreadable lock is reported by the build itself
  }
  if (!treeCached && !have("mmdebstrap", ["--version"]))
    missing.push("mmdebstrap (installs the image's locked Debian packages once)");
  if (!amdSevFirmware(packageRoot)) {
    const r = spawnSync(firmwareScript(packageRoot), ["--needs"], { encoding: "utf8" });
    if (r.error) missing.push(`${firmwareScript(packageRoot)} (builds the AmdSev firmware): ${r.error.message}`);
    else
      for (const l of r.stdout.trim().split("\n").filter(Boolean))
        missing.push(`for the AmdSev firmware build (scripts/build-firmware.sh): ${l}`);
  }
  if (process.getuid?.() !== 0) missing.push("root (the image build runs mmdebstrap, chroot and veritysetup)");
  return { ok: missing.length === 0, reason: missing.length ? `missing: ${missing.join("; ")}` : "" };
}

export interface LocalGuestImage extends GuestBootImage {
  /** dm-verity geometry of rootImage (where its data blocks are). */
  verity: { rootHash: string; dataBlocks: number; dataBlockSize: number };
  /** SHA-256 of the enclaivelet artifact inside. */
  agentSha256: string;
}

/** Runs scripts/build-firmware.sh, passing its progress lines on. */
function buildFirmware(packageRoot: string, progress?: Progress): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(firmwareScript(packageRoot), [], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d: Buffer) => {
      err += d;
      for (const l of d.toString().split("\n")) if (l.trim()) progress?.(l.trim());
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      const p = out.trim().split("\n").pop() ?? "";
      if (code === 0 && existsSync(p)) resolve(p);
      else reject(new Error(`scripts/build-firmware.sh failed (${code}): ${err.slice(-2000)}`));
    });
  });
}

/** The AmdSev firmware, built first (once, cached) when it is not yet. */
async function ensureAmdSevFirmware(packageRoot: string, progress?: Progress): Promise<string> {
  const found = amdSevFirmware(packageRoot);
  if (found) return found;
  progress?.("firmware: building OVMF's AmdSev variant from Debian's edk2 source (once, cached; 15-40 min)…");
  return buildFirmware(packageRoot, progress);
}

function fromManifest(dir: string, m: ImageManifest, firmware: string, agentSha256: string): LocalGuestImage {
  return {
    firmware,
    ...bootFiles(dir, m),
    manifestPath: path.join(dir, "manifest.json"),
    verity: { rootHash: m.verity.rootHash, dataBlocks: m.verity.dataBlocks, dataBlockSize: m.verity.dataBlockSize },
    agentSha256,
  };
}

/** Builds (first time: minutes, with progress) or finds the kit image and its firmware. `packageRoot` holds dist/. */
export async function ensureLocalGuestImage(o: { packageRoot: string; progress?: Progress }): Promise<LocalGuestImage> {
  const cacheDir = defaultCacheDir();
  const firmware = await ensureAmdSevFirmware(o.packageRoot, o.progress);
  // buildImage packs the agent (Node binary included) before it can look its cache up: most of a minute
  // on a busy machine. Remember which image a given set of inputs gave, keyed by everything the image
  // is made of that can change here: the agent's sources, the package lock and the recipe.
  const key = await imageInputsKey(o.packageRoot);
  const memo = path.join(cacheDir, "images", `local-${key}.json`);
  return memoizedImage<{ dir: string; agentSha256: string }, LocalGuestImage>(
    memo,
    async (m) => fromManifest(m.dir, await writeImageManifest(m.dir, firmware), firmware, m.agentSha256),
    async () => {
      const img = await buildImage({
        repoRoot: o.packageRoot,
        lockPath: lockFile(o.packageRoot),
        cacheDir,
        firmware,
        ...(o.progress ? { progress: o.progress } : {}),
      });
      const agentSha256 = img.manifest.enclaivelet?.sha256;
      if (!agentSha256) throw new Error(`${img.manifestPath} names no enclaivelet: not a workload image`);
      return { image: fromManifest(img.dir, img.manifest, firmware, agentSha256), memo: { dir: img.dir, agentSha256 } };
    },
  );
}

/** SHA-256 over the agent's compiled import closure, its packages' manifests, the npm lock file, the
 *  image's package lock and the image recipe. */
async function imageInputsKey(packageRoot: string): Promise<string> {
  const entry = path.join(packageRoot, "dist/runtime/guest/main.js");
  const h = createHash("sha256");
  await hashImportClosure(h, packageRoot, entry);
  // The lock file pins the versions of the dependencies the artifact carries (direct and nested).
  const lock = path.join(packageRoot, "package-lock.json");
  h.update(existsSync(lock) ? readFileSync(lock) : "");
  // How the artifact is laid out (its boot unit included): not in the agent's own import closure.
  for (const f of ["artifact.js", "boot-unit.js"]) h.update(f).update(readFileSync(path.join(entry, "..", f)));
  // The image's package lock pins the Debian packages and the Node runtime the artifact carries.
  h.update(readFileSync(lockFile(packageRoot)));
  h.update(await recipeDigest(packageRoot, "workload"));
  return h.digest("hex").slice(0, 16);
}
