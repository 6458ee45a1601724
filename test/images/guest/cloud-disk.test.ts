// The cloud disk (`image build --format disk`, images/guest/disk.ts): the userspace GPT writer/reader against
// sfdisk, the FAT32 reader against mkfs.fat + mcopy, then the real disk of the kit image — bit-identical when
// built twice, its partitions holding exactly the image's squashfs and hash tree, its ESP the UKI whose command
// line names the partitions by label with the verity root hash — and the boot-chain prediction taken from the
// UKI read out of the disk file (a disk whose UKI was changed is refused). Booting it: cloud-disk-boot.test.ts.
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import {
  closeSync,
  copyFileSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  buildDisk,
  buildImage,
  decodeGpt,
  encodeGpt,
  FatError,
  GptError,
  PARTITION_TYPE,
  readFatFile,
  ukiFromDiskFile,
  type ImageManifest,
} from "../../../images/guest/index.js";
import {
  bootApplicationDigest,
  predictFromDisk,
  predictMeasuredBoot,
  ukiCmdline,
  ukiMeasurements,
} from "../../../images/index.js";
import { haveCommand, requireTool } from "../../support/prereq.js";
import { repoRoot } from "../../support/shared.js";

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const scratch = mkdtempSync(path.join(tmpdir(), "bk-disk-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const layout = {
  diskGuid: "0c5f7a3e-1b2d-4e6f-8a9b-0c1d2e3f4a5b",
  sectors: 8192,
  partitions: [
    {
      type: PARTITION_TYPE.esp,
      guid: "11111111-2222-4333-8444-555555555555",
      firstLba: 2048,
      lastLba: 4095,
      name: "EFI System Partition",
    },
    {
      type: PARTITION_TYPE.rootX86_64,
      guid: "66666666-7777-4888-9999-aaaaaaaaaaaa",
      firstLba: 4096,
      lastLba: 6143,
      name: "bk-root-0123456789abcdef",
      attributes: 1n << 60n,
    },
  ],
};

function writeDisk(file: string, l: typeof layout): void {
  const g = encodeGpt(l);
  const d = Buffer.alloc(l.sectors * 512);
  g.head.copy(d, 0);
  g.tail.copy(d, (l.sectors - 33) * 512);
  writeFileSync(file, d);
}

describe("GPT (userspace writer and reader)", () => {
  it("round-trips and sfdisk reads the same table", () => {
    const file = path.join(scratch, "t.gpt");
    writeDisk(file, layout);
    const head = readFileSync(file).subarray(0, 34 * 512);
    expect(decodeGpt(head)).toEqual({
      ...layout,
      partitions: layout.partitions.map((p) => ({ attributes: 0n, ...p })),
    });
    if (!requireTool("sfdisk (util-linux)", haveCommand("sfdisk", ["--version"]))) return;
    const r = spawnSync("sfdisk", ["--json", file], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    const t = JSON.parse(r.stdout).partitiontable;
    expect(t.label).toBe("gpt");
    expect(t.id.toLowerCase()).toBe(layout.diskGuid);
    expect(
      t.partitions.map((p: { start: number; size: number; type: string; uuid: string; name: string }) => [
        p.start,
        p.size,
        p.type.toLowerCase(),
        p.uuid.toLowerCase(),
        p.name,
      ]),
    ).toEqual(layout.partitions.map((p) => [p.firstLba, p.lastLba - p.firstLba + 1, p.type, p.guid, p.name]));
    // sfdisk --verify checks the backup table at the end of the disk too.
    const v = spawnSync("sfdisk", ["--verify", file], { encoding: "utf8" });
    expect(v.status, v.stdout + v.stderr).toBe(0);
  });

  it("refuses a changed header or entry byte, overlaps and long names", () => {
    const file = path.join(scratch, "t2.gpt");
    writeDisk(file, layout);
    const head = readFileSync(file).subarray(0, 34 * 512);
    const h = Buffer.from(head);
    h[512 + 40] ^= 1;
    expect(() => decodeGpt(h)).toThrow(/header CRC32/);
    const e = Buffer.from(head);
    e[1024 + 56] ^= 1;
    expect(() => decodeGpt(e)).toThrow(/entry array CRC32/);
    expect(() =>
      encodeGpt({ ...layout, partitions: [layout.partitions[0], { ...layout.partitions[1], firstLba: 4000 }] }),
    ).toThrow(GptError);
    expect(() => encodeGpt({ ...layout, partitions: [{ ...layout.partitions[0], name: "x".repeat(37) }] })).toThrow(
      /36 printable/,
    );
  });
});

describe.runIf(
  requireTool("mkfs.fat + mcopy", haveCommand("mkfs.fat", ["--help"]) && haveCommand("mcopy", ["--version"])),
)("FAT32 reader", () => {
  it("reads files mcopy wrote, nested, and names what is missing", () => {
    const img = path.join(scratch, "esp.img");
    const src = path.join(scratch, "esp", "EFI", "BOOT");
    spawnSync("mkdir", ["-p", src]);
    const big = Buffer.alloc(300_001, 7);
    big.write("MZ-not-really", 1000);
    writeFileSync(path.join(src, "BOOTX64.EFI"), big);
    writeFileSync(path.join(scratch, "esp", "EFI", "A.TXT"), "hello");
    expect(spawnSync("mkfs.fat", ["-C", "-F", "32", "--invariant", img, String(64 * 1024)]).status).toBe(0);
    const c = spawnSync("mcopy", ["-s", "-m", "-i", img, path.join(scratch, "esp", "EFI"), "::/"], {
      env: { ...process.env, MTOOLS_SKIP_CHECK: "1" },
    });
    expect(c.status, c.stderr?.toString()).toBe(0);
    const fat = readFileSync(img);
    expect(readFatFile(fat, "/EFI/BOOT/BOOTX64.EFI").equals(big)).toBe(true);
    expect(readFatFile(fat, "\\efi\\a.txt").toString()).toBe("hello");
    expect(() => readFatFile(fat, "/EFI/BOOT/GRUBX64.EFI")).toThrow(/EFI\/BOOT\/GRUBX64.EFI: not found/);
    expect(() => readFatFile(fat, "/EFI/A.TXT/X")).toThrow(/not a directory/);
    expect(() => readFatFile(Buffer.alloc(4096), "/A")).toThrow(FatError);
  });
});

const ready =
  requireTool("root (the image build runs mmdebstrap --mode=root)", process.getuid?.() === 0) &&
  ["mmdebstrap", "mksquashfs", "unsquashfs", "veritysetup", "objcopy", "mcopy", "mkfs.fat", "dpkg-deb"].every((t) =>
    requireTool(t, haveCommand(t, t === "mkfs.fat" || t === "unsquashfs" ? ["-h"] : ["--version"])),
  );

describe.runIf(ready)("the kit image's cloud disk", () => {
  const cacheDir = path.join(homedir(), ".cache/buckypaper");
  const lockPath = path.join(repoRoot, "images/guest/packages.lock");
  let dir: string;
  let manifestPath: string;
  let m: ImageManifest;

  it(
    "image build --format disk records the disk in the manifest; a rebuild is bit-identical",
    { timeout: 3_600_000 },
    async () => {
      const r = await buildImage({ repoRoot, lockPath, cacheDir, format: "disk" });
      dir = r.dir;
      manifestPath = r.manifestPath;
      m = r.manifest;
      const disk = m.disk!;
      expect(disk).toBeDefined();
      expect(JSON.parse(readFileSync(manifestPath, "utf8")).disk).toEqual(disk);
      const bytes = readFileSync(path.join(dir, disk.path));
      expect(sha(bytes)).toBe(disk.sha256);
      expect(bytes.length).toBe(disk.size);
      const again = await buildDisk({
        imageDir: dir,
        manifest: m,
        repoRoot,
        cacheDir,
        sourceDateEpoch: m.sourceDateEpoch,
        rebuild: true,
      });
      expect(again).toEqual(disk);
      expect(sha(readFileSync(path.join(dir, again.path)))).toBe(disk.sha256);
      console.log(`[disk] reproducible: disk ${disk.sha256} (${disk.size} bytes), UKI ${disk.uki.sha256}`);
    },
  );

  it("holds the image's squashfs and hash tree as labelled partitions and the UKI on the ESP", () => {
    const disk = m.disk!;
    const file = path.join(dir, disk.path);
    const fd = openSync(file, "r");
    const part = (n: number) => {
      const p = disk.partitions[n - 1];
      const b = Buffer.alloc((p.lastLba - p.firstLba + 1) * 512);
      readSync(fd, b, 0, b.length, p.firstLba * 512);
      return b;
    };
    const rootfs = readFileSync(path.join(dir, m.files.rootfs.path));
    const data = rootfs.subarray(0, m.verity.hashOffset);
    const tree = rootfs.subarray(m.verity.hashOffset);
    const head = Buffer.alloc(34 * 512);
    readSync(fd, head, 0, head.length, 0);
    const gpt = decodeGpt(head);
    expect(gpt.partitions.map((p) => p.name)).toEqual(["EFI System Partition", disk.rootLabel, disk.verityLabel]);
    expect(gpt.partitions[1].guid.replace(/-/g, "").slice(0, 12)).toBe(m.verity.rootHash.slice(0, 12));
    expect(part(2).subarray(0, data.length).equals(data)).toBe(true);
    expect(part(3).subarray(0, tree.length).equals(tree)).toBe(true);
    closeSync(fd);
    const uki = ukiFromDiskFile(file);
    expect(sha(uki)).toBe(disk.uki.sha256);
    expect(uki.equals(readFileSync(path.join(dir, disk.uki.path)))).toBe(true);
    const cmdline = ukiCmdline(uki)!;
    expect(cmdline).toBe(disk.uki.cmdline);
    expect(cmdline).toContain(`bk.roothash=${m.verity.rootHash}`);
    expect(cmdline).toContain(`bk.root=PARTLABEL=${disk.rootLabel}`);
    expect(cmdline).toContain(`bk.verity=PARTLABEL=${disk.verityLabel}`);
    expect(cmdline).not.toContain("/dev/vda");
    const sections = Object.fromEntries(ukiMeasurements(uki).map((s) => [s.name, s.data]));
    expect(sha(sections[".linux"])).toBe(m.files.kernel.sha256);
    expect(sha(sections[".initrd"])).toBe(disk.uki.initrdSha256);
    expect(disk.initrdModules).toEqual(
      expect.arrayContaining(["nvme.ko", "virtio_scsi.ko", "sd_mod.ko", "virtio_blk.ko"]),
    );
    expect(disk.nicModules).toEqual(["ena", "gve", "virtio_net"]);
    expect(disk.uki.authenticode.sha256).toBe(bootApplicationDigest(uki, "sha256"));
  });

  it("the boot-chain prediction comes from the UKI on the disk; a changed UKI on the disk is refused", () => {
    const disk = m.disk!;
    for (const bank of ["sha256", "sha384"] as const) {
      const { policy } = predictFromDisk(manifestPath, m, bank);
      const uki = readFileSync(path.join(dir, disk.uki.path));
      expect(policy).toEqual(
        predictMeasuredBoot({
          bootApplications: [{ name: "uki", image: uki }],
          uki: {},
          mustContain: [
            `bk.roothash=${m.verity.rootHash}`,
            "systemd.import_credentials=no",
            "module_blacklist=qemu_fw_cfg",
          ],
          bank,
        }),
      );
      // The UKI, then the kernel systemd-stub starts with LoadImage (both measured by the firmware in PCR 4).
      const kernel = readFileSync(path.join(dir, m.files.kernel.path));
      expect(policy.bootApplications!.required).toEqual([
        disk.uki.authenticode[bank],
        bootApplicationDigest(kernel, bank),
      ]);
    }
    // One byte of the UKI's command line changed on a copy of the disk: not the manifest's UKI.
    const copy = path.join(scratch, "disk.raw");
    copyFileSync(path.join(dir, disk.path), copy);
    const bytes = readFileSync(copy);
    const esp = disk.partitions[0];
    const at = bytes.indexOf(Buffer.from(disk.uki.cmdline), esp.firstLba * 512);
    expect(at).toBeGreaterThan(0);
    expect(at).toBeLessThan((esp.lastLba + 1) * 512);
    const w = openSync(copy, "r+");
    writeSync(w, Buffer.from([bytes[at + 8] ^ 1]), 0, 1, at + 8);
    closeSync(w);
    expect(() => predictFromDisk(manifestPath, m, "sha256", { diskPath: copy })).toThrow(
      /BOOTX64.EFI has SHA-256 [0-9a-f]{64}, the manifest's UKI is/,
    );
  });
});
