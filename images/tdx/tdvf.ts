// TDVF metadata (TDX Virtual Firmware Design Guide §11): found through the OVMF footer GUID table
// entry TDX_METADATA_OFFSET, it lists the firmware sections the VMM loads into the TD and how each is
// measured. Layout and validity checks: docs/measurement.md §TDX.
import { TdxInputError } from "./errors.js";
import { guidBytesLe } from "../snp/guid.js";

export const PAGE = 4096;

const GUID = {
  footerTable: "96b582de-1fb2-45f7-baea-a366c55a082d",
  tdxMetadataOffset: "e47a6535-984a-4798-865e-4685a7bf8ec2",
  tdxMetadata: "e9eaf9f3-168e-44d5-a8eb-7f4d8738f6ae",
} as const;

export const TdvfSectionType = {
  BFV: 0,
  CFV: 1,
  TD_HOB: 2,
  TEMP_MEM: 3,
  PERM_MEM: 4,
  PAYLOAD: 5,
  PAYLOAD_PARAM: 6,
  TD_INFO: 7,
  TD_PARAMS: 8,
} as const;
const TYPE_NAMES = Object.fromEntries(Object.entries(TdvfSectionType).map(([k, v]) => [v, k])) as Record<
  number,
  string
>;

/** Section attribute bits. */
export const TdvfAttribute = { MR_EXTEND: 1, PAGE_AUG: 2 } as const;

export interface TdvfSection {
  dataOffset: number;
  rawDataSize: number;
  memoryAddress: number;
  memoryDataSize: number;
  type: number;
  attributes: number;
}

export interface TdvfMetadata {
  /** File offset of the "TDVF" descriptor. */
  descriptorOffset: number;
  sections: TdvfSection[];
}

export function sectionTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `type ${type}`;
}

/**
 * Reads the OVMF footer table (ends 32 bytes before the end of the image; entries are
 * [data][u16 size][GUID] read backwards) and returns the TDX_METADATA_OFFSET entry's u32, or null.
 */
function tdxMetadataOffsetFromFooter(fw: Buffer, field: string): number | null {
  const footerEnd = fw.length - 32;
  if (footerEnd < 18 || !fw.subarray(footerEnd - 16, footerEnd).equals(guidBytesLe(GUID.footerTable))) return null;
  const tableSize = fw.readUInt16LE(footerEnd - 18);
  if (tableSize < 18 || tableSize > footerEnd)
    throw new TdxInputError(field, `footer GUID table size ${tableSize} is invalid (corrupt or truncated image)`);
  const tableStart = footerEnd - tableSize;
  let end = footerEnd - 18; // entries end here
  const want = guidBytesLe(GUID.tdxMetadataOffset);
  while (end - tableStart >= 18) {
    const guid = fw.subarray(end - 16, end);
    const size = fw.readUInt16LE(end - 18);
    if (size < 18 || end - size < tableStart)
      throw new TdxInputError(field, `footer GUID table entry of size ${size} is invalid`);
    if (guid.equals(want)) {
      if (size < 22) throw new TdxInputError(field, `TDX_METADATA_OFFSET entry is ${size - 18} bytes, expected 4`);
      return fw.readUInt32LE(end - size);
    }
    end -= size;
  }
  return null;
}

/**
 * Parses and validates the TDVF metadata of a firmware image. Throws TdxInputError(field) when the
 * image has no TDX metadata (e.g. Debian OVMF_CODE_4M.fd), is truncated, or describes sections that
 * do not fit the file or are not page-aligned.
 */
export function parseTdvf(fw: Buffer, field = "firmware"): TdvfMetadata {
  if (fw.length < PAGE)
    throw new TdxInputError(field, `image is ${fw.length} bytes, too short for a firmware image (truncated?)`);
  let off = tdxMetadataOffsetFromFooter(fw, field);
  if (off === null) {
    // td-shim images without a footer table: u32 at len-0x20 is the offset of the metadata GUID.
    const guidAt = fw.readUInt32LE(fw.length - 0x20);
    if (
      guidAt > 0 &&
      guidAt + 16 + 16 <= fw.length &&
      fw.subarray(guidAt, guidAt + 16).equals(guidBytesLe(GUID.tdxMetadata))
    )
      off = fw.length - (guidAt + 16);
  }
  if (off === null)
    throw new TdxInputError(
      field,
      "no TDX (TDVF) metadata: this firmware cannot boot a TD (use a TDX-enabled OVMF such as Debian's unified OVMF.fd, not OVMF_CODE_4M.fd)",
    );
  if (off < 16 || off > fw.length - 16)
    throw new TdxInputError(
      field,
      `TDX metadata offset 0x${off.toString(16)} points outside the ${fw.length}-byte image (truncated?)`,
    );
  const descriptorOffset = fw.length - off;
  if (
    descriptorOffset < 16 ||
    !fw.subarray(descriptorOffset - 16, descriptorOffset).equals(guidBytesLe(GUID.tdxMetadata))
  ) {
    throw new TdxInputError(field, "TDX metadata GUID missing in front of the TDVF descriptor (corrupt image)");
  }
  const sig = fw.toString("latin1", descriptorOffset, descriptorOffset + 4);
  if (sig !== "TDVF")
    throw new TdxInputError(
      field,
      `TDVF descriptor signature is '${sig.replace(/[^\x20-\x7e]/g, "?")}', expected 'TDVF'`,
    );
  const length = fw.readUInt32LE(descriptorOffset + 4);
  const version = fw.readUInt32LE(descriptorOffset + 8);
  const count = fw.readUInt32LE(descriptorOffset + 12);
  if (version !== 1) throw new TdxInputError(field, `TDVF descriptor version ${version} is not supported (expected 1)`);
  if (count === 0 || length !== 16 + 32 * count || descriptorOffset + length > fw.length) {
    throw new TdxInputError(
      field,
      `TDVF descriptor length ${length} does not match ${count} sections or exceeds the image`,
    );
  }
  const sections: TdvfSection[] = [];
  for (let i = 0; i < count; i++) {
    const at = descriptorOffset + 16 + 32 * i;
    const s: TdvfSection = {
      dataOffset: fw.readUInt32LE(at),
      rawDataSize: fw.readUInt32LE(at + 4),
      memoryAddress: Number(fw.readBigUInt64LE(at + 8)),
      memoryDataSize: Number(fw.readBigUInt64LE(at + 16)),
      type: fw.readUInt32LE(at + 24),
      attributes: fw.readUInt32LE(at + 28),
    };
    validateSection(fw, s, `${field}.sections[${i}]`);
    sections.push(s);
  }
  return { descriptorOffset, sections };
}

function validateSection(fw: Buffer, s: TdvfSection, where: string): void {
  const name = sectionTypeName(s.type);
  if (s.type > TdvfSectionType.TD_PARAMS) throw new TdxInputError(where, `unknown TDVF section type ${s.type}`);
  if (s.memoryAddress % PAGE !== 0 || s.memoryDataSize % PAGE !== 0) {
    throw new TdxInputError(
      where,
      `${name} at 0x${s.memoryAddress.toString(16)}+0x${s.memoryDataSize.toString(16)} is not 4 KiB-aligned`,
    );
  }
  if (!Number.isSafeInteger(s.memoryAddress + s.memoryDataSize))
    throw new TdxInputError(where, `${name} memory range overflows`);
  if (s.type !== TdvfSectionType.TD_INFO && s.memoryDataSize < s.rawDataSize) {
    throw new TdxInputError(
      where,
      `${name} raw size 0x${s.rawDataSize.toString(16)} exceeds its memory size 0x${s.memoryDataSize.toString(16)}`,
    );
  }
  if (s.rawDataSize > 0 && s.dataOffset + s.rawDataSize > fw.length) {
    throw new TdxInputError(
      where,
      `${name} raw data 0x${s.dataOffset.toString(16)}+0x${s.rawDataSize.toString(16)} lies beyond the ${fw.length}-byte image (truncated?)`,
    );
  }
}

/** The section's content as loaded into the TD: raw bytes zero-filled to its memory size. */
export function sectionBytes(fw: Buffer, s: TdvfSection): Buffer {
  const raw = fw.subarray(s.dataOffset, s.dataOffset + s.rawDataSize);
  if (raw.length === s.memoryDataSize) return raw;
  const out = Buffer.alloc(s.memoryDataSize);
  raw.copy(out);
  return out;
}
