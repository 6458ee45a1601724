// A strict decoder (and the one-purpose encoder COSE needs) for the subset of CBOR (RFC 8949) a Nitro
// attestation document uses: unsigned/negative integers, byte and text strings, arrays, maps with text or
// integer keys, null/true/false, and the optional COSE_Sign1 tag (18) at the top.
//
// Hand-written instead of a general codec (cbor-x, cbor) on purpose: a verifier should accept exactly the
// format it understands and nothing more. Everything outside the subset — indefinite-length strings, other tags,
// floats, undefined, duplicate map keys, integers beyond 2^53, invalid UTF-8, trailing bytes, nesting deeper
// than the document needs — is refused with an EvidenceFormatError naming the offset, where a general
// decoder would quietly build extension objects, merge duplicate keys or read past what the signature covers.
// Indefinite-length maps and arrays (0xbf/0x9f … 0xff) are accepted: real NitroTPM documents encode their
// payload map that way (the real document in test/runtime/attestation/aws-nitro does).
import { EvidenceFormatError } from "../types.js";

export type CborValue = number | Uint8Array | string | CborValue[] | CborMap | null | boolean;
/** A CBOR map in wire order; keys are text or integers, never duplicated. */
export type CborMap = Map<string | number, CborValue>;

const MAX_DEPTH = 8;
const utf8 = new TextDecoder("utf-8", { fatal: true });

class Reader {
  p = 0;
  constructor(
    readonly b: Uint8Array,
    readonly where: string,
  ) {}
  fail(why: string, at = this.p): never {
    throw new EvidenceFormatError(`${this.where}: ${why} at offset ${at}`, this.where, at);
  }
  need(n: number): void {
    if (n > this.b.length - this.p) this.fail(`truncated (${n} bytes needed, ${this.b.length - this.p} left)`);
  }
  u8(): number {
    this.need(1);
    return this.b[this.p++];
  }
  /** The argument of an initial byte: the value for 0..23, else 1/2/4/8 following bytes (big-endian). */
  arg(info: number, at: number): number {
    if (info < 24) return info;
    const n = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0;
    if (n === 0)
      this.fail(info === 31 ? "indefinite length is not allowed" : `reserved additional information ${info}`, at);
    this.need(n);
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 256 + this.b[this.p++];
    if (!Number.isSafeInteger(v)) this.fail("integer beyond 2^53", at);
    return v;
  }
  /** An indefinite-length array or map: items until the 0xff break. */
  indefinite(major: number, depth: number, at: number): CborValue {
    if (depth >= MAX_DEPTH) this.fail("nested too deeply", at);
    const isBreak = () => {
      this.need(1);
      if (this.b[this.p] !== 0xff) return false;
      this.p++;
      return true;
    };
    if (major === 4) {
      const out: CborValue[] = [];
      while (!isBreak()) out.push(this.value(depth + 1));
      return out;
    }
    const out: CborMap = new Map();
    while (!isBreak()) this.entry(out, depth);
    return out;
  }
  entry(out: CborMap, depth: number): void {
    const kAt = this.p;
    const k = this.value(depth + 1);
    if (typeof k !== "string" && typeof k !== "number") this.fail("map key is not text or an integer", kAt);
    if (out.has(k)) this.fail(`duplicate map key ${JSON.stringify(k)}`, kAt);
    out.set(k, this.value(depth + 1));
  }
  value(depth: number): CborValue {
    const at = this.p;
    const ib = this.u8();
    const major = ib >> 5;
    const info = ib & 31;
    if (major === 7) {
      if (info === 20) return false;
      if (info === 21) return true;
      if (info === 22) return null;
      return this.fail(`simple value/float 0x${ib.toString(16)} is not allowed`, at);
    }
    if (info === 31 && (major === 4 || major === 5)) return this.indefinite(major, depth, at);
    const n = this.arg(info, at);
    switch (major) {
      case 0:
        return n;
      case 1:
        return -1 - n;
      case 2:
        this.need(n);
        return this.b.slice(this.p, (this.p += n));
      case 3: {
        this.need(n);
        try {
          return utf8.decode(this.b.subarray(this.p, (this.p += n)));
        } catch {
          return this.fail("text string is not valid UTF-8", at);
        }
      }
      case 4: {
        if (depth >= MAX_DEPTH) this.fail("nested too deeply", at);
        // Every element takes at least one byte: refuse counts the input cannot hold before allocating.
        this.need(n);
        const out: CborValue[] = [];
        for (let i = 0; i < n; i++) out.push(this.value(depth + 1));
        return out;
      }
      case 5: {
        if (depth >= MAX_DEPTH) this.fail("nested too deeply", at);
        this.need(2 * n);
        const out: CborMap = new Map();
        for (let i = 0; i < n; i++) this.entry(out, depth);
        return out;
      }
      default: // 6: tags — only the top-level COSE_Sign1 tag is handled, by decodeCbor.
        return this.fail(`tag ${n} is not allowed here`, at);
    }
  }
}

/** Decodes exactly one CBOR item filling `b`; `allowTag` is the one tag accepted in front of it. */
export function decodeCbor(b: Uint8Array, where: string, allowTag?: number): CborValue {
  const r = new Reader(b, where);
  if (allowTag !== undefined && r.b.length > 0 && r.b[0] >> 5 === 6) {
    r.p = 1;
    const tag = r.arg(r.b[0] & 31, 0);
    if (tag !== allowTag) r.fail(`tag ${tag} is not ${allowTag}`, 0);
  }
  const v = r.value(0);
  if (r.p !== b.length) r.fail(`${b.length - r.p} trailing bytes after the item`);
  return v;
}

function head(major: number, n: number): Buffer {
  if (n < 24) return Buffer.from([(major << 5) | n]);
  if (n < 0x100) return Buffer.from([(major << 5) | 24, n]);
  if (n < 0x10000) return Buffer.from([(major << 5) | 25, n >> 8, n & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = (major << 5) | 26;
  b.writeUInt32BE(n, 1);
  return b;
}

/** Encodes byte strings, text strings and arrays of them — what COSE's Sig_structure is made of. */
export function encodeCbor(v: Uint8Array | string | (Uint8Array | string)[]): Buffer {
  if (typeof v === "string") {
    const t = Buffer.from(v, "utf8");
    return Buffer.concat([head(3, t.length), t]);
  }
  if (Array.isArray(v)) return Buffer.concat([head(4, v.length), ...v.map((x) => encodeCbor(x))]);
  return Buffer.concat([head(2, v.length), v]);
}
