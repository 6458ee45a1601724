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
  if ((tag & 0x1f) === 0x1f)
    throw new EvidenceFormatError(`${field}: multi-byte DER tags are not used here`, field, off);
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
  for (let off = 0; off < value.length;) {
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
  if (bytes.length === 0 || bytes.length > 6)
    throw new EvidenceFormatError(`${field}: integer of ${bytes.length} bytes`, field);
  let v = 0;
  for (const b of bytes) v = v * 256 + b;
  return v;
}

// ---- encoding (used by the simulator to build the SGX extension) --------------------------------

function derLength(n: number): Uint8Array {
  if (n < 0x80) return Uint8Array.of(n);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Uint8Array.of(0x80 | bytes.length, ...bytes);
}

export function derTlv(tag: number, value: Uint8Array): Uint8Array {
  return Buffer.concat([Uint8Array.of(tag), derLength(value.length), value]);
}

export const derSeq = (...items: Uint8Array[]): Uint8Array => derTlv(0x30, Buffer.concat(items));
export const derOctets = (b: Uint8Array): Uint8Array => derTlv(0x04, b);

export function derOid(oid: string): Uint8Array {
  const parts = oid.split(".").map(Number);
  const out: number[] = [parts[0] * 40 + parts[1]];
  for (const p of parts.slice(2)) {
    const chunk: number[] = [p & 0x7f];
    for (let v = Math.floor(p / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return derTlv(0x06, Uint8Array.from(out));
}

/** Non-negative INTEGER (tag 0x02) or ENUMERATED (0x0a). */
export function derUint(n: number, tag = 0x02): Uint8Array {
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  if (bytes.length === 0 || bytes[0] & 0x80) bytes.unshift(0);
  return derTlv(tag, Uint8Array.from(bytes));
}
