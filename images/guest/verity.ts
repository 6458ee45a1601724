// The read-only root image: a squashfs made deterministically (fixed timestamps, sorted entries,
// single writer order) with its dm-verity hash tree appended. The salt and the superblock UUID come from
// the build's input hash, so the same inputs give the same root hash; the root hash goes on the
// measured kernel command line.
import { createHash } from "node:crypto";
import { stat } from "node:fs/promises";
import { run, ToolError } from "./exec.js";

export interface VerityInfo {
  rootHash: string;
  salt: string;
  uuid: string;
  hashAlgorithm: "sha256";
  dataBlockSize: 4096;
  hashBlockSize: 4096;
  dataBlocks: number;
  /** Byte offset of the hash tree (= the squashfs size, 4 KiB aligned). */
  hashOffset: number;
}

export async function makeSquashfs(tree: string, out: string, epoch: number): Promise<void> {
  await run([
    "mksquashfs",
    tree,
    out,
    "-noappend",
    "-comp",
    "zstd",
    "-b",
    "131072",
    "-all-time",
    String(epoch),
    "-mkfs-time",
    String(epoch),
    "-no-progress",
    "-quiet",
  ]);
}

export function veritySalt(inputHash: string): { salt: string; uuid: string } {
  const h = (label: string) => createHash("sha256").update(`buckypaper verity ${label} ${inputHash}`).digest("hex");
  const u = h("uuid");
  // RFC 4122 shape (version 4 bits set) so veritysetup accepts it.
  const uuid = `${u.slice(0, 8)}-${u.slice(8, 12)}-4${u.slice(13, 16)}-8${u.slice(17, 20)}-${u.slice(20, 32)}`;
  return { salt: h("salt"), uuid };
}

/** Appends the hash tree to `image` and returns what opening it needs. */
export async function appendVerity(image: string, inputHash: string): Promise<VerityInfo> {
  const size = (await stat(image)).size;
  if (size % 4096 !== 0) throw new ToolError(`${image}: ${size} bytes is not 4 KiB aligned (mksquashfs pads to 4 KiB)`);
  const { salt, uuid } = veritySalt(inputHash);
  const out = await run([
    "veritysetup",
    "format",
    image,
    image,
    `--hash-offset=${size}`,
    `--data-blocks=${size / 4096}`,
    "--hash=sha256",
    `--salt=${salt}`,
    `--uuid=${uuid}`,
  ]);
  const rootHash = /Root hash:\s*([0-9a-f]{64})/.exec(out)?.[1];
  if (!rootHash) throw new ToolError(`veritysetup format printed no root hash:\n${out}`);
  return {
    rootHash,
    salt,
    uuid,
    hashAlgorithm: "sha256",
    dataBlockSize: 4096,
    hashBlockSize: 4096,
    dataBlocks: size / 4096,
    hashOffset: size,
  };
}
