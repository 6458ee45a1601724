// The Compute Engine image import format: a gzip-compressed tar archive holding exactly one file, `disk.raw` (the raw
// disk), in GNU ("oldgnu") tar format — what `tar --format=oldgnu -czf image.tar.gz disk.raw` makes and what
// compute.images.insert's rawDisk.source reads from Cloud Storage. Written here in userspace and deterministically
// (owner 0, mode 0644, mtime = the image's SOURCE_DATE_EPOCH; Node's gzip header carries no time or name), so the
// same disk gives the same archive bytes and the GcpKitImage's storage object changes only when the disk does.
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, renameSync, rmSync } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip, createGzip } from "node:zlib";

const BLOCK = 512;

/** One oldgnu tar header for a regular file `name` of `size` bytes. */
export function tarHeader(name: string, size: number, mtime: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  if (Buffer.byteLength(name) > 99) throw new Error(`tar: name '${name}' too long`);
  h.write(name, 0, "utf8");
  const octal = (v: number, width: number, off: number) =>
    h.write(v.toString(8).padStart(width - 1, "0") + "\0", off, "latin1");
  octal(0o644, 8, 100);
  octal(0, 8, 108); // uid
  octal(0, 8, 116); // gid
  if (size < 8 ** 11) octal(size, 12, 124);
  else {
    // GNU base-256 for files of 8 GiB and more: high bit of the first byte set, big-endian value.
    h[124] = 0x80;
    h.writeBigUInt64BE(BigInt(size), 124 + 4);
  }
  octal(mtime, 12, 136);
  h.write("0", 156, "latin1"); // regular file
  h.write("ustar  \0", 257, "latin1"); // oldgnu magic + version
  h.fill(0x20, 148, 156); // checksum field counted as spaces
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "latin1");
  return h;
}

/** Writes `out` (via a temporary file, renamed when complete): tar.gz of `disk` as `disk.raw`. */
export async function writeGceImageTarball(disk: string, size: number, out: string, mtime: number): Promise<void> {
  const tmp = `${out}.tmp-${process.pid}`;
  async function* archive() {
    yield tarHeader("disk.raw", size, mtime);
    let n = 0;
    for await (const chunk of createReadStream(disk)) {
      n += (chunk as Buffer).length;
      yield chunk as Buffer;
    }
    if (n !== size) throw new Error(`${disk}: read ${n} bytes, expected ${size}`);
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    // Padding to the block, then the two zero blocks that end the archive.
    yield Buffer.alloc(pad + 2 * BLOCK);
  }
  try {
    await pipeline(Readable.from(archive()), createGzip({ level: 6 }), createWriteStream(tmp));
    renameSync(tmp, out);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * Whether `archive` is exactly what writeGceImageTarball writes for a disk of `size` bytes with SHA-256 `sha256`:
 * one header naming disk.raw with that size (its checksum right), the disk's bytes, then only zeros. A cached archive
 * is reused only when it passes (a changed one would upload another disk than the manifest's).
 */
export async function gceImageTarballHolds(archive: string, size: number, sha256: string): Promise<boolean> {
  const hash = createHash("sha256");
  let pos = 0;
  let header = Buffer.alloc(0);
  let ok = true;
  try {
    for await (const chunk of createReadStream(archive).pipe(createGunzip())) {
      let b = chunk as Buffer;
      if (pos < BLOCK) {
        const need = BLOCK - pos;
        header = Buffer.concat([header, b.subarray(0, need)]);
        pos += Math.min(need, b.length);
        b = b.subarray(need);
        if (pos === BLOCK) {
          const mtime = parseInt(header.toString("latin1", 136, 147), 8);
          if (!header.equals(tarHeader("disk.raw", size, mtime))) return false;
        }
        if (b.length === 0) continue;
      }
      const dataLeft = BLOCK + size - pos;
      if (dataLeft > 0) {
        hash.update(b.subarray(0, dataLeft));
        pos += Math.min(dataLeft, b.length);
        b = b.subarray(dataLeft);
      }
      if (b.length > 0) {
        if (b.some((x) => x !== 0)) ok = false;
        pos += b.length;
      }
    }
  } catch {
    return false;
  }
  const pad = (BLOCK - (size % BLOCK)) % BLOCK;
  return ok && pos === BLOCK + size + pad + 2 * BLOCK && hash.digest("hex") === sha256;
}
