// The kit's measured firmware: OVMF's AmdSev variant built from Debian's edk2 source package by
// scripts/build-firmware.sh. Checks with our own parser that it carries SEV metadata with an
// SNP_KERNEL_HASHES section and a hashes-table address, and measurement vectors for it — our launch
// digest against PyPI's sev-snp-measure — with kernel, initrd and command line at several vCPU counts,
// through the library and through `buckypaper measure snp --manifest`.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SectionType, parseOvmf, snpLaunchDigest } from "../../images/snp/index.js";
import { haveCommand, requireTool } from "../support/prereq.js";
import { repoRoot } from "../support/shared.js";

function builtFirmware(): string | undefined {
  const r = spawnSync(path.join(repoRoot, "scripts/build-firmware.sh"), ["--print-path"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : undefined;
}
const firmware = builtFirmware();
const ready =
  requireTool("the AmdSev OVMF (scripts/build-firmware.sh, run by scripts/ci-deps.sh)", firmware !== undefined) &&
  requireTool("sev-snp-measure (PyPI reference implementation)", haveCommand("sev-snp-measure", ["--version"]));

const work = mkdtempSync(path.join(tmpdir(), "bk-amdsev-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// Deterministic stand-ins for kernel and initrd: the digest only hashes the files.
const kernel = path.join(work, "vmlinuz");
const initrd = path.join(work, "initrd.img");
writeFileSync(kernel, createHash("sha512").update("kernel").digest().subarray(0, 48).toString("hex").repeat(1000));
writeFileSync(initrd, Buffer.alloc(12345, 7));
const append = "console=ttyS0 panic=-1 bk.root=/dev/vda bk.roothash=" + "ab".repeat(32) + " bk.hashoffset=4096";

function reference(vcpus: number, vcpuType: string): string {
  const r = spawnSync(
    "sev-snp-measure",
    [
      "--mode",
      "snp",
      "--vcpus",
      String(vcpus),
      "--vcpu-type",
      vcpuType,
      "--ovmf",
      firmware!,
      "--kernel",
      kernel,
      "--initrd",
      initrd,
      "--append",
      append,
      "--output-format",
      "hex",
    ],
    { encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`sev-snp-measure failed: ${r.stderr}`);
  return r.stdout.trim();
}

describe.runIf(ready)("AmdSev OVMF built from Debian's edk2 source", () => {
  it("has SEV metadata with an SNP_KERNEL_HASHES section and a hashes-table address", () => {
    const img = parseOvmf(readFileSync(firmware!));
    const types = img.sevMetadata!.map((s) => s.type);
    expect(types).toContain(SectionType.SNP_KERNEL_HASHES);
    expect(types).toContain(SectionType.SNP_SECRETS);
    expect(types).toContain(SectionType.CPUID);
    expect(img.hashTableGpa).not.toBeNull();
    const hashes = img.sevMetadata!.find((s) => s.type === SectionType.SNP_KERNEL_HASHES)!;
    expect(img.hashTableGpa! >= hashes.gpa && img.hashTableGpa! < hashes.gpa + hashes.size).toBe(true);
  });

  for (const [vcpus, type] of [
    [1, "EPYC-v4"],
    [2, "EPYC-v4"],
    [4, "EPYC-Milan"],
    [8, "EPYC-Genoa"],
  ] as const) {
    it(`launch digest with kernel/initrd/cmdline equals sev-snp-measure (${vcpus} vCPUs, ${type})`, () => {
      const ours = snpLaunchDigest({
        ovmf: readFileSync(firmware!),
        kernel: readFileSync(kernel),
        initrd: readFileSync(initrd),
        append,
        vcpus,
        vcpu: type,
        vmm: "qemu",
      });
      expect(ours.toString("hex")).toBe(reference(vcpus, type));
    });
  }

  it("binds the command line: another root hash gives another digest", () => {
    const base = {
      ovmf: readFileSync(firmware!),
      kernel: readFileSync(kernel),
      initrd: readFileSync(initrd),
      vcpus: 2,
    };
    const a = snpLaunchDigest({ ...base, append, vcpu: "EPYC-v4", vmm: "qemu" });
    const b = snpLaunchDigest({
      ...base,
      append: append.replace("bk.roothash=ab", "bk.roothash=ac"),
      vcpu: "EPYC-v4",
      vmm: "qemu",
    });
    expect(a.equals(b)).toBe(false);
  });

  it("`buckypaper measure snp --manifest` gives the reference digest for a manifest naming these files", () => {
    const dir = mkdtempSync(path.join(work, "m-"));
    const copy = (src: string, name: string) => {
      const data = readFileSync(src);
      writeFileSync(path.join(dir, name), data);
      return { path: name, sha256: createHash("sha256").update(data).digest("hex"), size: data.length };
    };
    const verity = {
      rootHash: "ab".repeat(32),
      salt: "00",
      uuid: "u",
      hashAlgorithm: "sha256",
      dataBlockSize: 4096,
      hashBlockSize: 4096,
      dataBlocks: 1,
      hashOffset: 4096,
    };
    const manifest = {
      schema: "buckypaper.guest-image/v1",
      files: {
        kernel: copy(kernel, "vmlinuz"),
        initrd: copy(initrd, "initrd.img"),
        rootfs: { path: "rootfs.img", sha256: "0".repeat(64), size: 0 },
        firmware: copy(firmware!, "OVMF.fd"),
      },
      verity,
      cmdline: append,
      firmware: { measuredDirectBoot: true, description: "AmdSev" },
    };
    writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(manifest));
    const r = spawnSync(
      process.execPath,
      [
        path.join(repoRoot, "bin/buckypaper.js"),
        "measure",
        "snp",
        "--manifest",
        path.join(dir, "manifest.json"),
        "--vcpus",
        "1,4",
        "--vcpu-type",
        "EPYC-Milan",
        "--output-format",
        "json",
      ],
      { encoding: "utf8" },
    );
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { measurements: Record<string, string> };
    expect(out.measurements["1"]).toBe(reference(1, "EPYC-Milan"));
    expect(out.measurements["4"]).toBe(reference(4, "EPYC-Milan"));
    // Giving kernel flags as well is ambiguous and refused, naming the flag.
    const bad = spawnSync(
      process.execPath,
      [
        path.join(repoRoot, "bin/buckypaper.js"),
        "measure",
        "snp",
        "--manifest",
        path.join(dir, "manifest.json"),
        "--vcpus",
        "1",
        "--kernel",
        kernel,
      ],
      { encoding: "utf8" },
    );
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/drop --kernel/);
  });
});
