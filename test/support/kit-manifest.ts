// A kit image manifest on disk, as `buckypaper image build [--cloud …]` writes it, for component tests of
// bootChain.manifest: the kernel is a real PE file (Debian's systemd-stub: the boot prediction takes its
// Authenticode digest; without systemd-boot-efi, random bytes that only the source check before the
// prediction may read), the initrd some bytes, the command line carries the verity root hash.
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createHash, randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import path from "node:path";
import { MANIFEST_SCHEMA, kernelCmdline, type ImageManifest } from "../../images/guest/manifest.js";
import { SYSTEMD_STUB } from "./uki.js";

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** Writes kernel, initrd, rootfs and manifest.json into a new temp dir; returns the manifest's path. */
export function writeKitManifest(userDataSource: string | undefined): { manifest: string; kernel: Buffer } {
  const dir = mkdtempSync(path.join(tmpdir(), "bp-kit-manifest-"));
  if (existsSync(SYSTEMD_STUB)) copyFileSync(SYSTEMD_STUB, path.join(dir, "vmlinuz"));
  else writeFileSync(path.join(dir, "vmlinuz"), randomBytes(4096));
  writeFileSync(path.join(dir, "initrd.img"), randomBytes(4096));
  writeFileSync(path.join(dir, "rootfs.img"), randomBytes(4096));
  const manifest = writeTestManifest(dir, {
    rootHash: "5e".repeat(32),
    rootDevice: "/dev/nvme0n1",
    role: {
      enclaivelet: {
        sha256: "ef".repeat(32),
        path: "/opt/buckypaper/enclaivelet/bin/enclaivelet",
        node: "node@22",
        unit: "enclaivelet-measured.service",
        ...(userDataSource !== undefined ? { userDataSource } : {}),
      },
    },
    firmware: null,
  });
  return { manifest, kernel: readFileSync(path.join(dir, "vmlinuz")) };
}

/**
 * manifest.json for the image files already in `dir` (vmlinuz, initrd.img, rootfs.img, and OVMF.fd when the
 * image names its firmware), as `buckypaper image build` writes it: their digests, a verity geometry with
 * `rootHash`, the command line for `rootDevice`, the role's fields. Returns the manifest's path.
 */
export function writeTestManifest(
  dir: string,
  o: {
    rootHash: string;
    rootDevice: string;
    role: Pick<ImageManifest, "role" | "runtime" | "enclaivelet">;
    firmware: ImageManifest["firmware"];
  },
): string {
  const entry = (p: string) => {
    const b = readFileSync(path.join(dir, p));
    return { path: p, sha256: sha(b), size: b.length };
  };
  const verity = {
    rootHash: o.rootHash,
    salt: "00".repeat(32),
    uuid: "00000000-0000-0000-0000-000000000000",
    hashAlgorithm: "sha256" as const,
    dataBlockSize: 4096 as const,
    hashBlockSize: 4096 as const,
    dataBlocks: 1,
    hashOffset: 4096,
  };
  const m: ImageManifest = {
    schema: MANIFEST_SCHEMA,
    inputHash: "ab".repeat(32),
    suite: "bookworm",
    kernelVersion: "6.1.0-test-amd64",
    sourceDateEpoch: 0,
    files: {
      kernel: entry("vmlinuz"),
      initrd: entry("initrd.img"),
      rootfs: entry("rootfs.img"),
      ...(o.firmware ? { firmware: entry("OVMF.fd") } : {}),
    },
    verity,
    cmdline: kernelCmdline(o.rootDevice, verity),
    rootDevice: o.rootDevice,
    packageLock: { sha256: "cd".repeat(32), packages: 1 },
    ...o.role,
    firmware: o.firmware,
  };
  const file = path.join(dir, "manifest.json");
  writeFileSync(file, JSON.stringify(m, null, 2) + "\n");
  return file;
}
