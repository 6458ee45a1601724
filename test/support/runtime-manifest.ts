// A runtime-role image manifest on disk, as `buckypaper image build --role runtime [--runtime-psp …]` writes it,
// for component tests of the Vhsm's hardware platforms: the firmware is the real AmdSev OVMF (its SNP
// kernel-hashes table makes kernel, initrd and command line part of the digest), kernel and initrd are
// deterministic stand-ins (the launch digest only hashes them), the command line carries the verity root hash.
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import path from "node:path";
import { MANIFEST_SCHEMA, kernelCmdline, type ImageManifest } from "../../images/guest/manifest.js";

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

export function writeRuntimeManifest(o: {
  firmware: string;
  psp?: "virtio-psp" | "sev-guest";
  role?: "runtime" | "workload";
}): { manifest: string; dir: string } {
  const dir = mkdtempSync(path.join(tmpdir(), "bp-runtime-manifest-"));
  writeFileSync(path.join(dir, "vmlinuz"), createHash("sha512").update("kernel").digest().toString("hex").repeat(700));
  writeFileSync(path.join(dir, "initrd.img"), Buffer.alloc(23456, 9));
  writeFileSync(path.join(dir, "rootfs.img"), Buffer.alloc(8192, 3));
  copyFileSync(o.firmware, path.join(dir, "OVMF.fd"));
  const entry = (p: string) => {
    const b = readFileSync(path.join(dir, p));
    return { path: p, sha256: sha(b), size: b.length };
  };
  const verity = {
    rootHash: "7a".repeat(32),
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
      firmware: entry("OVMF.fd"),
    },
    verity,
    cmdline: kernelCmdline("/dev/vda", verity),
    rootDevice: "/dev/vda",
    packageLock: { sha256: "cd".repeat(32), packages: 1 },
    ...((o.role ?? "runtime") === "runtime"
      ? {
          role: "runtime" as const,
          runtime: {
            sha256: "ef".repeat(32),
            path: "/opt/buckypaper/bk-runtime/bin/bk-runtime",
            node: "node@22",
            unit: "bk-runtime.service",
            config: "/etc/buckypaper/runtime.hcl",
            masked: ["cloud-init.service"],
            ...(o.psp ? { psp: o.psp } : {}),
          },
        }
      : {
          enclaivelet: {
            sha256: "ef".repeat(32),
            path: "/opt/buckypaper/enclaivelet/bin/enclaivelet",
            node: "node@22",
          },
        }),
    firmware: { measuredDirectBoot: true, description: "AmdSev" },
  };
  writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(m, null, 2) + "\n");
  return { manifest: path.join(dir, "manifest.json"), dir };
}
