// Minimal DER reader for the few ASN.1 structures no library exposes typed: Intel's SGX extension
// in the PCK certificate. Every length is bounds-checked; failures are EvidenceFormatError.
import { EvidenceFormatError } from "../types.js";

export interface Tlv {
  tag: number;
  /** Offset of the value within the buffer the TLV was read from. */
  valueStart: number;
  value: Uint8Array;
  /** Offset just past this TLV. */
  end: number;
}

export function readTlv(buf: Uint8Array, off: number, field = "der"): Tlv {
  if (off + 2 > buf.length) throw new EvidenceFormatError(`${field}: truncated DER header`, field, off);
  const tag = buf[off];
  if ((tag & 0x1f) === 0x1f) throw new EvidenceFormatError(`${field}: multi-byte DER tags are not used here`, field, off);
  let len = buf[off + 1];
  let p = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || p + n > buf.length) throw new EvidenceFormatError(`${field}: bad DER length`, field, off);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p + i];
    p += n;
  }
  if (p + len > buf.length) throw new EvidenceFormatError(`${field}: DER value overruns its container`, field, off);
  return { tag, valueStart: p, value: buf.subarray(p, p + len), end: p + len };
}

/** The TLVs directly inside a constructed value. */
export function children(value: Uint8Array, field = "der"): Tlv[] {
  const out: Tlv[] = [];
  for (let off = 0; off < value.length; ) {
    const t = readTlv(value, off, field);
    out.push(t);
    off = t.end;
  }
  return out;
}

export function decodeOid(bytes: Uint8Array): string {
  if (bytes.length === 0) throw new EvidenceFormatError("empty OID", "oid");
  const parts: number[] = [Math.floor(bytes[0] / 40), bytes[0] % 40];
  let v = 0;
  for (let i = 1; i < bytes.length; i++) {
    v = v * 128 + (bytes[i] & 0x7f);
    if (!(bytes[i] & 0x80)) {
      parts.push(v);
      v = 0;
    }
  }
  return parts.join(".");
}

/** Non-negative INTEGER / ENUMERATED value that fits a JS number. */
export function decodeUint(bytes: Uint8Array, field: string): number {
  if (bytes.length === 0 || bytes.length > 6) throw new EvidenceFormatError(`${field}: integer of ${bytes.length} bytes`, field);
  let v = 0;
  for (const b of bytes) v = v * 256 + b;
  return v;
}
