// TDX measurement performance: MRTD of Debian's 2 MiB OVMF (both orders) vs the floor — one SHA-384 over
// the bytes the TDX module hashes (1.5× the boot firmware volume plus 128 bytes per page added) — and
// the full MRTD + RTMR[0..2] with a real kernel/initrd vs SHA-384 over firmware + kernel + initrd.
import { hash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { table, timeit } from "./lib.ts";
import { computeMrtd, measureTdx, parseTdvf } from "../dist/images/tdx/index.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const shared = process.env.BK_SHARED_DIR ?? path.resolve(root, "../shared");
const ovmfPath = [path.join(shared, "vectors/debian-bookworm-ovmf/OVMF.fd"), "/usr/share/ovmf/OVMF.fd"].find((p) =>
  existsSync(p),
);
if (!ovmfPath) {
  console.log("skipped: Debian OVMF.fd not found (../shared/vectors or the `ovmf` package)");
  process.exit(0);
}
const fw = readFileSync(ovmfPath);
const meta = parseTdvf(fw);
// The byte stream MRTD hashes: 128 B per PAGE.ADD, 128 + 256 B per MR.EXTEND chunk.
let streamBytes = 0;
for (const s of meta.sections) {
  const pages = s.memoryDataSize / 4096;
  if ((s.attributes & 2) === 0) streamBytes += pages * 128;
  if ((s.attributes & 1) !== 0) streamBytes += pages * 16 * 384;
}
const stream = Buffer.alloc(streamBytes, 0x5a);
const rows: Array<Record<string, string | number>> = [];

const floor = await timeit(() => hash("sha384", stream, "buffer"), 1500, 30);
for (const order of ["single", "two-pass"] as const) {
  const t = await timeit(() => computeMrtd(fw, parseTdvf(fw), order), 1500, 30);
  rows.push({
    case: `MRTD ${order}, 2 MiB OVMF (parse + hash) vs SHA-384 of the same stream`,
    "ours ms": t.medianMs,
    "floor ms": floor.medianMs,
    ratio: t.medianMs / floor.medianMs,
    target: "<= 2",
  });
}

const kernelPath = path.join(root, ".bk/boot/vmlinuz");
const initrdPath = path.join(root, ".bk/boot/initrd.img");
if (existsSync(kernelPath) && existsSync(initrdPath)) {
  const kernel = readFileSync(kernelPath);
  const initrd = readFileSync(initrdPath);
  const acpi = { tableLoader: Buffer.alloc(4096), rsdp: Buffer.alloc(36), tables: Buffer.alloc(128 * 1024) };
  const all = Buffer.concat([stream, kernel, initrd, acpi.tables]);
  const floorAll = await timeit(() => hash("sha384", all, "buffer"), 1500, 20);
  const full = await timeit(
    () => measureTdx({ firmware: fw, kernel, initrd, cmdline: "console=ttyS0", memory: 4 * 1024 ** 3, acpi }),
    1500,
    20,
  );
  rows.push({
    case: "MRTD + RTMR[0..2], 14 MiB kernel + 2 MiB initrd vs SHA-384 of all inputs",
    "ours ms": full.medianMs,
    "floor ms": floorAll.medianMs,
    ratio: full.medianMs / floorAll.medianMs,
    target: "<= 2",
  });
} else {
  console.log("RTMR case skipped: run scripts/fetch-boot-inputs.sh for .bk/boot/{vmlinuz,initrd.img}");
}
table(rows);
