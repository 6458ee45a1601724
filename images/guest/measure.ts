// The expected SNP launch digest of a built image, from its manifest alone: firmware, kernel, initrd and
// the command line (which carries the dm-verity root hash, so the root filesystem is covered too).
// Each file is checked against the manifest's SHA-256 first; the rootfs itself is not read — its root
// hash on the measured command line is what binds it.
import { readFileSync } from "node:fs";
import { snpLaunchDigestTable, type VcpuSpec, type VmmType } from "../snp/index.js";
import { ManifestError, parseManifest, readManifestFile, type ImageManifest } from "./manifest.js";

export interface ManifestMeasureOptions {
  vcpus: number[];
  vcpu?: VcpuSpec;
  vmm?: VmmType;
  guestFeatures?: bigint;
}

export function loadManifest(manifestPath: string): ImageManifest {
  let text: string;
  try {
    text = readFileSync(manifestPath, "utf8");
  } catch (e) {
    throw new ManifestError(
      "manifest",
      `${manifestPath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  return parseManifest(text, manifestPath);
}

export function snpDigestsFromManifest(manifestPath: string, o: ManifestMeasureOptions): Map<number, Buffer> {
  const m = loadManifest(manifestPath);
  if (!m.files.firmware)
    throw new ManifestError(
      "files.firmware",
      "the manifest names no firmware (build with --firmware or scripts/build-firmware.sh)",
    );
  if (!m.firmware?.measuredDirectBoot)
    throw new ManifestError(
      "firmware",
      "the image's firmware has no SNP kernel-hashes table, so the digest would not cover kernel, initrd, cmdline or root filesystem",
    );
  return snpLaunchDigestTable(
    {
      ovmf: readManifestFile(manifestPath, m, "firmware"),
      kernel: readManifestFile(manifestPath, m, "kernel"),
      initrd: readManifestFile(manifestPath, m, "initrd"),
      append: m.cmdline,
      vcpu: o.vcpu,
      vmm: o.vmm,
      guestFeatures: o.guestFeatures,
    },
    o.vcpus,
  );
}
