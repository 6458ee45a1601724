// MRTD: the TDX module's build-time measurement. One running SHA-384 over fixed 128-byte records the
// VMM's SEAMCALLs append — TDH.MEM.PAGE.ADD per page, TDH.MR.EXTEND per 256-byte chunk followed by the
// chunk — in call order. The call order differs between KVM/QEMU generations (docs/measurement.md §TDX).
import { createHash } from "node:crypto";
import { PAGE, TdvfAttribute, sectionBytes, type TdvfMetadata } from "./tdvf.js";

/**
 * "single": per page, PAGE.ADD then its 16 MR.EXTENDs (upstream KVM ≥ 6.16 + QEMU ≥ 10.1, GCE, td-shim).
 * "two-pass": per section, all PAGE.ADDs, then all MR.EXTENDs (KVM TDX patch v19 era: intel qemu-tdx
 * 8.2.50, Canonical's qemu 8.2.2+tdx stack).
 */
export type MrtdOrder = "single" | "two-pass";
export const MRTD_ORDERS: readonly MrtdOrder[] = ["single", "two-pass"];

const CHUNK = 256;
const RECORD = 128;
const EXTENDS_PER_PAGE = PAGE / CHUNK;
const PAGE_ADD = Buffer.from("MEM.PAGE.ADD", "latin1");
const MR_EXTEND = Buffer.from("MR.EXTEND", "latin1");

// GPAs stay below 2^53: two u32 writes are cheaper than a BigInt conversion per record.
function writeGpa(out: Buffer, at: number, gpa: number): void {
  out.writeUInt32LE(gpa % 0x1_0000_0000, at);
  out.writeUInt32LE(Math.floor(gpa / 0x1_0000_0000), at + 4);
}

/**
 * The SEAMCALL record stream is assembled into one buffer and hashed once: the same bytes as one
 * update per record, at a fraction of the per-call overhead.
 */
export function computeMrtd(fw: Buffer, meta: TdvfMetadata, order: MrtdOrder = "single"): Buffer {
  let total = 0;
  for (const s of meta.sections) {
    const pages = s.memoryDataSize / PAGE;
    if ((s.attributes & TdvfAttribute.PAGE_AUG) === 0) total += pages * RECORD;
    if ((s.attributes & TdvfAttribute.MR_EXTEND) !== 0) total += pages * EXTENDS_PER_PAGE * (RECORD + CHUNK);
  }
  const out = Buffer.alloc(total); // zero-filled: record padding
  let at = 0;
  const addPage = (gpa: number) => {
    PAGE_ADD.copy(out, at);
    writeGpa(out, at + 16, gpa);
    at += RECORD;
  };
  const extendPage = (gpa: number, data: Buffer, offset: number) => {
    for (let c = 0; c < EXTENDS_PER_PAGE; c++) {
      MR_EXTEND.copy(out, at);
      writeGpa(out, at + 16, gpa + c * CHUNK);
      data.copy(out, at + RECORD, offset + c * CHUNK, offset + (c + 1) * CHUNK);
      at += RECORD + CHUNK;
    }
  };
  for (const s of meta.sections) {
    const pages = s.memoryDataSize / PAGE;
    const add = (s.attributes & TdvfAttribute.PAGE_AUG) === 0;
    const extend = (s.attributes & TdvfAttribute.MR_EXTEND) !== 0;
    const data = extend ? sectionBytes(fw, s) : Buffer.alloc(0);
    if (order === "single") {
      for (let p = 0; p < pages; p++) {
        if (add) addPage(s.memoryAddress + p * PAGE);
        if (extend) extendPage(s.memoryAddress + p * PAGE, data, p * PAGE);
      }
    } else {
      if (add) for (let p = 0; p < pages; p++) addPage(s.memoryAddress + p * PAGE);
      if (extend) for (let p = 0; p < pages; p++) extendPage(s.memoryAddress + p * PAGE, data, p * PAGE);
    }
  }
  return createHash("sha384").update(out).digest();
}
