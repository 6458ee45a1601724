// An independent reader of EC2's uefiData blob (RegisterImage --uefi-data), to check what the kit's AMI enrolls
// without trusting the tool that wrote it: base64 of { u64 magic "AMZNUEFI", u32 CRC32C of the rest, u32 version 0,
// zlib stream (preset dictionary v0) of { u64 count, per variable: u64-length name (UTF-8), u64-length data, GUID
// (UEFI byte order), u32 attributes, and for time-based authenticated ones EFI_TIME + u64-length digest } }, as
// AWS's python-uefivars documents it. The preset dictionary is read from the installed virt-firmware package (the
// only place it is on this machine; it is not copied into the repository).
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { inflateSync } from "node:zlib";

export const AWS_MAGIC = 0x494645554e5a4d41n; // "AMZNUEFI" little-endian
const TIME_BASED_AUTH = 0x20;

export interface AwsUefiVar {
  name: string;
  guid: string;
  attr: number;
  data: Buffer;
  time?: Buffer;
}

let dict: Buffer | undefined;
/** virt-firmware's copy of AWS's zlib dictionary v0 (undefined when the package is not installed). */
export function awsZlibDictionary(): Buffer | undefined {
  if (dict) return dict;
  const r = spawnSync(
    "python3",
    ["-c", "import importlib.resources as r; print(r.files('virt.firmware').joinpath('aws', 'dict.v0'))"],
    { encoding: "utf8" },
  );
  if (r.status !== 0) return undefined;
  dict = readFileSync(r.stdout.trim());
  return dict;
}

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32c(b: Buffer): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC32C_TABLE[(c ^ x) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function guidString(b: Buffer): string {
  const h = (x: Buffer) => x.toString("hex");
  const le = (x: Buffer) => h(Buffer.from(x).reverse());
  return `${le(b.subarray(0, 4))}-${le(b.subarray(4, 6))}-${le(b.subarray(6, 8))}-${h(b.subarray(8, 10))}-${h(b.subarray(10, 16))}`;
}

/** Parses the blob strictly: bad magic, CRC, version or trailing bytes throw. */
export function parseAwsUefiData(blob: string): Map<string, AwsUefiVar> {
  const raw = Buffer.from(blob.trim(), "base64");
  if (raw.toString("base64") !== blob.trim()) throw new Error("not canonical base64");
  if (raw.readBigUInt64LE(0) !== AWS_MAGIC) throw new Error("bad magic");
  if (crc32c(raw.subarray(12)) !== raw.readUInt32LE(8)) throw new Error("CRC32C mismatch");
  if (raw.readUInt32LE(12) !== 0) throw new Error("unknown version");
  const dictionary = awsZlibDictionary();
  if (!dictionary) throw new Error("virt-firmware (the AWS zlib dictionary) is not installed");
  const v = inflateSync(raw.subarray(16), { dictionary });
  let p = 0;
  const u64 = () => {
    const n = Number(v.readBigUInt64LE(p));
    p += 8;
    return n;
  };
  const take = (n: number) => {
    if (p + n > v.length) throw new Error("truncated");
    const b = v.subarray(p, p + n);
    p += n;
    return Buffer.from(b);
  };
  const vars = new Map<string, AwsUefiVar>();
  for (let i = u64(); i > 0; i--) {
    const name = take(u64()).toString("utf8");
    const data = take(u64());
    const guid = guidString(take(16));
    const attr = take(4).readUInt32LE(0);
    const x: AwsUefiVar = { name, guid, attr, data };
    if (attr & TIME_BASED_AUTH) {
      x.time = take(16);
      take(u64()); // digest (empty in what virt-fw-vars writes)
    }
    if (vars.has(name)) throw new Error(`variable ${name} twice`);
    vars.set(name, x);
  }
  if (p !== v.length) throw new Error(`${v.length - p} trailing bytes`);
  return vars;
}
