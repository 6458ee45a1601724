// OVMF / SVSM image parsing: the GUIDed footer table at the end of the image, the SEV metadata
// ("ASEV") section list, the SEV-ES AP reset vector and the kernel-hashes table address.
// Layouts: docs/measurement.md §firmware (from edk2 OvmfPkg/ResetVector and QEMU target/i386/sev.c).
import { MeasurementInputError } from "./errors.js";
import { guidBytesLe, guidFromBytesLe } from "./guid.js";

export const FOUR_GIB = 0x1_0000_0000;
export const PAGE_SIZE = 4096;

export const OVMF_GUIDS = {
  footer: "96b582de-1fb2-45f7-baea-a366c55a082d",
  sevEsResetBlock: "00f771de-1a7e-4fcb-890e-68c77e2fb44e",
  sevMetadata: "dc886566-984a-4798-a75e-5585a7bf67cc",
  sevHashTable: "7255371f-3a3b-4b04-927b-1da6efa8d454",
  sevSecretBlock: "4c2eb361-7d9b-4cc3-8081-127c90d3d294",
  svsmInfo: "a789a612-0597-4c4b-a49f-cbb1fe9d1ddd",
} as const;

/** SEV metadata section types (edk2 OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm). */
export const SectionType = {
  SNP_SEC_MEM: 1,
  SNP_SECRETS: 2,
  CPUID: 3,
  SVSM_CAA: 4,
  SNP_KERNEL_HASHES: 0x10,
} as const;
const KNOWN_SECTION_TYPES = new Set<number>(Object.values(SectionType));

export interface SevMetadataSection {
  gpa: number;
  size: number;
  /** Raw section type (SectionTypeInt); see SectionType. */
  type: number;
}

export interface OvmfImage {
  data: Buffer;
  /** Guest-physical address of the first byte: the image ends at `endAt` (4 GiB for firmware). */
  gpa: number;
  /** Footer table entries by lower-case GUID string (empty when the image has no footer table). */
  table: ReadonlyMap<string, Buffer>;
  /** SEV metadata sections in table order, or null when the image has no SEV metadata at all. */
  sevMetadata: SevMetadataSection[] | null;
  /** SEV-ES AP reset EIP (SEV_ES_RESET_BLOCK), or null when absent. */
  resetEip: number | null;
  /** GPA of the kernel/initrd/cmdline hashes table (SEV_HASH_TABLE_RV), or null when absent or 0. */
  hashTableGpa: number | null;
}

const FOOTER_ENTRY_HEADER = 18; // u16 size + GUID

/**
 * Parses a firmware (or Coconut SVSM) image. Throws MeasurementInputError(field) on a truncated or
 * malformed image; an image without a footer table or without SEV metadata parses (sevMetadata null)
 * so that legacy SEV can still use it — SNP callers must reject it.
 */
export function parseOvmf(data: Buffer, opts: { field?: string; endAt?: number } = {}): OvmfImage {
  const field = opts.field ?? "ovmf";
  const endAt = opts.endAt ?? FOUR_GIB;
  if (data.length < PAGE_SIZE)
    throw new MeasurementInputError(
      field,
      `image is ${data.length} bytes, too short for a firmware image (truncated?)`,
    );
  if (data.length % PAGE_SIZE !== 0)
    throw new MeasurementInputError(field, `image size ${data.length} is not a multiple of 4 KiB (truncated?)`);
  if (data.length > endAt)
    throw new MeasurementInputError(
      field,
      `image of ${data.length} bytes does not fit below GPA 0x${endAt.toString(16)}`,
    );
  const table = parseFooterTable(data, field);
  const gpa = endAt - data.length;
  const sevMetadata = parseSevMetadata(data, table, field, { start: gpa, end: endAt });
  const resetEip = u32Entry(table, OVMF_GUIDS.sevEsResetBlock, field, "SEV_ES_RESET_BLOCK");
  const hashGpa = u32Entry(table, OVMF_GUIDS.sevHashTable, field, "SEV_HASH_TABLE_RV");
  return { data, gpa, table, sevMetadata, resetEip, hashTableGpa: hashGpa ? hashGpa : null };
}

function u32Entry(table: ReadonlyMap<string, Buffer>, guid: string, field: string, name: string): number | null {
  const e = table.get(guid);
  if (e === undefined) return null;
  if (e.length < 4)
    throw new MeasurementInputError(field, `footer table entry ${name} is ${e.length} bytes, expected at least 4`);
  return e.readUInt32LE(0);
}

// The table ends 32 bytes before the end of the image; entries are [data][u16 size][GUID], read backwards,
// `size` counting the 18-byte header.
function parseFooterTable(data: Buffer, field: string): Map<string, Buffer> {
  const table = new Map<string, Buffer>();
  const footerOff = data.length - 32 - FOOTER_ENTRY_HEADER;
  if (!data.subarray(footerOff + 2, footerOff + FOOTER_ENTRY_HEADER).equals(FOOTER_GUID)) return table;
  const tableSize = data.readUInt16LE(footerOff) - FOOTER_ENTRY_HEADER;
  if (tableSize < 0) return table;
  if (tableSize > footerOff)
    throw new MeasurementInputError(field, `footer table size ${tableSize} runs past the start of the image`);
  let rest = data.subarray(footerOff - tableSize, footerOff);
  while (rest.length >= FOOTER_ENTRY_HEADER) {
    const hdr = rest.length - FOOTER_ENTRY_HEADER;
    const size = rest.readUInt16LE(hdr);
    if (size < FOOTER_ENTRY_HEADER)
      throw new MeasurementInputError(field, `footer table entry has invalid size ${size}`);
    if (size > rest.length)
      throw new MeasurementInputError(field, `footer table entry of ${size} bytes overruns the table`);
    table.set(
      guidFromBytesLe(rest.subarray(hdr + 2, hdr + FOOTER_ENTRY_HEADER)),
      rest.subarray(rest.length - size, hdr),
    );
    rest = rest.subarray(0, rest.length - size);
  }
  return table;
}
const FOOTER_GUID = guidBytesLe(OVMF_GUIDS.footer);

const ASEV_HEADER = 16; // "ASEV", u32 size, u32 version, u32 num_items
const ASEV_ITEM = 12; // u32 gpa, u32 size, u32 type

function parseSevMetadata(
  data: Buffer,
  table: ReadonlyMap<string, Buffer>,
  field: string,
  image: { start: number; end: number },
): SevMetadataSection[] | null {
  const offsetFromEnd = u32Entry(table, OVMF_GUIDS.sevMetadata, field, "OVMF_SEV_METADATA");
  if (offsetFromEnd === null) return null;
  const start = data.length - offsetFromEnd;
  if (offsetFromEnd > data.length || start + ASEV_HEADER > data.length) {
    throw new MeasurementInputError(
      field,
      `SEV metadata offset 0x${offsetFromEnd.toString(16)} points outside the image`,
    );
  }
  if (data.toString("latin1", start, start + 4) !== "ASEV")
    throw new MeasurementInputError(field, "SEV metadata has a wrong signature (expected 'ASEV')");
  const size = data.readUInt32LE(start + 4);
  const version = data.readUInt32LE(start + 8);
  const count = data.readUInt32LE(start + 12);
  if (version !== 1)
    throw new MeasurementInputError(field, `SEV metadata version ${version} is not supported (expected 1)`);
  if (size < ASEV_HEADER + count * ASEV_ITEM || start + size > data.length) {
    throw new MeasurementInputError(
      field,
      `SEV metadata header (size ${size}, ${count} items) is inconsistent or truncated`,
    );
  }
  const sections: SevMetadataSection[] = [];
  for (let i = 0; i < count; i++) {
    const o = start + ASEV_HEADER + i * ASEV_ITEM;
    sections.push({ gpa: data.readUInt32LE(o), size: data.readUInt32LE(o + 4), type: data.readUInt32LE(o + 8) });
  }
  validateSections(sections, field, image);
  return sections;
}

/**
 * Rejects sections the hypervisor could not launch: unknown types (the reference tool rejects them too;
 * QEMU would silently treat them as ZERO), pages that are not 4 KiB aligned, and ranges that overlap each
 * other or `reserved` (the image itself) — KVM populates each guest page at most once, so such a launch fails.
 */
export function validateSections(
  sections: readonly SevMetadataSection[],
  field: string,
  reserved?: { start: number; end: number },
): void {
  const ranges: Array<{ start: number; end: number; i: number }> = [];
  sections.forEach((s, i) => {
    const where = `SEV metadata section ${i}`;
    if (!KNOWN_SECTION_TYPES.has(s.type)) throw new MeasurementInputError(field, `${where} has unknown type ${s.type}`);
    if (s.gpa % PAGE_SIZE !== 0)
      throw new MeasurementInputError(field, `${where} GPA 0x${s.gpa.toString(16)} is not 4 KiB aligned`);
    if (sectionIsSized(s) && (s.size === 0 || s.size % PAGE_SIZE !== 0))
      throw new MeasurementInputError(
        field,
        `${where} size 0x${s.size.toString(16)} is not a positive multiple of 4 KiB`,
      );
    if (!sectionIsSized(s) && s.size !== PAGE_SIZE)
      throw new MeasurementInputError(
        field,
        `${where} (SECRETS/CPUID) has size 0x${s.size.toString(16)}; only one-page sections are supported`,
      );
    const end = s.gpa + sectionLength(s);
    if (end > FOUR_GIB) throw new MeasurementInputError(field, `${where} extends past 4 GiB`);
    if (reserved && s.gpa < reserved.end && end > reserved.start)
      throw new MeasurementInputError(field, `${where} overlaps the image itself`);
    ranges.push({ start: s.gpa, end, i });
  });
  ranges.sort((a, b) => a.start - b.start);
  for (let k = 1; k < ranges.length; k++) {
    if (ranges[k].start < ranges[k - 1].end)
      throw new MeasurementInputError(field, `SEV metadata sections ${ranges[k - 1].i} and ${ranges[k].i} overlap`);
  }
}

// SECRETS and CPUID are measured as one page at their GPA (the reference tool ignores their size field;
// QEMU passes the size to KVM). Every known firmware uses exactly one page, and other sizes are rejected
// above rather than guessed.
function sectionIsSized(s: SevMetadataSection): boolean {
  return (
    s.type === SectionType.SNP_SEC_MEM || s.type === SectionType.SVSM_CAA || s.type === SectionType.SNP_KERNEL_HASHES
  );
}
function sectionLength(s: SevMetadataSection): number {
  return sectionIsSized(s) ? s.size : PAGE_SIZE;
}

/** Reset EIP of a Coconut SVSM image: SVSM_INFO entry offset + the image's GPA. */
export function svsmEntryEip(svsm: OvmfImage, field = "svsm"): number {
  const off = u32Entry(svsm.table, OVMF_GUIDS.svsmInfo, field, "SVSM_INFO");
  if (off === null)
    throw new MeasurementInputError(
      field,
      "image has no SVSM_INFO entry in its footer table (not a Coconut SVSM image?)",
    );
  return svsm.gpa + off;
}
