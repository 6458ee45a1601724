// A runtime-role image manifest on disk, as `buckypaper image build --role runtime [--runtime-psp …]` writes it,
// for component tests of the Vhsm's hardware platforms: the firmware is the real AmdSev OVMF (its SNP
// kernel-hashes table makes kernel, initrd and command line part of the digest), kernel and initrd are
// deterministic stand-ins (the launch digest only hashes them), the command line carries the verity root hash.
import { copyFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import path from "node:path";
import { writeTestManifest } from "./kit-manifest.js";

export function writeRuntimeManifest(o: {
  firmware: string;
  psp?: "virtio-psp" | "sev-guest";
  role?: "runtime" | "workload";
  /** A runtime cloud disk's manifest fields (`--cloud ec2|gce`), to check the hardware path refuses it. */
  cloud?: "ec2" | "gce";
}): { manifest: string; dir: string } {
  const dir = mkdtempSync(path.join(tmpdir(), "bp-runtime-manifest-"));
  writeFileSync(path.join(dir, "vmlinuz"), createHash("sha512").update("kernel").digest().toString("hex").repeat(700));
  writeFileSync(path.join(dir, "initrd.img"), Buffer.alloc(23456, 9));
  writeFileSync(path.join(dir, "rootfs.img"), Buffer.alloc(8192, 3));
  copyFileSync(o.firmware, path.join(dir, "OVMF.fd"));
  const manifest = writeTestManifest(dir, {
    rootHash: "7a".repeat(32),
    rootDevice: "/dev/vda",
    role:
      (o.role ?? "runtime") === "runtime"
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
              ...(o.cloud ? { cloud: o.cloud, unseal: "shares" as const } : {}),
            },
          }
        : {
            enclaivelet: {
              sha256: "ef".repeat(32),
              path: "/opt/buckypaper/enclaivelet/bin/enclaivelet",
              node: "node@22",
            },
          },
    firmware: { measuredDirectBoot: true, description: "AmdSev" },
  });
  return { manifest, dir };
}
