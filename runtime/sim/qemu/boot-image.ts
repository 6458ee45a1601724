// What the two images real guests boot have in common — the local stack's workload image (local-image.ts)
// and the vHSM runtime's (runtime-image.ts), both the kit's verity image booted by the AmdSev firmware: the
// boot files every QEMU command line names, and how a build is remembered. buildImage must pack the
// artifact (Node binary included: most of a minute on a busy machine) before it can look its own cache up,
// so each image keeps a memo from a digest of its inputs to the image that digest gave.
import type { Hash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { ImageManifest } from "../../../images/guest/manifest.js";
import { importClosure } from "../../guest/artifact.js";

/** The files QEMU boots a guest of the kit image from (-bios, -kernel, -initrd, -append, the root disk). */
export interface GuestBootImage {
  /** The AmdSev OVMF (kernel-hashes table: kernel, initrd and command line are measured). */
  firmware: string;
  kernel: string;
  initrd: string;
  /** The kernel command line the image boots with (carries the dm-verity root hash): measured. */
  append: string;
  /** The verity-protected squashfs root (first virtio disk); guests boot copy-on-write overlays of it. */
  rootImage: string;
  /** The image's manifest.json (naming this firmware): `buckypaper measure snp --manifest` recomputes the digest. */
  manifestPath: string;
}

/** Kernel, initrd, command line and root disk of the image in `dir`, as its manifest names them. */
export function bootFiles(
  dir: string,
  m: ImageManifest,
): Pick<GuestBootImage, "kernel" | "initrd" | "append" | "rootImage"> {
  return {
    kernel: path.join(dir, m.files.kernel.path),
    initrd: path.join(dir, m.files.initrd.path),
    append: m.cmdline,
    rootImage: path.join(dir, m.files.rootfs.path),
  };
}

/** Adds the compiled import closure of `entry` (files, then its packages' manifests) to an image's inputs digest. */
export async function hashImportClosure(h: Hash, packageRoot: string, entry: string): Promise<void> {
  if (!existsSync(entry)) throw new Error(`${entry} is missing: build first (npm run build)`);
  const { files, packages } = await importClosure(entry);
  for (const f of files) h.update(f.slice(packageRoot.length)).update(readFileSync(f));
  for (const p of packages) {
    const manifest = path.join(packageRoot, "node_modules", p, "package.json");
    h.update(p).update(existsSync(manifest) ? readFileSync(manifest) : "");
  }
}

/**
 * The image the memo file names, when `reuse` still finds it whole (undefined or a throw: build it), else
 * the one `build` makes, whose record is then written to the memo.
 */
export async function memoizedImage<Memo, Image>(
  memo: string,
  reuse: (m: Memo) => Promise<Image | undefined>,
  build: () => Promise<{ image: Image; memo: Memo }>,
): Promise<Image> {
  try {
    const img = await reuse(JSON.parse(readFileSync(memo, "utf8")) as Memo);
    if (img) return img;
  } catch {
    // not built yet (or the cached image was removed): build
  }
  const built = await build();
  mkdirSync(path.dirname(memo), { recursive: true });
  writeFileSync(memo, `${JSON.stringify(built.memo)}\n`);
  return built.image;
}
