// MRTD and TDVF metadata parsing against the Debian bookworm OVMF.fd (ovmf 2022.11-6+deb12u2).
// Expected values: ../shared/docs/reference/tdx-measurement.md §4 — single-pass agrees with td-shim's
// td_shim_tee_info_hash.py; both orderings also agree with mosaik's and dstack-mr's algorithms (see
// tdx-reference.test.ts for the live differential run).
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { hasShared, noteIfSharedMissing, sharedPath } from "../support/shared.js";
import { parseTdvf, TdvfSectionType, TdvfAttribute, computeMrtd, TdxInputError } from "../../images/tdx/index.js";

const SINGLE = "4c7206f0f483c524f12c366c711e9049030a8d47c471ee5aa9c4999a08de4057fb887fed0744d5631a212967fb231c47";
const TWO_PASS = "acccbcc870a381adab0d3919d90a7f268ac3b0364771f202ed4bb4e892d045b33db3b32e6924cba830a724eed443f7e1";

describe.skipIf(!noteIfSharedMissing("TDX MRTD vectors"))("TDX MRTD (Debian OVMF.fd)", () => {
  const fw = hasShared ? readFileSync(sharedPath("vectors/debian-bookworm-ovmf/OVMF.fd")) : Buffer.alloc(0);

  it("parses the six TDVF sections of the unified image", () => {
    const m = parseTdvf(fw);
    expect(m.sections.map((s) => [s.type, s.memoryAddress, s.memoryDataSize, s.attributes])).toEqual([
      [TdvfSectionType.BFV, 0xffe20000, 0x1e0000, TdvfAttribute.MR_EXTEND],
      [TdvfSectionType.CFV, 0xffe00000, 0x20000, 0],
      [TdvfSectionType.TEMP_MEM, 0x810000, 0x10000, 0],
      [TdvfSectionType.TEMP_MEM, 0x80b000, 0x2000, 0],
      [TdvfSectionType.TD_HOB, 0x809000, 0x2000, 0],
      [TdvfSectionType.TEMP_MEM, 0x800000, 0x6000, 0],
    ]);
    expect(m.sections[0]).toMatchObject({ dataOffset: 0x20000, rawDataSize: 0x1e0000 });
  });

  it("computes the single-pass MRTD", () => {
    expect(computeMrtd(fw, parseTdvf(fw), "single").toString("hex")).toBe(SINGLE);
  });

  it("computes the two-pass MRTD, and the two orderings differ", () => {
    expect(computeMrtd(fw, parseTdvf(fw), "two-pass").toString("hex")).toBe(TWO_PASS);
  });

  it("changes when one byte of the measured boot firmware volume changes, not when the CFV changes", () => {
    const bfv = Buffer.from(fw);
    bfv[0x20000 + 12345] ^= 1;
    expect(computeMrtd(bfv, parseTdvf(bfv)).toString("hex")).not.toBe(SINGLE);
    const cfv = Buffer.from(fw);
    cfv[0x100] ^= 1; // CFV (variable store) is PAGE.ADD-only: measured in RTMR[0], not MRTD
    expect(computeMrtd(cfv, parseTdvf(cfv)).toString("hex")).toBe(SINGLE);
  });

  it("refuses OVMF_CODE_4M.fd (no TDX metadata) with a typed error", () => {
    const code = readFileSync(sharedPath("vectors/debian-bookworm-ovmf/OVMF_CODE_4M.fd"));
    expect(() => parseTdvf(code)).toThrow(TdxInputError);
    expect(() => parseTdvf(code)).toThrow(/firmware: no TDX \(TDVF\) metadata/);
  });

  it("refuses truncated and corrupted images", () => {
    expect(() => parseTdvf(fw.subarray(0, 100))).toThrow(/too short/);
    // Cutting the front keeps the footer but makes the BFV raw data run past the end.
    expect(() => parseTdvf(fw.subarray(0x100000))).toThrow(TdxInputError);
    const badSig = Buffer.from(fw);
    const at = parseTdvf(fw).descriptorOffset;
    badSig.write("XXXX", at, "latin1");
    expect(() => parseTdvf(badSig)).toThrow(/signature is 'XXXX'/);
    const badCount = Buffer.from(fw);
    badCount.writeUInt32LE(7, at + 12);
    expect(() => parseTdvf(badCount)).toThrow(/does not match 7 sections/);
    const unaligned = Buffer.from(fw);
    unaligned.writeUInt32LE(0xffe20010, at + 16 + 8);
    expect(() => parseTdvf(unaligned)).toThrow(/firmware\.sections\[0\]: BFV .* not 4 KiB-aligned/);
  });

  it("finds the metadata through td-shim's fallback pointer when the image has no footer GUID table", () => {
    const meta = parseTdvf(fw);
    const legacy = Buffer.from(fw);
    legacy.fill(0, fw.length - 0x30, fw.length - 0x20); // wipe the footer table GUID
    legacy.writeUInt32LE(meta.descriptorOffset - 16, fw.length - 0x20); // u32 at len-0x20: offset of the metadata GUID
    expect(parseTdvf(legacy).sections).toEqual(meta.sections);
    legacy.writeUInt32LE(12345, fw.length - 0x20); // pointing at anything else: no metadata
    expect(() => parseTdvf(legacy)).toThrow(/no TDX \(TDVF\) metadata/);
  });

  it("skips PAGE.ADD for PAGE_AUG sections and extends only MR_EXTEND sections", () => {
    const meta = parseTdvf(fw);
    const aug = {
      ...meta,
      sections: meta.sections.map((s, i) => (i === 2 ? { ...s, attributes: TdvfAttribute.PAGE_AUG } : s)),
    };
    const withoutTempMem = { ...meta, sections: meta.sections.filter((_, i) => i !== 2) };
    expect(computeMrtd(fw, aug).equals(computeMrtd(fw, withoutTempMem))).toBe(true);
    const extendCfv = {
      ...meta,
      sections: meta.sections.map((s, i) => (i === 1 ? { ...s, attributes: TdvfAttribute.MR_EXTEND } : s)),
    };
    expect(computeMrtd(fw, extendCfv).toString("hex")).not.toBe(SINGLE);
  });

  it("refuses an image of zeros and random bytes", () => {
    expect(() => parseTdvf(Buffer.alloc(2 << 20))).toThrow(/no TDX \(TDVF\) metadata/);
    let x = 0x12345678;
    const noise = Buffer.alloc(1 << 20, 0).map(() => (x = (x * 1103515245 + 12345) >>> 0) >>> 24);
    expect(() => parseTdvf(Buffer.from(noise))).toThrow(TdxInputError);
  });
});
