// The fixed VHD that Azure takes as a disk image (`image build --cloud azure --format disk`): the raw disk, padded
// to a whole MiB (Azure refuses a virtual size that is not a multiple of 1 MiB), followed by the 512-byte hard disk
// footer of Microsoft's "Virtual Hard Disk Image Format Specification" (v1.0, 2006). A fixed VHD has no other
// structure: the data is the disk, byte for byte, and the footer says so (disk type 2, data offset all ones).
// Hand-written because no maintained npm package writes it; the format is 85 big-endian bytes and a checksum.
// Reproducible: the timestamp comes from SOURCE_DATE_EPOCH and the unique id from the raw disk's digest.
//
// Footer layout (offsets in bytes, big-endian):
//   0 cookie "conectix" · 8 features (0x2: the reserved bit the spec requires) · 12 format version 0x00010000 ·
//   16 data offset (0xFFFFFFFFFFFFFFFF for fixed disks) · 24 timestamp (seconds since 2000-01-01 00:00:00 UTC) ·
//   28 creator application · 32 creator version · 36 creator host OS · 40 original size · 48 current size ·
//   56 geometry (cylinders u16, heads u8, sectors per track u8) · 60 disk type · 64 checksum (one's complement of
//   the byte sum of the footer with this field zero) · 68 unique id (16 bytes) · 84 saved state · 85 zeros.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { copyFile, open, stat } from "node:fs/promises";

export const VHD_FOOTER_SIZE = 512;
export const VHD_COOKIE = "conectix";
export const VHD_DISK_TYPE_FIXED = 2;
/** Seconds between the Unix epoch and the VHD epoch (2000-01-01T00:00:00Z). */
export const VHD_EPOCH_OFFSET = 946_684_800;
/** Four characters identifying the writer (the spec's examples: "vpc ", "vs  "); ours names the kit. */
export const VHD_CREATOR_APP = "bkit";
export const VHD_CREATOR_VERSION = 0x0001_0000;
/** The spec defines "Wi2k" (0x5769326B) and "Mac " only; QEMU and Hyper-V write "Wi2k". */
export const VHD_CREATOR_HOST_OS = "Wi2k";
const MIB = 1 << 20;

export class VhdError extends Error {
  override name = "VhdError";
  constructor(
    readonly field: string,
    reason: string,
  ) {
    super(`VHD footer ${field}: ${reason}`);
  }
}

export interface VhdGeometry {
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
}

export interface VhdFooter {
  features: number;
  formatVersion: number;
  dataOffset: bigint;
  /** Unix seconds (the field holds seconds since 2000-01-01). */
  timestamp: number;
  creatorApplication: string;
  creatorVersion: number;
  creatorHostOs: string;
  originalSize: number;
  currentSize: number;
  geometry: VhdGeometry;
  diskType: number;
  checksum: number;
  /** RFC 4122 text form of the 16 bytes at offset 68. */
  uniqueId: string;
  savedState: number;
}

/**
 * CHS geometry for a disk of `size` bytes: the algorithm of the VHD specification's appendix ("CHS calculation"),
 * integer arithmetic throughout; disks beyond 65535×16×255 sectors get the maximum geometry.
 */
export function vhdGeometry(size: number): VhdGeometry {
  let total = Math.floor(size / 512);
  if (total > 65535 * 16 * 255) total = 65535 * 16 * 255;
  let spt: number;
  let heads: number;
  let cth: number;
  if (total >= 65535 * 16 * 63) {
    spt = 255;
    heads = 16;
    cth = Math.floor(total / spt);
  } else {
    spt = 17;
    cth = Math.floor(total / spt);
    heads = Math.floor((cth + 1023) / 1024);
    if (heads < 4) heads = 4;
    if (cth >= heads * 1024 || heads > 16) {
      spt = 31;
      heads = 16;
      cth = Math.floor(total / spt);
    }
    if (cth >= heads * 1024) {
      spt = 63;
      heads = 16;
      cth = Math.floor(total / spt);
    }
  }
  return { cylinders: Math.floor(cth / heads), heads, sectorsPerTrack: spt };
}

/** One's complement of the sum of the footer's bytes, the checksum field (64..67) counted as zero. */
export function vhdChecksum(footer: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < VHD_FOOTER_SIZE; i++) if (i < 64 || i > 67) sum += footer[i];
  return ~sum >>> 0;
}

/** A version-4-shaped UUID from a digest of the raw disk (deterministic; RFC 4122 variant bits set). */
export function vhdUniqueId(rawSha256Hex: string): string {
  const b = createHash("sha256").update(`buckypaper vhd ${rawSha256Hex}`).digest().subarray(0, 16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function uuidBytes(id: string): Buffer {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id))
    throw new VhdError("uniqueId", `'${id}' is not a UUID`);
  return Buffer.from(id.replace(/-/g, ""), "hex");
}

/** The footer of a fixed VHD whose data (the disk) is `size` bytes, a whole number of MiB. */
export function encodeVhdFooter(o: { size: number; timestamp: number; uniqueId: string }): Buffer {
  if (!Number.isSafeInteger(o.size) || o.size <= 0 || o.size % MIB)
    throw new VhdError(
      "currentSize",
      `${o.size} is not a positive whole number of MiB (Azure requires 1 MiB alignment)`,
    );
  const seconds = o.timestamp - VHD_EPOCH_OFFSET;
  if (!Number.isInteger(o.timestamp) || seconds < 0 || seconds > 0xffff_ffff)
    throw new VhdError("timestamp", `${o.timestamp} is not a Unix time between 2000-01-01 and 2136`);
  const f = Buffer.alloc(VHD_FOOTER_SIZE);
  f.write(VHD_COOKIE, 0, "latin1");
  f.writeUInt32BE(0x2, 8);
  f.writeUInt32BE(0x0001_0000, 12);
  f.writeBigUInt64BE(0xffff_ffff_ffff_ffffn, 16);
  f.writeUInt32BE(seconds, 24);
  f.write(VHD_CREATOR_APP, 28, "latin1");
  f.writeUInt32BE(VHD_CREATOR_VERSION, 32);
  f.write(VHD_CREATOR_HOST_OS, 36, "latin1");
  f.writeBigUInt64BE(BigInt(o.size), 40);
  f.writeBigUInt64BE(BigInt(o.size), 48);
  const g = vhdGeometry(o.size);
  f.writeUInt16BE(g.cylinders, 56);
  f.writeUInt8(g.heads, 58);
  f.writeUInt8(g.sectorsPerTrack, 59);
  f.writeUInt32BE(VHD_DISK_TYPE_FIXED, 60);
  uuidBytes(o.uniqueId).copy(f, 68);
  f.writeUInt8(0, 84);
  f.writeUInt32BE(vhdChecksum(f), 64);
  return f;
}

/** Parses and checks a footer (cookie, checksum, version, reserved bytes); throws VhdError naming the field. */
export function decodeVhdFooter(f: Uint8Array): VhdFooter {
  const b = Buffer.from(f.buffer, f.byteOffset, f.byteLength);
  if (b.length !== VHD_FOOTER_SIZE) throw new VhdError("length", `${b.length} bytes, expected ${VHD_FOOTER_SIZE}`);
  if (b.toString("latin1", 0, 8) !== VHD_COOKIE) throw new VhdError("cookie", `expected '${VHD_COOKIE}'`);
  const checksum = b.readUInt32BE(64);
  const want = vhdChecksum(b);
  if (checksum !== want)
    throw new VhdError("checksum", `0x${checksum.toString(16)}, the footer's bytes sum to 0x${want.toString(16)}`);
  const features = b.readUInt32BE(8);
  if (!(features & 0x2)) throw new VhdError("features", "the reserved bit 0x2 must be set");
  const formatVersion = b.readUInt32BE(12);
  if (formatVersion !== 0x0001_0000) throw new VhdError("formatVersion", `0x${formatVersion.toString(16)}`);
  if (b.subarray(85).some((x) => x !== 0)) throw new VhdError("reserved", "bytes 85..511 must be zero");
  const h = b.toString("hex", 68, 84);
  return {
    features,
    formatVersion,
    dataOffset: b.readBigUInt64BE(16),
    timestamp: b.readUInt32BE(24) + VHD_EPOCH_OFFSET,
    creatorApplication: b.toString("latin1", 28, 32),
    creatorVersion: b.readUInt32BE(32),
    creatorHostOs: b.toString("latin1", 36, 40),
    originalSize: Number(b.readBigUInt64BE(40)),
    currentSize: Number(b.readBigUInt64BE(48)),
    geometry: { cylinders: b.readUInt16BE(56), heads: b[58], sectorsPerTrack: b[59] },
    diskType: b.readUInt32BE(60),
    checksum,
    uniqueId: `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`,
    savedState: b[84],
  };
}

/** A fixed VHD's footer, checked to describe the file it ends: fixed type, data offset all ones, sizes. */
export function checkFixedVhd(footer: Uint8Array, fileSize: number): VhdFooter {
  const v = decodeVhdFooter(footer);
  if (v.diskType !== VHD_DISK_TYPE_FIXED) throw new VhdError("diskType", `${v.diskType}, expected 2 (fixed)`);
  if (v.dataOffset !== 0xffff_ffff_ffff_ffffn) throw new VhdError("dataOffset", "a fixed disk's is all ones");
  if (v.currentSize !== fileSize - VHD_FOOTER_SIZE)
    throw new VhdError(
      "currentSize",
      `${v.currentSize}, but the file holds ${fileSize - VHD_FOOTER_SIZE} bytes of data`,
    );
  return v;
}

export interface FixedVhd {
  sha256: string;
  /** The file's size: the virtual size plus the footer. */
  size: number;
  /** The disk Azure sees (the raw disk padded to a whole MiB). */
  virtualSize: number;
  uniqueId: string;
  /** Unix seconds, as written (SOURCE_DATE_EPOCH). */
  timestamp: number;
}

/**
 * Writes `out`: the raw disk `raw` (SHA-256 `rawSha256`), zero-padded to a whole MiB, then the footer. Timestamp
 * `epoch` (Unix seconds); the unique id comes from the raw disk's digest, so the same disk gives the same VHD.
 */
export async function writeFixedVhd(raw: string, rawSha256: string, out: string, epoch: number): Promise<FixedVhd> {
  const rawSize = (await stat(raw)).size;
  const virtualSize = Math.ceil(rawSize / MIB) * MIB;
  const uniqueId = vhdUniqueId(rawSha256);
  const footer = encodeVhdFooter({ size: virtualSize, timestamp: epoch, uniqueId });
  await copyFile(raw, out);
  const fh = await open(out, "r+");
  try {
    await fh.truncate(virtualSize);
    await fh.write(footer, 0, footer.length, virtualSize);
  } finally {
    await fh.close();
  }
  const h = createHash("sha256");
  for await (const chunk of createReadStream(out, { highWaterMark: 8 * MIB })) h.update(chunk as Buffer);
  return { sha256: h.digest("hex"), size: virtualSize + VHD_FOOTER_SIZE, virtualSize, uniqueId, timestamp: epoch };
}
