// PE/COFF images (EFI applications: the Linux EFI-stub kernel, a UKI), read once for every engine that measures
// them: the headers and section table (pe/coff spec "Section Table"), a section's contents as loaded, and the
// Authenticode digest firmware measures a loaded image by. Callers say how a malformed image is reported
// (`fail` turns the reason into their error type, naming their field).
import { createHash } from "node:crypto";

/** Builds the caller's error for a malformed image from the reason, e.g. "no MZ header". */
export type PeFail = (why: string) => Error;

export interface PeSection {
  name: string;
  virtualSize: number;
  rawSize: number;
  rawPointer: number;
}

export interface PeImage {
  /** File offset of the optional header and its size (from the COFF header). */
  optionalHeader: number;
  optionalSize: number;
  /** Sections in table order (names up to 8 bytes; long names via the string table are not valid in images). */
  sections: PeSection[];
}

/** Reads the DOS, PE and COFF headers and the section table; every section's raw data must lie in the file. */
export function parsePe(img: Buffer, fail: PeFail): PeImage {
  if (img.length < 0x40 || img.toString("latin1", 0, 2) !== "MZ") throw fail("no MZ header");
  const pe = img.readUInt32LE(0x3c);
  if (pe + 24 > img.length || img.toString("latin1", pe, pe + 4) !== "PE\0\0") throw fail("no PE signature");
  const coff = pe + 4;
  const count = img.readUInt16LE(coff + 2);
  const optionalSize = img.readUInt16LE(coff + 16);
  const optionalHeader = coff + 20;
  if (optionalHeader + optionalSize > img.length) throw fail("optional header beyond the file (truncated?)");
  const table = optionalHeader + optionalSize;
  if (table + count * 40 > img.length) throw fail("section table beyond the file (truncated?)");
  const sections: PeSection[] = [];
  for (let i = 0; i < count; i++) {
    const s = table + i * 40;
    const raw = img.subarray(s, s + 8);
    const end = raw.indexOf(0);
    const name = raw.toString("latin1", 0, end < 0 ? 8 : end);
    const section = {
      name,
      virtualSize: img.readUInt32LE(s + 8),
      rawSize: img.readUInt32LE(s + 16),
      rawPointer: img.readUInt32LE(s + 20),
    };
    if (section.rawSize > 0 && section.rawPointer + section.rawSize > img.length)
      throw fail(`section ${i} (${name}) raw data beyond the file (truncated?)`);
    sections.push(section);
  }
  return { optionalHeader, optionalSize, sections };
}

/** A section's contents as the loaded image has them in memory (VirtualSize bytes, zero-filled or cut). */
export function sectionContents(img: Buffer, s: PeSection): Buffer {
  const size = s.virtualSize || s.rawSize;
  const out = Buffer.alloc(size);
  img.copy(out, 0, s.rawPointer, s.rawPointer + Math.min(size, s.rawSize));
  return out;
}

const SECURITY_DIR = 4;

/**
 * The Authenticode digest of an image, computed the way edk2's measured boot hashes an image it loads: headers
 * without CheckSum and the certificate-table directory entry, section bodies in file order, then trailing data
 * minus the certificate table. The final zero padding to a multiple of 8 follows dstack-mr (a no-op for
 * 8-byte-aligned kernels) — for TDVF's RTMR measurement of the kernel; see efiImageDigest for PCR 4.
 */
export function authenticodeDigest(img: Buffer, hash: "sha256" | "sha384" | "sha512", fail: PeFail): Buffer {
  return digest(img, hash, fail, true);
}

/**
 * The digest UEFI firmware extends into PCR 4 (EV_EFI_BOOT_SERVICES_APPLICATION) when it loads a PE image
 * from a file or a buffer (edk2 DxeTpm2MeasureBootLib → HashPeImage): the same Authenticode hash over the
 * image's exact bytes, without padding. Seen on a real OVMF boot of an odd-sized UKI
 * (test/images/guest/cloud-disk-boot.test.ts), where the padded form differs.
 */
export function efiImageDigest(img: Buffer, hash: "sha256" | "sha384" | "sha512", fail: PeFail): Buffer {
  return digest(img, hash, fail, false);
}

function digest(img: Buffer, hash: "sha256" | "sha384" | "sha512", fail: PeFail, pad8: boolean): Buffer {
  const { optionalHeader: opt, optionalSize, sections } = parsePe(img, fail);
  const magic = optionalSize >= 2 ? img.readUInt16LE(opt) : 0;
  if (magic !== 0x10b && magic !== 0x20b) throw fail(`optional header magic 0x${magic.toString(16)}`);
  const dirs = opt + (magic === 0x20b ? 112 : 96);
  if (dirs > opt + optionalSize) throw fail("optional header too short for its data directories");
  const rvaCount = img.readUInt32LE(dirs - 4);
  const sizeOfHeaders = img.readUInt32LE(opt + 60);
  if (sizeOfHeaders > img.length || sizeOfHeaders < opt + optionalSize) throw fail("SizeOfHeaders out of range");
  const checksum = opt + 64;

  const h = createHash(hash);
  h.update(img.subarray(0, checksum));
  let certSize = 0;
  if (rvaCount > SECURITY_DIR) {
    const cert = dirs + SECURITY_DIR * 8;
    h.update(img.subarray(checksum + 4, cert));
    h.update(img.subarray(cert + 8, sizeOfHeaders));
    certSize = img.readUInt32LE(cert + 4);
  } else {
    h.update(img.subarray(checksum + 4, sizeOfHeaders));
  }

  const bodies = sections.filter((s) => s.rawSize > 0).sort((a, b) => a.rawPointer - b.rawPointer);
  let hashed = sizeOfHeaders;
  for (const s of bodies) {
    h.update(img.subarray(s.rawPointer, s.rawPointer + s.rawSize));
    hashed += s.rawSize;
  }
  if (img.length > hashed + certSize) h.update(img.subarray(hashed, img.length - certSize));
  if (pad8 && img.length % 8 !== 0) h.update(Buffer.alloc(8 - (img.length % 8)));
  return h.digest();
}
