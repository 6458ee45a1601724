// A deterministic initramfs archive: cpio "newc" with sorted names, owner 0:0, mtime 0, fixed inode
// numbers and no compression, so the same tree gives the same bytes on every machine (the kernel
// unpacks an uncompressed newc archive without needing any decompressor built in).
import { lstat, readFile, readdir, readlink } from "node:fs/promises";
import path from "node:path";

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

function entry(name: string, mode: number, data: Buffer, ino: number): Buffer {
  const nameBytes = Buffer.from(name + "\0", "utf8");
  const fields = [ino, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, nameBytes.length, 0];
  const header = Buffer.from("070701" + fields.map((v) => v.toString(16).toUpperCase().padStart(8, "0")).join(""));
  const head = Buffer.concat([header, nameBytes]);
  return Buffer.concat([head, Buffer.alloc(-head.length & 3), data, Buffer.alloc(-data.length & 3)]);
}

async function walk(root: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(path.join(root, rel))).sort()) {
    const p = rel ? `${rel}/${name}` : name;
    out.push(p);
    if ((await lstat(path.join(root, p))).isDirectory()) out.push(...(await walk(root, p)));
  }
  return out;
}

/** The newc archive of everything under `root` (directories 0755, files keep their permission bits). */
export async function newcArchive(root: string): Promise<Buffer> {
  const names = (await walk(root)).sort();
  const parts: Buffer[] = [];
  let ino = 1;
  for (const name of names) {
    const full = path.join(root, name);
    const st = await lstat(full);
    if (st.isSymbolicLink()) parts.push(entry(name, S_IFLNK | 0o777, Buffer.from(await readlink(full)), ino++));
    else if (st.isDirectory()) parts.push(entry(name, S_IFDIR | 0o755, Buffer.alloc(0), ino++));
    else if (st.isFile()) parts.push(entry(name, S_IFREG | (st.mode & 0o777), await readFile(full), ino++));
    else throw new Error(`${full}: only files, directories and symlinks go into the initramfs`);
  }
  parts.push(entry("TRAILER!!!", 0, Buffer.alloc(0), 0));
  const blob = Buffer.concat(parts);
  return Buffer.concat([blob, Buffer.alloc(-blob.length & 511)]);
}
