// MRTD: the TDX module's build-time measurement. One running SHA-384 over fixed 128-byte records the
// VMM's SEAMCALLs append — TDH.MEM.PAGE.ADD per page, TDH.MR.EXTEND per 256-byte chunk followed by the
// chunk — in call order. The call order differs between KVM/QEMU generations (docs/measurement.md §TDX).
import { createHash, type Hash } from "node:crypto";
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

function pageAddRecord(gpa: number): Buffer {
  const b = Buffer.alloc(RECORD);
  b.write("MEM.PAGE.ADD", 0, "latin1");
  b.writeBigUInt64LE(BigInt(gpa), 16);
  return b;
}

// All 16 MR.EXTEND records of one page with their chunks, as one buffer (one hash update per page).
function pageExtendRecords(gpa: number, page: Buffer): Buffer {
  const out = Buffer.alloc((PAGE / CHUNK) * (RECORD + CHUNK));
  for (let c = 0, at = 0; c < PAGE / CHUNK; c++, at += RECORD + CHUNK) {
    out.write("MR.EXTEND", at, "latin1");
    out.writeBigUInt64LE(BigInt(gpa + c * CHUNK), at + 16);
    page.copy(out, at + RECORD, c * CHUNK, (c + 1) * CHUNK);
  }
  return out;
}

export function computeMrtd(fw: Buffer, meta: TdvfMetadata, order: MrtdOrder = "single"): Buffer {
  const h = createHash("sha384");
  for (const s of meta.sections) {
    const pages = s.memoryDataSize / PAGE;
    const add = (s.attributes & TdvfAttribute.PAGE_AUG) === 0;
    const extend = (s.attributes & TdvfAttribute.MR_EXTEND) !== 0;
    const data = extend ? sectionBytes(fw, s) : null;
    const extendPage = (h: Hash, p: number) => h.update(pageExtendRecords(s.memoryAddress + p * PAGE, data!.subarray(p * PAGE, (p + 1) * PAGE)));
    if (order === "single") {
      for (let p = 0; p < pages; p++) {
        if (add) h.update(pageAddRecord(s.memoryAddress + p * PAGE));
        if (extend) extendPage(h, p);
      }
    } else {
      if (add) for (let p = 0; p < pages; p++) h.update(pageAddRecord(s.memoryAddress + p * PAGE));
      if (extend) for (let p = 0; p < pages; p++) extendPage(h, p);
    }
  }
  return h.digest();
}
