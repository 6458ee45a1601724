// The fixed VHD writer (images/guest/vhd.ts) against the VHD specification (field by field, checksum, the CHS
// algorithm on worked sizes, one-bit corruption refused by the parser) and against QEMU's independent `vpc`
// driver: qemu-img reads the footer we wrote (checksum, fixed layout, sizes) and converts the VHD back to the raw
// disk byte for byte.
import { createHash, randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  checkFixedVhd,
  decodeVhdFooter,
  encodeVhdFooter,
  vhdChecksum,
  vhdGeometry,
  vhdUniqueId,
  VhdError,
  writeFixedVhd,
} from "../../../images/guest/vhd.js";
import { haveCommand, requireTool } from "../../support/prereq.js";

const scratch = mkdtempSync(path.join(tmpdir(), "bk-vhd-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const MIB = 1 << 20;
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const EPOCH = 1_700_000_000;
const ID = "0c5f7a3e-1b2d-4e6f-8a9b-0c1d2e3f4a5b";

describe("VHD footer (specification fields)", () => {
  it("writes every field of a fixed disk's footer at its offset, big-endian", () => {
    const f = encodeVhdFooter({ size: 3 * MIB, timestamp: EPOCH, uniqueId: ID });
    expect(f.length).toBe(512);
    expect(f.toString("latin1", 0, 8)).toBe("conectix");
    expect(f.readUInt32BE(8)).toBe(2); // features: only the reserved bit
    expect(f.readUInt32BE(12)).toBe(0x00010000); // format version 1.0
    expect(f.readBigUInt64BE(16)).toBe(0xffffffffffffffffn); // data offset: none (fixed)
    expect(f.readUInt32BE(24)).toBe(EPOCH - 946684800); // seconds since 2000-01-01T00:00:00Z
    expect(f.toString("latin1", 28, 32)).toBe("bkit");
    expect(f.readUInt32BE(32)).toBe(0x00010000);
    expect(f.readUInt32BE(36)).toBe(0x5769326b); // "Wi2k"
    expect(f.readBigUInt64BE(40)).toBe(BigInt(3 * MIB)); // original size
    expect(f.readBigUInt64BE(48)).toBe(BigInt(3 * MIB)); // current size
    // 6144 sectors: 17 sectors/track, 361 cylinders×heads → 4 heads (minimum), 90 cylinders.
    expect([f.readUInt16BE(56), f[58], f[59]]).toEqual([90, 4, 17]);
    expect(f.readUInt32BE(60)).toBe(2); // disk type: fixed
    expect(f.toString("hex", 68, 84)).toBe(ID.replace(/-/g, ""));
    expect(f[84]).toBe(0); // saved state
    expect(f.subarray(85).every((b) => b === 0)).toBe(true);
    // Checksum: one's complement of the sum of all bytes but the checksum field's own.
    let sum = 0;
    for (let i = 0; i < 512; i++) if (i < 64 || i >= 68) sum += f[i];
    expect(f.readUInt32BE(64)).toBe(~sum >>> 0);
    expect(vhdChecksum(f)).toBe(f.readUInt32BE(64));
    expect(decodeVhdFooter(f)).toEqual({
      features: 2,
      formatVersion: 0x10000,
      dataOffset: 0xffffffffffffffffn,
      timestamp: EPOCH,
      creatorApplication: "bkit",
      creatorVersion: 0x10000,
      creatorHostOs: "Wi2k",
      originalSize: 3 * MIB,
      currentSize: 3 * MIB,
      geometry: { cylinders: 90, heads: 4, sectorsPerTrack: 17 },
      diskType: 2,
      checksum: f.readUInt32BE(64),
      uniqueId: ID,
      savedState: 0,
    });
  });

  it("computes CHS geometry by the specification's algorithm", () => {
    // Worked by hand from the appendix: [size, cylinders, heads, sectors per track].
    const cases: [number, number, number, number][] = [
      [3 * MIB, 90, 4, 17], // 6144 sectors: 17 spt, heads raised to the minimum 4
      [4 * MIB, 120, 4, 17],
      [128 * MIB, 963, 16, 17], // 262144 sectors: 15420 c×h → 16 heads still fits 17 spt
      [256 * MIB, 520, 16, 63], // 17 spt needs 31 heads → 31 spt → still ≥ 16×1024 → 63 spt
      [1024 * MIB, 2080, 16, 63],
      [40 * 1024 * MIB, 20560, 16, 255], // ≥ 65535×16×63 sectors: 255 spt, 16 heads
      [200 * 1024 * MIB, 65535, 16, 255], // beyond 65535×16×255 sectors: the maximum geometry
    ];
    for (const [size, cylinders, heads, sectorsPerTrack] of cases)
      expect([size, vhdGeometry(size)]).toEqual([size, { cylinders, heads, sectorsPerTrack }]);
    // The geometry never describes more sectors than the disk has (below the cap).
    for (const [size] of cases.slice(0, -1)) {
      const g = vhdGeometry(size);
      expect(g.cylinders * g.heads * g.sectorsPerTrack * 512).toBeLessThanOrEqual(size);
    }
  });

  it("refuses one changed bit anywhere in the footer, and sizes Azure would refuse", () => {
    const f = encodeVhdFooter({ size: 3 * MIB, timestamp: EPOCH, uniqueId: ID });
    for (const at of [0, 9, 20, 27, 30, 45, 52, 57, 61, 66, 75, 84, 300, 511]) {
      const bad = Buffer.from(f);
      bad[at] ^= 1;
      expect(() => decodeVhdFooter(bad), `bit 0 of byte ${at}`).toThrow(at === 0 ? /cookie/ : /checksum/);
    }
    expect(() => decodeVhdFooter(f.subarray(0, 511))).toThrow(VhdError);
    expect(() => encodeVhdFooter({ size: 3 * MIB + 512, timestamp: EPOCH, uniqueId: ID })).toThrow(
      /currentSize: .* whole number of MiB/,
    );
    expect(() => encodeVhdFooter({ size: MIB, timestamp: 900_000_000, uniqueId: ID })).toThrow(/timestamp/);
    expect(() => encodeVhdFooter({ size: MIB, timestamp: EPOCH, uniqueId: "nope" })).toThrow(/uniqueId/);
    // A footer that is valid but not a fixed disk's, or not this file's.
    expect(() => checkFixedVhd(f, 3 * MIB + 512 + 512)).toThrow(/currentSize/);
    const dyn = Buffer.from(f);
    dyn.writeUInt32BE(3, 60);
    dyn.writeUInt32BE(vhdChecksum(dyn), 64);
    expect(() => checkFixedVhd(dyn, 3 * MIB + 512)).toThrow(/diskType: 3/);
  });

  it("the unique id is a v4-shaped UUID derived from the raw disk's digest", () => {
    const a = vhdUniqueId("00".repeat(32));
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(vhdUniqueId("00".repeat(32))).toBe(a);
    expect(vhdUniqueId("01" + "00".repeat(31))).not.toBe(a);
  });
});

describe("the fixed VHD file", () => {
  // 3 MiB and a half of random data: the writer pads it to 4 MiB.
  const raw = path.join(scratch, "disk.raw");
  const data = randomBytes(3 * MIB + MIB / 2);
  writeFileSync(raw, data);
  const vhd = path.join(scratch, "disk.vhd");

  it("is the raw disk padded to a whole MiB plus the footer, reproducibly", async () => {
    const r = await writeFixedVhd(raw, sha(data), vhd, EPOCH);
    const file = readFileSync(vhd);
    expect(r).toEqual({
      sha256: sha(file),
      size: 4 * MIB + 512,
      virtualSize: 4 * MIB,
      uniqueId: vhdUniqueId(sha(data)),
      timestamp: EPOCH,
    });
    expect(file.subarray(0, data.length).equals(data)).toBe(true);
    expect(file.subarray(data.length, 4 * MIB).every((b) => b === 0)).toBe(true);
    const footer = checkFixedVhd(file.subarray(4 * MIB), file.length);
    expect(footer.currentSize).toBe(4 * MIB);
    expect(footer.uniqueId).toBe(r.uniqueId);
    const again = await writeFixedVhd(raw, sha(data), path.join(scratch, "again.vhd"), EPOCH);
    expect(again).toEqual(r);
  });

  const qemu = requireTool("qemu-img (qemu-utils)", haveCommand("qemu-img", ["--version"]));
  const img = (args: string[]) => spawnSync("qemu-img", args, { encoding: "utf8" });

  it.runIf(qemu)("qemu-img's vpc driver reads it as a fixed VHD of the virtual size and converts it back", async () => {
    await writeFixedVhd(raw, sha(data), vhd, EPOCH);
    // The footer's current size (what Hyper-V and Azure use). QEMU sizes VHDs from a creator it does not know by the
    // CHS geometry unless told otherwise, so ask for current_size explicitly — and check the CHS reading too below.
    const opts = `driver=vpc,force_size_calc=current_size,file.driver=file,file.filename=${vhd}`;
    const info = img(["info", "--output=json", "--image-opts", opts]);
    expect(info.status, info.stderr).toBe(0);
    const j = JSON.parse(info.stdout);
    expect(j.format).toBe("vpc");
    expect(j["virtual-size"]).toBe(4 * MIB);
    // A fixed VHD's data is the file from offset 0: QEMU maps the whole virtual disk to the same file offsets
    // (a dynamic VHD would map through its block allocation table, not one extent at 0).
    const map = img(["map", "--output=json", "--image-opts", opts]);
    expect(map.status, map.stderr).toBe(0);
    const extents = JSON.parse(map.stdout) as { start: number; length: number; offset?: number; data: boolean }[];
    expect(extents.every((e) => e.offset === e.start)).toBe(true);
    expect(extents.reduce((s, e) => s + e.length, 0)).toBe(4 * MIB);
    // The CHS reading (QEMU's default for an unknown creator) is cylinders × heads × sectors × 512 of our field.
    const g = vhdGeometry(4 * MIB);
    const chs = img(["info", "--output=json", "-f", "vpc", vhd]);
    expect(chs.status, chs.stderr).toBe(0);
    expect(JSON.parse(chs.stdout)["virtual-size"]).toBe(g.cylinders * g.heads * g.sectorsPerTrack * 512);
    // Converted back to raw: the disk, then the padding.
    const back = path.join(scratch, "back.raw");
    const c = img(["convert", "--image-opts", opts, "-O", "raw", back]);
    expect(c.status, c.stderr).toBe(0);
    const out = readFileSync(back);
    expect(out.length).toBe(4 * MIB);
    expect(out.subarray(0, data.length).equals(data)).toBe(true);
    expect(out.subarray(data.length).every((b) => b === 0)).toBe(true);
    // One changed bit in the footer's size field: QEMU refuses the checksum too.
    const bad = readFileSync(vhd);
    bad[bad.length - 512 + 50] ^= 1;
    const badFile = path.join(scratch, "bad.vhd");
    writeFileSync(badFile, bad);
    expect(statSync(badFile).size).toBe(bad.length);
    const r = img(["info", "-f", "vpc", badFile]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/checksum/i);
  });
});
