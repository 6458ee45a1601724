// The vHSM runtime's confidential VM image for real QEMU guests: the kit's verity image in its "runtime"
// role (images/guest/runtime-role.ts) booted with the AmdSev firmware, so the launch digest covers
// firmware, kernel, initrd and the command line — which carries the dm-verity root hash, and with it
// every byte of the runtime, its config and its unit. The derived key the runtime seals with
// (MEASUREMENT-bound) is then a key of this runtime build, not of "whatever root disk boots".
// The Debian installation is the kit image's cached tree: a new runtime build costs squashfs + verity.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { buildImage, loadManifest, type ImageManifest } from "../../../images/guest/index.js";
import { bootFiles, hashImportClosure, memoizedImage, type GuestBootImage } from "./boot-image.js";
import { defaultCacheDir, type Progress } from "./cache.js";
import { amdSevFirmware as builtAmdSevFirmware } from "./local-image.js";

export interface RuntimeGuestImage extends GuestBootImage {
  manifest: ImageManifest;
  /** SHA-256 of the runtime artifact inside. */
  runtimeSha256: string;
}

export interface RuntimeGuestImageOptions {
  /** The kit's root: dist/ (the compiled runtime), node_modules/, images/guest/packages.lock. */
  packageRoot: string;
  progress?: Progress;
  /** Default: scripts/build-firmware.sh --print-path under packageRoot (it must have been built). */
  firmware?: string;
  /** Default ~/.cache/buckypaper (BUCKYPAPER_CACHE). */
  cacheDir?: string;
}

/** The AmdSev firmware scripts/build-firmware.sh built (its cache path), or a clear error. */
export function amdSevFirmware(packageRoot: string): string {
  const script = path.join(packageRoot, "scripts/build-firmware.sh");
  if (!existsSync(script))
    throw new Error(
      `firmware: ${script} is missing; pass the AmdSev OVMF (with the SNP kernel-hashes table) as firmware`,
    );
  const p = builtAmdSevFirmware(packageRoot);
  if (!p)
    throw new Error(
      "firmware: the AmdSev OVMF has not been built here (run scripts/build-firmware.sh once; it is cached in ~/.cache/buckypaper/firmware)",
    );
  return p;
}

const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

/**
 * Everything the image is made of that this process can see without packing the artifact: the runtime's
 * compiled import closure and its packages' manifests, the npm lock, the package lock, the image recipe
 * (sources or compiled modules) and the firmware. Packing the runtime with its Node binary takes a minute
 * on a busy machine; this key lets a second call skip it.
 */
async function inputsKey(packageRoot: string, firmware: string): Promise<string> {
  const h = createHash("sha256");
  await hashImportClosure(h, packageRoot, path.join(packageRoot, "dist/runtime/server/http/main.js"));
  for (const f of ["package-lock.json", "images/guest/packages.lock"]) {
    const p = path.join(packageRoot, f);
    h.update(f).update(existsSync(p) ? readFileSync(p) : "");
  }
  for (const dir of ["images/guest", "dist/images/guest"]) {
    const d = path.join(packageRoot, dir);
    if (!existsSync(d)) continue;
    for (const f of readdirSync(d).sort())
      if (/\.(ts|js)$/.test(f)) h.update(`${dir}/${f}`).update(readFileSync(path.join(d, f)));
  }
  h.update(sha256(readFileSync(firmware)));
  return h.digest("hex").slice(0, 24);
}

function fromManifest(manifestPath: string): RuntimeGuestImage {
  const manifest = loadManifest(manifestPath);
  const dir = path.dirname(manifestPath);
  if (manifest.role !== "runtime" || !manifest.runtime)
    throw new Error(`${manifestPath}: not a runtime image (role ${manifest.role ?? "workload"})`);
  if ((manifest.runtime.psp ?? "virtio-psp") !== "virtio-psp")
    throw new Error(
      `${manifestPath}: the runtime reaches its PSP through ${manifest.runtime.psp}, not the local stack's virtio-serial PSP (build with --runtime-psp virtio-psp)`,
    );
  if (!manifest.files.firmware || !manifest.firmware?.measuredDirectBoot)
    throw new Error(
      `${manifestPath}: the firmware has no SNP kernel-hashes table; the launch digest would not cover the runtime`,
    );
  return {
    firmware: path.join(dir, manifest.files.firmware.path),
    ...bootFiles(dir, manifest),
    manifestPath,
    manifest,
    runtimeSha256: manifest.runtime.sha256,
  };
}

/**
 * Builds (first time: the squashfs + verity of the runtime role, minutes; a Debian install only when the
 * kit image's installed tree is not cached either) or finds the runtime guest's image. Needs root.
 */
export async function ensureRuntimeGuestImage(o: RuntimeGuestImageOptions): Promise<RuntimeGuestImage> {
  const cacheDir = o.cacheDir ?? defaultCacheDir();
  const firmware = o.firmware ?? amdSevFirmware(o.packageRoot);
  const key = await inputsKey(o.packageRoot, firmware);
  const memo = path.join(cacheDir, "images", `runtime-${key}.json`);
  const fwSha = sha256(readFileSync(firmware));
  return memoizedImage<{ manifestPath: string }, RuntimeGuestImage>(
    memo,
    async (m) => {
      const img = fromManifest(m.manifestPath);
      if (img.manifest.files.firmware?.sha256 !== fwSha || !existsSync(img.rootImage)) return undefined;
      o.progress?.(`runtime image: cached (${path.dirname(m.manifestPath)})`);
      return img;
    },
    async () => {
      const built = await buildImage({
        repoRoot: o.packageRoot,
        lockPath: path.join(o.packageRoot, "images/guest/packages.lock"),
        cacheDir,
        firmware,
        role: "runtime",
        ...(o.progress ? { progress: o.progress } : {}),
      });
      return { image: fromManifest(built.manifestPath), memo: { manifestPath: built.manifestPath } };
    },
  );
}
