// A strict reader of the protobuf wire format (protobuf.dev/programming-guides/encoding), just enough for the
// few messages of Google's launch endorsements. Hand-written rather than protobufjs because (a) six small
// messages do not justify a schema compiler and a 300 kB runtime in the verifier, and (b) a verifier wants the
// opposite of a tolerant decoder: every truncation, over-long varint, wire-type mismatch, group, duplicated
// singular field and out-of-range integer is refused here with the field named, where protobufjs (and proto3
// semantics) would merge duplicates and wrap integers, so two decoders could read one signed blob differently.
// Unknown fields are skipped but reported: Google adds fields to signed endorsements over time
// (svsm_measurement), and they are covered by the signature.
import { EvidenceFormatError } from "../types.js";

export const WIRE = { VARINT: 0, I64: 1, LEN: 2, I32: 5 } as const;
export type WireType = (typeof WIRE)[keyof typeof WIRE];

export interface ProtoField {
  field: number;
  wire: WireType;
  /** VARINT / I64 / I32 value. */
  int?: bigint;
  /** LEN payload. */
  bytes?: Uint8Array;
  /** Offset of the tag in the message (for error messages). */
  at: number;
}

const MAX_FIELD = (1 << 29) - 1;

/** Splits one message into its fields, refusing anything a conforming encoder never writes. */
export function readFields(b: Uint8Array, where: string): ProtoField[] {
  const fail = (why: string, at: number): never => {
    throw new EvidenceFormatError(`${where}: ${why} at offset ${at}`, where, at);
  };
  const varint = (p: number): [bigint, number] => {
    let v = 0n;
    for (let i = 0; i < 10; i++) {
      if (p + i >= b.length) fail("truncated varint", p);
      const c = b[p + i];
      if (i === 9 && c > 1) fail("varint longer than 64 bits", p);
      v |= BigInt(c & 0x7f) << BigInt(7 * i);
      if (c < 0x80) {
        // A multi-byte varint ending in 0x00 is an over-long encoding of a shorter one.
        if (i > 0 && c === 0) fail("over-long varint", p);
        return [v, p + i + 1];
      }
    }
    return fail("varint longer than 10 bytes", p);
  };
  const out: ProtoField[] = [];
  let p = 0;
  while (p < b.length) {
    const at = p;
    const [key, q] = varint(p);
    p = q;
    if (key > BigInt(MAX_FIELD) * 8n + 7n) fail("field number out of range", at);
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (field === 0) fail("field number 0", at);
    switch (wire) {
      case WIRE.VARINT: {
        const [v, r] = varint(p);
        out.push({ field, wire, int: v, at });
        p = r;
        break;
      }
      case WIRE.I64:
        if (p + 8 > b.length) fail(`field ${field}: truncated fixed64`, at);
        out.push({ field, wire, int: Buffer.from(b.subarray(p, p + 8)).readBigUInt64LE(0), at });
        p += 8;
        break;
      case WIRE.I32:
        if (p + 4 > b.length) fail(`field ${field}: truncated fixed32`, at);
        out.push({ field, wire, int: BigInt(Buffer.from(b.subarray(p, p + 4)).readUInt32LE(0)), at });
        p += 4;
        break;
      case WIRE.LEN: {
        const [n, r] = varint(p);
        if (n > BigInt(b.length - r)) fail(`field ${field}: length ${n} exceeds the ${b.length - r} bytes left`, at);
        out.push({ field, wire, bytes: b.subarray(r, r + Number(n)), at });
        p = r + Number(n);
        break;
      }
      default:
        fail(`field ${field}: wire type ${wire} (groups and unknown wire types are not accepted)`, at);
    }
  }
  return out;
}

/** Field names by number, with the wire type each must have and whether it may repeat. */
export type Schema = Record<number, { name: string; wire: WireType; repeated?: boolean }>;

/**
 * Reads a message against its schema: known fields by name (singular → the field, repeated → a list), unknown
 * field numbers listed. A known field with the wrong wire type or a repeated singular field is an error.
 */
export function readMessage(
  b: Uint8Array,
  schema: Schema,
  where: string,
): { one: Record<string, ProtoField>; many: Record<string, ProtoField[]>; unknown: number[] } {
  const one: Record<string, ProtoField> = {};
  const many: Record<string, ProtoField[]> = {};
  const unknown: number[] = [];
  for (const f of readFields(b, where)) {
    const s = schema[f.field];
    if (!s) {
      if (!unknown.includes(f.field)) unknown.push(f.field);
      continue;
    }
    const name = `${where}.${s.name}`;
    if (f.wire !== s.wire)
      throw new EvidenceFormatError(`${name}: wire type ${f.wire}, expected ${s.wire}`, name, f.at);
    if (s.repeated) (many[s.name] ??= []).push(f);
    else if (one[s.name]) throw new EvidenceFormatError(`${name}: appears twice`, name, f.at);
    else one[s.name] = f;
  }
  return { one, many, unknown };
}

/** Integer field as a number, refused when above `max` (uint32 fields must fit in 32 bits). */
export function uintOf(f: ProtoField | undefined, where: string, max = 0xffffffff): number {
  if (!f) return 0;
  if (f.int! > BigInt(max)) throw new EvidenceFormatError(`${where}: ${f.int} exceeds ${max}`, where, f.at);
  return Number(f.int);
}

export function boolOf(f: ProtoField | undefined, where: string): boolean {
  if (!f) return false;
  if (f.int! > 1n) throw new EvidenceFormatError(`${where}: ${f.int} is not a bool (0 or 1)`, where, f.at);
  return f.int === 1n;
}

export function bytesOf(f: ProtoField | undefined): Uint8Array {
  return f?.bytes ?? new Uint8Array(0);
}
