// The real image build (mmdebstrap from Debian's archive, squashfs, dm-verity, initramfs) and its
// reproducibility: the cached build and a second build from the same inputs into a fresh directory must
// give bit-identical kernel, initrd and rootfs and the same root hash. Cold, each build takes several
// minutes on two cores; the first is usually a cache hit (scripts/ci-deps.sh or an earlier run made it).
import { createHash } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import { holdGuestSlots } from "../../support/guest-slots.js";
import {
  buildImage,
  loadManifest,
  ManifestError,
  snpDigestsFromManifest,
  type ImageBuildResult,
} from "../../../images/guest/index.js";
import { haveCommand, requireTool } from "../../support/prereq.js";
import { repoRoot } from "../../support/shared.js";

const tools = ["mmdebstrap", "mksquashfs", "veritysetup"];
const ready =
  requireTool("root (the image build runs mmdebstrap --mode=root)", process.getuid?.() === 0) &&
  tools.every((t) => requireTool(t, haveCommand(t, ["--version"]))) &&
  requireTool("npm", haveCommand("npm", ["--version"]));

const sha = (f: string) => createHash("sha256").update(readFileSync(f)).digest("hex");
const cacheDir = path.join(homedir(), ".cache/buckypaper");
const lockPath = path.join(repoRoot, "images/guest/packages.lock");
const scratch = mkdtempSync(path.join(tmpdir(), "bk-image-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function firmwarePath(): string | undefined {
  const r = spawnSync(path.join(repoRoot, "scripts/build-firmware.sh"), ["--print-path"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

describe.runIf(ready)("guest image build (real Debian packages)", () => {
  holdGuestSlots(2, "image-build"); // CPU-heavy image builds count as two guests: see test/support/guest-slots.ts
  let first: ImageBuildResult;

  it("builds (or finds in the cache) an image whose manifest matches its files", { timeout: 3_600_000 }, async () => {
    const lines: string[] = [];
    first = await buildImage({
      repoRoot,
      lockPath,
      cacheDir,
      firmware: firmwarePath(),
      progress: (l) => lines.push(l),
    });
    expect(lines[0]).toMatch(/^image: \[1\/5\]/);
    const m = loadManifest(first.manifestPath);
    for (const k of ["kernel", "initrd", "rootfs"] as const)
      expect(sha(path.join(first.dir, m.files[k].path))).toBe(m.files[k].sha256);
    expect(m.cmdline).toContain(`bk.roothash=${m.verity.rootHash}`);
    expect(m.cmdline).toContain(`bk.hashoffset=${m.verity.hashOffset}`);
    expect(m.packageLock.sha256).toBe(sha(lockPath));
    // The root hash really is the one veritysetup computes over the image.
    const v = spawnSync("veritysetup", [
      "verify",
      path.join(first.dir, "rootfs.img"),
      path.join(first.dir, "rootfs.img"),
      m.verity.rootHash,
      `--hash-offset=${m.verity.hashOffset}`,
    ]);
    expect(v.status, v.stderr?.toString()).toBe(0);
  });

  it("rebuilds bit-identically from the same inputs in a fresh directory", { timeout: 3_600_000 }, async () => {
    const out = path.join(scratch, "rebuild");
    const second = await buildImage({ repoRoot, lockPath, cacheDir, outDir: out, rebuild: true });
    const a = loadManifest(first.manifestPath);
    const b = second.manifest;
    expect(b.inputHash).toBe(a.inputHash);
    expect(b.verity.rootHash).toBe(a.verity.rootHash);
    for (const k of ["kernel", "initrd", "rootfs"] as const) {
      expect(b.files[k]).toEqual(a.files[k]);
      expect(sha(path.join(out, b.files[k].path))).toBe(sha(path.join(first.dir, a.files[k].path)));
    }
    console.log(
      `[image] reproducible: kernel ${a.files.kernel.sha256} initrd ${a.files.initrd.sha256} rootfs ${a.files.rootfs.sha256} root hash ${a.verity.rootHash} (rebuild ${second.seconds} s)`,
    );
  });

  it("measure from the manifest refuses a swapped kernel", () => {
    const m = loadManifest(first.manifestPath);
    if (!m.files.firmware || !m.firmware?.measuredDirectBoot) {
      console.warn("[skip] no AmdSev firmware in the manifest (scripts/build-firmware.sh)");
      return;
    }
    const copy = path.join(scratch, "tampered");
    spawnSync("mkdir", ["-p", copy]);
    for (const k of ["kernel", "initrd", "firmware"] as const)
      copyFileSync(path.join(first.dir, m.files[k]!.path), path.join(copy, m.files[k]!.path));
    writeFileSync(path.join(copy, "manifest.json"), JSON.stringify(m));
    const good = snpDigestsFromManifest(path.join(copy, "manifest.json"), { vcpus: [1], vcpu: "EPYC-v4" }).get(1)!;
    expect(good.length).toBe(48);
    if (haveCommand("sev-snp-measure", ["--version"])) {
      // The reference tool agrees on the real image's kernel, initrd and command line.
      const r = spawnSync(
        "sev-snp-measure",
        [
          "--mode",
          "snp",
          "--vcpus",
          "1",
          "--vcpu-type",
          "EPYC-v4",
          "--ovmf",
          path.join(copy, "OVMF.fd"),
          "--kernel",
          path.join(copy, "vmlinuz"),
          "--initrd",
          path.join(copy, "initrd.img"),
          "--append",
          m.cmdline,
          "--output-format",
          "hex",
        ],
        { encoding: "utf8" },
      );
      expect(r.stdout.trim(), r.stderr).toBe(good.toString("hex"));
    }
    const k = readFileSync(path.join(copy, "vmlinuz"));
    k[k.length - 1] ^= 1;
    writeFileSync(path.join(copy, "vmlinuz"), k);
    expect(() => snpDigestsFromManifest(path.join(copy, "manifest.json"), { vcpus: [1] })).toThrow(ManifestError);
    expect(() => snpDigestsFromManifest(path.join(copy, "manifest.json"), { vcpus: [1] })).toThrow(
      /files\.kernel: .* has SHA-256/,
    );
  });
});
