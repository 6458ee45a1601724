// Boots the built image under real QEMU (TCG; BK_QEMU_ACCEL=kvm where KVM works) with direct kernel boot and the
// manifest's command line: the initramfs must open the dm-verity root and hand over to systemd; with a
// wrong root hash on the command line, or one flipped byte in the root filesystem, it must never get
// there. (The full attested flow — simulated PSP, enclaivelet, LUKS — is the local stack's, issue #13.)
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, openSync, readSync, rmSync, writeSync, closeSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { holdGuestSlots } from "../../support/guest-slots.js";
import { buildImage, type ImageManifest } from "../../../images/guest/index.js";
import { haveCommand, requireTool } from "../../support/prereq.js";
import { repoRoot } from "../../support/shared.js";

const ovmf = "/usr/share/ovmf/OVMF.fd";
const ready =
  requireTool("root (the image build runs mmdebstrap --mode=root)", process.getuid?.() === 0) &&
  requireTool("mmdebstrap", haveCommand("mmdebstrap", ["--version"])) &&
  requireTool("qemu-system-x86_64", haveCommand("qemu-system-x86_64", ["--version"])) &&
  requireTool("Debian's OVMF.fd (ovmf)", existsSync(ovmf));

/** TCG unless BK_QEMU_ACCEL=kvm: this machine's nested KVM stops OVMF with an emulation failure. */
function kvm(): boolean {
  return process.env.BK_QEMU_ACCEL === "kvm";
}

const scratch = mkdtempSync(path.join(tmpdir(), "bk-boot-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Runs QEMU until `until` matches the serial console, QEMU exits, or the timeout; returns the console text. */
function boot(
  dir: string,
  m: ImageManifest,
  rootfs: string,
  cmdline: string,
  until: RegExp,
  timeoutMs: number,
): Promise<{ console: string; matched: boolean }> {
  return new Promise((resolve) => {
    const argv = [
      "-machine",
      `q35,accel=${kvm() ? "kvm" : "tcg"}`,
      "-m",
      "1024",
      "-smp",
      "2",
      "-nographic",
      "-no-reboot",
      "-bios",
      ovmf,
      "-kernel",
      path.join(dir, m.files.kernel.path),
      "-initrd",
      path.join(dir, m.files.initrd.path),
      "-append",
      cmdline,
      "-drive",
      `file=${rootfs},if=virtio,format=raw,readonly=on`,
      "-nic",
      "none",
    ];
    const q = spawn("qemu-system-x86_64", argv, { stdio: ["ignore", "pipe", "pipe"] });
    let text = "";
    let matched = false;
    const timer = setTimeout(() => q.kill("SIGKILL"), timeoutMs);
    const onData = (c: Buffer) => {
      text += c.toString("utf8");
      if (!matched && until.test(text)) {
        matched = true;
        q.kill("SIGKILL");
      }
    };
    q.stdout.on("data", onData);
    q.stderr.on("data", onData);
    q.on("close", () => {
      clearTimeout(timer);
      resolve({ console: text, matched });
    });
  });
}

describe.runIf(ready)("the guest image boots only its verified root (real QEMU)", () => {
  holdGuestSlots(1, "image-boot"); // 1 guest(s) at once: see test/support/guest-slots.ts
  let dir = "";
  let m: ImageManifest;
  const limit = kvm() ? 240_000 : 900_000;

  it("boots to systemd through the dm-verity root", { timeout: 3_600_000 }, async () => {
    const r = await buildImage({
      repoRoot,
      lockPath: path.join(repoRoot, "images/guest/packages.lock"),
      cacheDir: path.join(homedir(), ".cache/buckypaper"),
    });
    dir = r.dir;
    m = r.manifest;
    const out = await boot(
      dir,
      m,
      path.join(dir, m.files.rootfs.path),
      m.cmdline,
      /Reached target.*Multi-User|login:/,
      limit,
    );
    expect(out.console).toContain(`buckypaper-init: root /dev/vda verified (dm-verity ${m.verity.rootHash})`);
    expect(out.matched, out.console.slice(-3000)).toBe(true);
  });

  it("refuses a command line with another root hash: never reaches systemd", { timeout: 1_200_000 }, async () => {
    const wrong = m.cmdline.replace(`bk.roothash=${m.verity.rootHash}`, `bk.roothash=${"0".repeat(64)}`);
    const out = await boot(dir, m, path.join(dir, m.files.rootfs.path), wrong, /Reached target|login:/, limit);
    expect(out.matched).toBe(false);
    // The init says "verified … switching" only after veritysetup accepted the root (the kernel prints other "switching" lines).
    expect(out.console).not.toMatch(/buckypaper-init: root .* verified/);
    expect(out.console).toMatch(/verification failed|dm-verity rejected|cannot mount the verified root|Kernel panic/);
  });

  it("refuses a root filesystem with one byte changed in its superblock", { timeout: 1_200_000 }, async () => {
    const copy = path.join(scratch, "rootfs.img");
    copyFileSync(path.join(dir, m.files.rootfs.path), copy);
    const fd = openSync(copy, "r+");
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, 100);
    b[0] ^= 0xff;
    writeSync(fd, b, 0, 1, 100);
    closeSync(fd);
    const out = await boot(dir, m, copy, m.cmdline, /Reached target|login:/, limit);
    expect(out.matched).toBe(false);
    expect(out.console).toMatch(/verification failed|dm-verity rejected|cannot mount the verified root|Kernel panic/);
  });
});
