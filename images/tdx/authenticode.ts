// Authenticode SHA-384 of a PE/COFF image (the Linux EFI-stub bzImage), computed the way edk2's
// measured boot hashes an image it loads: headers without CheckSum and the certificate-table
// directory entry, section bodies in file order, then trailing data minus the certificate table.
// The final zero padding to a multiple of 8 follows dstack-mr (a no-op for 8-byte-aligned kernels).
import { createHash } from "node:crypto";
import { TdxInputError } from "./errors.js";

const SECURITY_DIR = 4;

export function authenticodeSha384(img: Buffer, field = "kernel"): Buffer {
  return authenticodeDigest(img, "sha384", field);
}

/** The same Authenticode hash with another algorithm (SHA-256 for a vTPM's PCR 4 boot-application events). */
export function authenticodeDigest(img: Buffer, hash: "sha256" | "sha384" | "sha512", field = "kernel"): Buffer {
  const bad = (why: string): never => {
    throw new TdxInputError(
      field,
      `not a PE/COFF EFI image (${why}); TDX direct boot needs an EFI-stub kernel (bzImage with CONFIG_EFI_STUB)`,
    );
  };
  if (img.length < 0x40 || img.toString("latin1", 0, 2) !== "MZ") bad("no MZ header");
  const pe = img.readUInt32LE(0x3c);
  if (pe + 24 > img.length || img.toString("latin1", pe, pe + 4) !== "PE\0\0") bad("no PE signature");
  const coff = pe + 4;
  const sectionCount = img.readUInt16LE(coff + 2);
  const optSize = img.readUInt16LE(coff + 16);
  const opt = coff + 20;
  if (opt + optSize > img.length) bad("optional header beyond the file (truncated?)");
  const magic = img.readUInt16LE(opt);
  if (magic !== 0x10b && magic !== 0x20b) bad(`optional header magic 0x${magic.toString(16)}`);
  const dirs = opt + (magic === 0x20b ? 112 : 96);
  const rvaCount = img.readUInt32LE(dirs - 4);
  const sizeOfHeaders = img.readUInt32LE(opt + 60);
  if (sizeOfHeaders > img.length || sizeOfHeaders < opt + optSize) bad("SizeOfHeaders out of range");
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

  const table = opt + optSize;
  if (table + 40 * sectionCount > img.length) bad("section table beyond the file (truncated?)");
  const sections: { ptr: number; size: number }[] = [];
  for (let i = 0; i < sectionCount; i++) {
    const at = table + 40 * i;
    const size = img.readUInt32LE(at + 16);
    const ptr = img.readUInt32LE(at + 20);
    if (size === 0) continue;
    if (ptr + size > img.length) bad(`section ${i} raw data beyond the file (truncated?)`);
    sections.push({ ptr, size });
  }
  sections.sort((a, b) => a.ptr - b.ptr);
  let hashed = sizeOfHeaders;
  for (const s of sections) {
    h.update(img.subarray(s.ptr, s.ptr + s.size));
    hashed += s.size;
  }
  if (img.length > hashed + certSize) h.update(img.subarray(hashed, img.length - certSize));
  if (img.length % 8 !== 0) h.update(Buffer.alloc(8 - (img.length % 8)));
  return h.digest();
}
