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

  it("refuses an image of zeros and random bytes", () => {
    expect(() => parseTdvf(Buffer.alloc(2 << 20))).toThrow(/no TDX \(TDVF\) metadata/);
  });
});
