// GUID partition tables (UEFI spec 2.10 §5.3), written and read in userspace so the cloud disk needs no loop
// device, no root and no partitioning tool: a protective MBR, the primary header + 128 entries at LBA 1-33, the
// backup entries + header at the end of the disk. Every GUID is given by the caller (derived from the build's
// inputs), so the same inputs give the same bytes.
import { crc32 } from "node:zlib";
import { guidBytesLe, guidFromBytesLe } from "../snp/guid.js";

export const SECTOR = 512;
const ENTRIES = 128;
const ENTRY_SIZE = 128;
const ENTRY_SECTORS = (ENTRIES * ENTRY_SIZE) / SECTOR; // 32
/** First usable LBA: MBR, header, 32 sectors of entries. */
export const FIRST_USABLE_LBA = 2 + ENTRY_SECTORS;

/** Partition type GUIDs (UEFI spec; UAPI Discoverable Partitions Specification for the x86-64 root + verity). */
export const PARTITION_TYPE = {
  esp: "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
  rootX86_64: "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
  rootVerityX86_64: "2c7357ed-ebd2-46d9-aec2-3d3c8b3a6b4c",
} as const;

/** GPT attribute bit 60: read-only (Discoverable Partitions Specification). */
export const ATTR_READ_ONLY = 1n << 60n;

export interface GptPartition {
  type: string;
  guid: string;
  /** First and last LBA, inclusive. */
  firstLba: number;
  lastLba: number;
  name: string;
  attributes?: bigint;
}

export interface GptLayout {
  diskGuid: string;
  /** Size of the whole disk in sectors. */
  sectors: number;
  partitions: GptPartition[];
}

export class GptError extends Error {
  override name = "GptError";
}

function entryArray(partitions: GptPartition[]): Buffer {
  if (partitions.length > ENTRIES) throw new GptError(`${partitions.length} partitions (at most ${ENTRIES})`);
  const a = Buffer.alloc(ENTRIES * ENTRY_SIZE);
  partitions.forEach((p, i) => {
    const o = i * ENTRY_SIZE;
    guidBytesLe(p.type).copy(a, o);
    guidBytesLe(p.guid).copy(a, o + 16);
    a.writeBigUInt64LE(BigInt(p.firstLba), o + 32);
    a.writeBigUInt64LE(BigInt(p.lastLba), o + 40);
    a.writeBigUInt64LE(p.attributes ?? 0n, o + 48);
    if (p.name.length > 36 || !/^[\x20-\x7e]*$/.test(p.name))
      throw new GptError(`partition name '${p.name}': at most 36 printable ASCII characters`);
    a.write(p.name, o + 56, "utf16le");
  });
  return a;
}

function header(l: GptLayout, entriesCrc: number, primary: boolean): Buffer {
  const last = l.sectors - 1;
  const h = Buffer.alloc(SECTOR);
  h.write("EFI PART", 0, "latin1");
  h.writeUInt32LE(0x00010000, 8);
  h.writeUInt32LE(92, 12);
  h.writeBigUInt64LE(BigInt(primary ? 1 : last), 24);
  h.writeBigUInt64LE(BigInt(primary ? last : 1), 32);
  h.writeBigUInt64LE(BigInt(FIRST_USABLE_LBA), 40);
  h.writeBigUInt64LE(BigInt(last - 1 - ENTRY_SECTORS), 48);
  guidBytesLe(l.diskGuid).copy(h, 56);
  h.writeBigUInt64LE(BigInt(primary ? 2 : last - ENTRY_SECTORS), 72);
  h.writeUInt32LE(ENTRIES, 80);
  h.writeUInt32LE(ENTRY_SIZE, 84);
  h.writeUInt32LE(entriesCrc, 88);
  h.writeUInt32LE(crc32(h.subarray(0, 92)), 16);
  return h;
}

function protectiveMbr(sectors: number): Buffer {
  const m = Buffer.alloc(SECTOR);
  const e = 446;
  m[e + 1] = 0x00; // CHS of LBA 1: head 0, sector 2, cylinder 0
  m[e + 2] = 0x02;
  m[e + 4] = 0xee;
  m.fill(0xff, e + 5, e + 8);
  m.writeUInt32LE(1, e + 8);
  m.writeUInt32LE(Math.min(sectors - 1, 0xffffffff), e + 12);
  m[510] = 0x55;
  m[511] = 0xaa;
  return m;
}

/**
 * The table's bytes: `head` goes at offset 0 (MBR + primary header + entries, FIRST_USABLE_LBA sectors), `tail`
 * at (sectors - 33) * 512 (backup entries + backup header). Partitions must lie in the usable range, in order,
 * without overlapping.
 */
export function encodeGpt(l: GptLayout): { head: Buffer; tail: Buffer } {
  const lastUsable = l.sectors - 2 - ENTRY_SECTORS;
  let prev = FIRST_USABLE_LBA - 1;
  for (const p of l.partitions) {
    if (p.firstLba <= prev || p.lastLba < p.firstLba || p.lastLba > lastUsable)
      throw new GptError(`partition '${p.name}' (LBA ${p.firstLba}-${p.lastLba}) overlaps or leaves the usable range`);
    prev = p.lastLba;
  }
  const entries = entryArray(l.partitions);
  const crc = crc32(entries);
  return {
    head: Buffer.concat([protectiveMbr(l.sectors), header(l, crc, true), entries]),
    tail: Buffer.concat([entries, header(l, crc, false)]),
  };
}

/**
 * Reads the primary GPT from the first FIRST_USABLE_LBA sectors of a disk (strict: signature, revision, sizes,
 * both CRCs). The backup is not read: callers that care about it compare whole-disk digests.
 */
export function decodeGpt(head: Uint8Array): GptLayout {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (b.length < FIRST_USABLE_LBA * SECTOR) throw new GptError("shorter than a GPT's first 34 sectors");
  if (b.readUInt16LE(510) !== 0xaa55 || b[446 + 4] !== 0xee) throw new GptError("no protective MBR");
  const h = b.subarray(SECTOR, 2 * SECTOR);
  if (h.toString("latin1", 0, 8) !== "EFI PART") throw new GptError("no 'EFI PART' header at LBA 1");
  if (h.readUInt32LE(12) !== 92) throw new GptError(`header size ${h.readUInt32LE(12)} (expected 92)`);
  const copy = Buffer.from(h.subarray(0, 92));
  copy.writeUInt32LE(0, 16);
  if (crc32(copy) !== h.readUInt32LE(16)) throw new GptError("header CRC32 mismatch");
  if (h.readBigUInt64LE(72) !== 2n || h.readUInt32LE(80) !== ENTRIES || h.readUInt32LE(84) !== ENTRY_SIZE)
    throw new GptError("entries not at LBA 2 as 128 × 128 bytes");
  const entries = b.subarray(2 * SECTOR, (2 + ENTRY_SECTORS) * SECTOR);
  if (crc32(entries) !== h.readUInt32LE(88)) throw new GptError("partition entry array CRC32 mismatch");
  const partitions: GptPartition[] = [];
  for (let i = 0; i < ENTRIES; i++) {
    const e = entries.subarray(i * ENTRY_SIZE, (i + 1) * ENTRY_SIZE);
    if (e.subarray(0, 16).every((x) => x === 0)) continue;
    const name = e.toString("utf16le", 56, 128).replace(/\0.*$/s, "");
    partitions.push({
      type: guidFromBytesLe(e.subarray(0, 16)),
      guid: guidFromBytesLe(e.subarray(16, 32)),
      firstLba: Number(e.readBigUInt64LE(32)),
      lastLba: Number(e.readBigUInt64LE(40)),
      attributes: e.readBigUInt64LE(48),
      name,
    });
  }
  return {
    diskGuid: guidFromBytesLe(h.subarray(56, 72)),
    sectors: Number(h.readBigUInt64LE(32)) + 1,
    partitions,
  };
}
