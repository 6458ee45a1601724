// Reads one file out of a FAT32 filesystem image (the cloud disk's EFI system partition), so the boot-chain
// prediction can take the UKI from the disk the VM boots rather than from a file beside it. Only what an ESP
// written by mkfs.fat + mcopy needs: FAT32, 8.3 short names (long-name entries are skipped), no fragmentation
// limits. Strict: cluster numbers out of range, loops and files beyond their chain are errors.

export class FatError extends Error {
  override name = "FatError";
}

interface Fat32 {
  img: Buffer;
  bytesPerSector: number;
  clusterBytes: number;
  fatOffset: number;
  dataOffset: number;
  clusters: number;
  rootCluster: number;
}

function open(img: Buffer): Fat32 {
  if (img.length < 512 || img.readUInt16LE(510) !== 0xaa55) throw new FatError("no boot sector signature");
  const bytesPerSector = img.readUInt16LE(11);
  const sectorsPerCluster = img[13];
  const reserved = img.readUInt16LE(14);
  const fats = img[16];
  const rootEntries = img.readUInt16LE(17);
  const total = img.readUInt16LE(19) || img.readUInt32LE(32);
  const fatSectors = img.readUInt16LE(22) || img.readUInt32LE(36);
  if (![512, 1024, 2048, 4096].includes(bytesPerSector) || sectorsPerCluster === 0 || fats === 0)
    throw new FatError("not a FAT boot sector");
  if (rootEntries !== 0 || img.readUInt16LE(22) !== 0) throw new FatError("not FAT32 (the ESP is written as FAT32)");
  const dataSector = reserved + fats * fatSectors;
  const clusters = Math.floor((total - dataSector) / sectorsPerCluster);
  if (clusters < 65525) throw new FatError(`${clusters} clusters: FAT12/16, not FAT32`);
  if (total * bytesPerSector > img.length) throw new FatError("filesystem larger than the image (truncated?)");
  return {
    img,
    bytesPerSector,
    clusterBytes: sectorsPerCluster * bytesPerSector,
    fatOffset: reserved * bytesPerSector,
    dataOffset: dataSector * bytesPerSector,
    clusters,
    rootCluster: img.readUInt32LE(44),
  };
}

/** The cluster chain starting at `first`, as one buffer. */
function chain(f: Fat32, first: number, what: string): Buffer {
  const parts: Buffer[] = [];
  const seen = new Set<number>();
  for (let c = first; ;) {
    if (c < 2 || c >= f.clusters + 2) throw new FatError(`${what}: cluster ${c} out of range`);
    if (seen.has(c)) throw new FatError(`${what}: cluster chain loops`);
    seen.add(c);
    const o = f.dataOffset + (c - 2) * f.clusterBytes;
    parts.push(f.img.subarray(o, o + f.clusterBytes));
    const next = f.img.readUInt32LE(f.fatOffset + c * 4) & 0x0fffffff;
    if (next >= 0x0ffffff8) break;
    c = next;
  }
  return Buffer.concat(parts);
}

/** The 11-byte 8.3 directory name of `name` (upper case), e.g. BOOTX64.EFI → "BOOTX64 EFI". */
function shortName(name: string): string {
  const [base, ext = "", ...rest] = name.toUpperCase().split(".");
  if (rest.length || base.length === 0 || base.length > 8 || ext.length > 3)
    throw new FatError(`'${name}' is not an 8.3 name`);
  return base.padEnd(8) + ext.padEnd(3);
}

/** Reads `/A/B/FILE.EXT` (8.3 components, case-insensitive) from a FAT32 image. */
export function readFatFile(img: Buffer, filePath: string): Buffer {
  const f = open(img);
  const parts = filePath.split(/[\\/]/).filter(Boolean);
  let dir = chain(f, f.rootCluster, "root directory");
  for (const [i, part] of parts.entries()) {
    const want = shortName(part);
    const last = i === parts.length - 1;
    let found: { cluster: number; size: number; isDir: boolean } | undefined;
    for (let o = 0; o + 32 <= dir.length; o += 32) {
      const first = dir[o];
      if (first === 0) break;
      const attr = dir[o + 11];
      if (first === 0xe5 || attr === 0x0f || attr & 0x08) continue; // deleted, long-name, volume label
      if (dir.toString("latin1", o, o + 11) !== want) continue;
      found = {
        cluster: (dir.readUInt16LE(o + 20) << 16) | dir.readUInt16LE(o + 26),
        size: dir.readUInt32LE(o + 28),
        isDir: (attr & 0x10) !== 0,
      };
      break;
    }
    if (!found) throw new FatError(`${parts.slice(0, i + 1).join("/")}: not found`);
    if (last) {
      if (found.isDir) throw new FatError(`${filePath}: is a directory`);
      if (found.size === 0) return Buffer.alloc(0);
      const data = chain(f, found.cluster, filePath);
      if (data.length < found.size) throw new FatError(`${filePath}: size beyond its cluster chain`);
      return Buffer.from(data.subarray(0, found.size));
    }
    if (!found.isDir) throw new FatError(`${parts.slice(0, i + 1).join("/")}: not a directory`);
    dir = chain(f, found.cluster, parts.slice(0, i + 1).join("/"));
  }
  throw new FatError("empty path");
}
