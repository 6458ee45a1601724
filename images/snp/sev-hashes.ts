// The kernel/initrd/cmdline hashes table QEMU places in guest memory for measured direct boot
// (QEMU target/i386/sev.c SevHashTable; OVMF verifies the loaded files against it).
import { hash } from "node:crypto";
import { guidBytesLe } from "./guid.js";

export interface KernelInputs {
  kernel: Uint8Array;
  /** Absent = no initrd: QEMU hashes the empty string. */
  initrd?: Uint8Array;
  /** Kernel command line; absent or empty = a lone NUL. */
  append?: string;
}

const TABLE_GUID = guidBytesLe("9438d606-4f22-4cc9-b479-a793d411fd21");
const CMDLINE_GUID = guidBytesLe("97d02dd8-bd20-4c94-aa78-e7714d36ab2a");
const INITRD_GUID = guidBytesLe("44baf731-3a2f-4bd7-9af1-41e29169781d");
const KERNEL_GUID = guidBytesLe("4de79437-abd2-427f-b835-d5b172d2045b");

const ENTRY_SIZE = 16 + 2 + 32;
const TABLE_SIZE = 16 + 2 + 3 * ENTRY_SIZE; // 168
/** The table padded to a multiple of 16 bytes, as QEMU copies it (176). */
export const PADDED_TABLE_SIZE = (TABLE_SIZE + 15) & ~15;

/**
 * The padded table. The kernel hash covers the whole file passed to -kernel: with SEV, QEMU does not
 * patch the bzImage setup header, so setup + kernel is exactly the file.
 */
export function sevHashesTable(k: KernelInputs): Buffer {
  const sha256 = (b: Uint8Array) => hash("sha256", b, "buffer");
  const cmdline = Buffer.concat([Buffer.from(k.append ?? "", "utf8"), Buffer.alloc(1)]);
  const t = Buffer.alloc(PADDED_TABLE_SIZE);
  TABLE_GUID.copy(t, 0);
  t.writeUInt16LE(TABLE_SIZE, 16);
  let off = 18;
  for (const [guid, digest] of [
    [CMDLINE_GUID, sha256(cmdline)],
    [INITRD_GUID, sha256(k.initrd ?? new Uint8Array())],
    [KERNEL_GUID, sha256(k.kernel)],
  ] as const) {
    guid.copy(t, off);
    t.writeUInt16LE(ENTRY_SIZE, off + 16);
    digest.copy(t, off + 18);
    off += ENTRY_SIZE;
  }
  return t;
}
