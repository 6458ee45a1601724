// The TD HOB list QEMU writes into the TDVF TD_HOB section (hw/i386/tdvf-hob.c): a PHIT HOB, then one
// resource-descriptor HOB per RAM range — accepted (TD_HOB and TEMP_MEM sections) or unaccepted (the
// rest of RAM) — in address order. OVMF extends SHA384(HOB list without the end marker) into RTMR[0],
// so RTMR[0] depends on guest RAM size.
import { TdxInputError } from "./errors.js";
import { q35RamSplit } from "./memory.js";
import { TdvfSectionType, type TdvfMetadata } from "./tdvf.js";

const FOUR_GIB = 0x1_0000_0000;
const HOB_PHIT = 1;
const HOB_RESOURCE = 3;
const RESOURCE_SYSTEM_MEMORY = 0;
const RESOURCE_MEMORY_UNACCEPTED = 7;
const ATTR_PRESENT_INITIALIZED_TESTED = 7;

interface RamRange {
  start: number;
  length: number;
  accepted: boolean;
}

/** QEMU's TDX RAM entries: e820 RAM split around the accepted (TEMP_MEM, TD_HOB) sections. */
export function tdxRamRanges(meta: TdvfMetadata, memory: number): RamRange[] {
  const { below4g, above4g } = q35RamSplit(memory);
  let ranges: RamRange[] = [{ start: 0, length: below4g, accepted: false }];
  if (above4g > 0) ranges.push({ start: FOUR_GIB, length: above4g, accepted: false });
  for (const s of meta.sections) {
    if (s.type !== TdvfSectionType.TD_HOB && s.type !== TdvfSectionType.TEMP_MEM) continue;
    const start = s.memoryAddress,
      end = s.memoryAddress + s.memoryDataSize;
    const host = ranges.find((r) => start >= r.start && end <= r.start + r.length);
    if (!host)
      throw new TdxInputError(
        "memory",
        `${memory} bytes of RAM do not contain the TDVF section at 0x${start.toString(16)}+0x${s.memoryDataSize.toString(16)}`,
      );
    if (host.accepted) continue;
    const split: RamRange[] = [];
    if (start > host.start) split.push({ start: host.start, length: start - host.start, accepted: false });
    split.push({ start, length: end - start, accepted: true });
    if (end < host.start + host.length)
      split.push({ start: end, length: host.start + host.length - end, accepted: false });
    ranges = ranges.flatMap((r) => (r === host ? split : [r]));
  }
  return ranges.sort((a, b) => a.start - b.start);
}

/** The HOB list bytes OVMF measures (PHIT + resource descriptors; the 8-byte end marker excluded). */
export function buildTdHob(meta: TdvfMetadata, memory: number): Buffer {
  const hobSection = meta.sections.find((s) => s.type === TdvfSectionType.TD_HOB);
  if (!hobSection)
    throw new TdxInputError(
      "firmware",
      "TDVF metadata has no TD_HOB section, so RTMR[0] cannot be modelled (td-shim style firmware?)",
    );
  const ranges = tdxRamRanges(meta, memory);
  const out = Buffer.alloc(56 + 48 * ranges.length);
  out.writeUInt16LE(HOB_PHIT, 0);
  out.writeUInt16LE(56, 2);
  out.writeUInt32LE(9, 8); // EFI_HOB_HANDOFF_TABLE_VERSION; BootMode and memory fields stay 0
  out.writeBigUInt64LE(BigInt(hobSection.memoryAddress + out.length + 8), 48); // EfiEndOfHobList
  ranges.forEach((r, i) => {
    const at = 56 + 48 * i;
    out.writeUInt16LE(HOB_RESOURCE, at);
    out.writeUInt16LE(48, at + 2);
    out.writeUInt32LE(r.accepted ? RESOURCE_SYSTEM_MEMORY : RESOURCE_MEMORY_UNACCEPTED, at + 24);
    out.writeUInt32LE(ATTR_PRESENT_INITIALIZED_TESTED, at + 28);
    out.writeBigUInt64LE(BigInt(r.start), at + 32);
    out.writeBigUInt64LE(BigInt(r.length), at + 40);
  });
  if (out.length + 8 > hobSection.memoryDataSize)
    throw new TdxInputError("firmware", "TD HOB list does not fit the TD_HOB section");
  return out;
}
