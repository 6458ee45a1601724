// Azure's cloud disk (`image build --cloud azure`, disk by default): the kit image built for Azure's user-data, its
// UKI's initramfs carrying Hyper-V's VMBus + storvsc SCSI drivers (resolved from the image kernel's modules.dep), the
// raw disk written again as a fixed VHD — reproducibly, the footer describing exactly that file, and QEMU's vpc driver
// (an independent implementation) reading it as the raw disk byte for byte. Not booted: QEMU has no VMBus/storvsc, and
// the initramfs powers off when a listed driver does not load, so this disk only boots on Hyper-V/Azure — and no
// Azure VM was run here.
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { closeSync, createReadStream, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  buildDisk,
  buildImage,
  checkFixedVhd,
  ukiFromDiskFile,
  vhdUniqueId,
  type ImageManifest,
} from "../../../images/guest/index.js";
import { predictFromDisk, ukiMeasurements } from "../../../images/index.js";
import { haveCommand, requireTool } from "../../support/prereq.js";
import { repoRoot } from "../../support/shared.js";

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
async function fileSha(file: string, end?: number): Promise<string> {
  const h = createHash("sha256");
  for await (const c of createReadStream(file, { highWaterMark: 8 << 20, ...(end ? { end: end - 1 } : {}) }))
    h.update(c as Buffer);
  return h.digest("hex");
}
const scratch = mkdtempSync(path.join(tmpdir(), "bk-azdisk-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const ready =
  requireTool("root (the image build runs mmdebstrap --mode=root)", process.getuid?.() === 0) &&
  ["mmdebstrap", "mksquashfs", "unsquashfs", "veritysetup", "objcopy", "mcopy", "mkfs.fat", "dpkg-deb"].every((t) =>
    requireTool(t, haveCommand(t, t === "mkfs.fat" || t === "unsquashfs" ? ["-h"] : ["--version"])),
  );

describe.runIf(ready)("the kit image's Azure disk (fixed VHD)", () => {
  const cacheDir = path.join(homedir(), ".cache/buckypaper");
  const lockPath = path.join(repoRoot, "images/guest/packages.lock");
  let dir: string;
  let manifestPath: string;
  let m: ImageManifest;

  it(
    "image build --cloud azure writes the disk and its fixed VHD by default; a rebuild is bit-identical",
    { timeout: 3_600_000 },
    async () => {
      const started = Date.now();
      const r = await buildImage({ repoRoot, lockPath, cacheDir, cloud: "azure" });
      dir = r.dir;
      manifestPath = r.manifestPath;
      m = r.manifest;
      expect(m.enclaivelet?.userDataSource).toBe("azure");
      const disk = m.disk!;
      expect(disk.vhd).toBeDefined();
      const vhd = disk.vhd!;
      expect(JSON.parse(readFileSync(manifestPath, "utf8")).disk).toEqual(disk);
      expect(vhd.path).toBe(path.join(path.dirname(disk.path), "disk.vhd"));
      expect(vhd.virtualSize % (1 << 20)).toBe(0);
      expect(vhd.virtualSize).toBeGreaterThanOrEqual(disk.size);
      expect(vhd.virtualSize - disk.size).toBeLessThan(1 << 20);
      expect(vhd.size).toBe(vhd.virtualSize + 512);
      expect(vhd.timestamp).toBe(m.sourceDateEpoch);
      expect(vhd.uniqueId).toBe(vhdUniqueId(disk.sha256));
      const vhdFile = path.join(dir, vhd.path);
      expect(statSync(vhdFile).size).toBe(vhd.size);
      expect(await fileSha(vhdFile)).toBe(vhd.sha256);
      // The VHD's data is the raw disk, then zeros; its footer describes that file.
      expect(await fileSha(vhdFile, disk.size)).toBe(disk.sha256);
      const fd = openSync(vhdFile, "r");
      const tail = Buffer.alloc(vhd.size - disk.size);
      readSync(fd, tail, 0, tail.length, disk.size);
      closeSync(fd);
      expect(tail.subarray(0, tail.length - 512).every((b) => b === 0)).toBe(true);
      const footer = checkFixedVhd(tail.subarray(tail.length - 512), vhd.size);
      expect(footer).toMatchObject({
        currentSize: vhd.virtualSize,
        originalSize: vhd.virtualSize,
        diskType: 2,
        timestamp: m.sourceDateEpoch,
        uniqueId: vhd.uniqueId,
      });
      console.log(
        `[azure disk] ${Math.round((Date.now() - started) / 1000)} s (${r.cached ? "cached image" : "image built"}): ` +
          `raw ${disk.sha256} (${disk.size} bytes), VHD ${vhd.sha256} (${vhd.size} bytes), UKI ${disk.uki.sha256}`,
      );
      const again = await buildDisk({
        imageDir: dir,
        manifest: m,
        repoRoot,
        cacheDir,
        sourceDateEpoch: m.sourceDateEpoch,
        rebuild: true,
      });
      expect(again).toEqual(disk);
      expect(await fileSha(path.join(dir, again.vhd!.path))).toBe(vhd.sha256);
    },
  );

  it("its initramfs loads Hyper-V's VMBus and storvsc SCSI drivers (dependencies first); Azure's NICs are in the root", () => {
    const disk = m.disk!;
    const mods = disk.initrdModules;
    for (const k of [
      "hv_vmbus.ko",
      "scsi_common.ko",
      "scsi_mod.ko",
      "scsi_transport_fc.ko",
      "hv_storvsc.ko",
      "sd_mod.ko",
    ])
      expect(mods).toContain(k);
    // Everything the EC2/GCE disks load stays (NVMe, virtio-scsi, virtio-blk, dm-verity…).
    for (const k of ["nvme.ko", "virtio_scsi.ko", "virtio_blk.ko", "dm-verity.ko", "squashfs.ko", "overlay.ko"])
      expect(mods).toContain(k);
    const at = (k: string) => mods.indexOf(k);
    expect(at("hv_vmbus.ko")).toBeLessThan(at("hv_storvsc.ko"));
    expect(at("scsi_transport_fc.ko")).toBeLessThan(at("hv_storvsc.ko"));
    expect(at("scsi_mod.ko")).toBeLessThan(at("sd_mod.ko"));
    expect(disk.nicModules).toEqual(["hv_netvsc", "mlx5_core"]);
    // The UKI the firmware loads carries them: its .initrd is the recorded one and holds the storvsc module.
    const uki = ukiFromDiskFile(path.join(dir, disk.path));
    const initrd = ukiMeasurements(uki).find((s) => s.name === ".initrd")!.data;
    expect(sha(initrd)).toBe(disk.uki.initrdSha256);
    expect(initrd.includes(Buffer.from("lib/modules/hv_storvsc.ko\0"))).toBe(true);
    expect(initrd.includes(Buffer.from("hv_vmbus.ko\nscsi_transport_fc.ko\nhv_storvsc.ko\n"))).toBe(true);
  });

  it("the VHD holds the same GPT and UKI: the prediction reads it like the raw disk", () => {
    const disk = m.disk!;
    const vhdFile = path.join(dir, disk.vhd!.path);
    expect(ukiFromDiskFile(vhdFile).equals(readFileSync(path.join(dir, disk.uki.path)))).toBe(true);
    const fromRaw = predictFromDisk(manifestPath, m, "sha256").policy;
    expect(predictFromDisk(manifestPath, m, "sha256", { diskPath: vhdFile }).policy).toEqual(fromRaw);
  });

  const qemu = requireTool("qemu-img (qemu-utils)", haveCommand("qemu-img", ["--version"]));
  it.runIf(qemu)(
    "qemu-img reads the VHD as a fixed disk of the virtual size and converts it to the raw disk",
    { timeout: 600_000 },
    async () => {
      const disk = m.disk!;
      const vhd = disk.vhd!;
      const opts = `driver=vpc,force_size_calc=current_size,file.driver=file,file.filename=${path.join(dir, vhd.path)}`;
      const info = spawnSync("qemu-img", ["info", "--output=json", "--image-opts", opts], { encoding: "utf8" });
      expect(info.status, info.stderr).toBe(0);
      expect(JSON.parse(info.stdout)["virtual-size"]).toBe(vhd.virtualSize);
      const back = path.join(scratch, "back.raw");
      const c = spawnSync("qemu-img", ["convert", "--image-opts", opts, "-O", "raw", back], { encoding: "utf8" });
      expect(c.status, c.stderr).toBe(0);
      expect(statSync(back).size).toBe(vhd.virtualSize);
      expect(await fileSha(back, disk.size)).toBe(disk.sha256);
      if (vhd.virtualSize === disk.size) expect(await fileSha(back)).toBe(disk.sha256);
    },
  );
});
