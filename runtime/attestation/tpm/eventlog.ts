// TCG PC Client crypto-agile event log (TCG PC Client Platform Firmware Profile, §10): the first event is a
// SHA-1-format TCG_PCClientPCREvent carrying the "Spec ID Event03" header that lists the digest algorithms;
// every later event is a TCG_PCR_EVENT2 with one digest per listed algorithm. Little-endian. This is the
// format of Linux's /sys/kernel/security/tpm0/binary_bios_measurements.
//
// The log itself is unsigned: only the digests are bound, by replaying them to the quoted PCRs. Event DATA is
// therefore attacker-controlled unless the digest is recomputed from it (see eventDataIsDigested).
import { createHash } from "node:crypto";
import { EvidenceFormatError } from "../types.js";
import { HASH_ALGS, hashAlgId, type HashName } from "./abi.js";

export const EV = {
  PREBOOT_CERT: 0x0,
  POST_CODE: 0x1,
  NO_ACTION: 0x3,
  SEPARATOR: 0x4,
  ACTION: 0x5,
  EVENT_TAG: 0x6,
  S_CRTM_CONTENTS: 0x7,
  S_CRTM_VERSION: 0x8,
  CPU_MICROCODE: 0x9,
  PLATFORM_CONFIG_FLAGS: 0xa,
  TABLE_OF_DEVICES: 0xb,
  COMPACT_HASH: 0xc,
  IPL: 0xd,
  IPL_PARTITION_DATA: 0xe,
  NONHOST_CODE: 0xf,
  NONHOST_CONFIG: 0x10,
  NONHOST_INFO: 0x11,
  OMIT_BOOT_DEVICE_EVENTS: 0x12,
  EFI_VARIABLE_DRIVER_CONFIG: 0x80000001,
  EFI_VARIABLE_BOOT: 0x80000002,
  EFI_BOOT_SERVICES_APPLICATION: 0x80000003,
  EFI_BOOT_SERVICES_DRIVER: 0x80000004,
  EFI_RUNTIME_SERVICES_DRIVER: 0x80000005,
  EFI_GPT_EVENT: 0x80000006,
  EFI_ACTION: 0x80000007,
  EFI_PLATFORM_FIRMWARE_BLOB: 0x80000008,
  EFI_HANDOFF_TABLES: 0x80000009,
  EFI_PLATFORM_FIRMWARE_BLOB2: 0x8000000a,
  EFI_HANDOFF_TABLES2: 0x8000000b,
  EFI_VARIABLE_BOOT2: 0x8000000c,
  EFI_GPT_EVENT2: 0x8000000d,
  EFI_HCRTM_EVENT: 0x80000010,
  EFI_VARIABLE_AUTHORITY: 0x800000e0,
  EFI_SPDM_FIRMWARE_BLOB: 0x800000e1,
  EFI_SPDM_FIRMWARE_CONFIG: 0x800000e2,
} as const;

const EV_NAMES = new Map<number, string>(Object.entries(EV).map(([k, v]) => [v, `EV_${k}`]));
export const eventTypeName = (t: number) => EV_NAMES.get(t) ?? `0x${t.toString(16)}`;

/** Linux EFI stub tagged events (PCR 9, EV_EVENT_TAG): drivers/firmware/efi/libstub. */
export const LINUX_EVENT_TAG = { initrd: 0x8f3b22ed, loadOptions: 0x8f3b22ee } as const;

export interface SpecIdEvent {
  platformClass: number;
  specVersion: string;
  uintnSize: number;
  algorithms: { hashAlg: number; hash: HashName; digestSize: number }[];
  vendorInfo: Uint8Array;
}

export interface TcgEvent {
  /** Position in the log (0 = the Spec ID header). */
  index: number;
  pcr: number;
  type: number;
  typeName: string;
  digests: Partial<Record<HashName, Uint8Array>>;
  data: Uint8Array;
  /** Byte offset of the event in the log. */
  offset: number;
}

export interface EventLog {
  specId: SpecIdEvent;
  /** Events after the Spec ID header, in log order. */
  events: TcgEvent[];
  /** PCR 0's initial value from an EV_NO_ACTION "StartupLocality" event (H-CRTM/locality 3 or 4), if any. */
  startupLocality?: number;
}

const SPEC_ID_SIGNATURE = "Spec ID Event03\0";
const MAX_EVENT_DATA = 16 << 20;
const MAX_EVENTS = 100_000;

class LeReader {
  p = 0;
  constructor(readonly b: Buffer) {}
  fail(field: string, why: string): never {
    throw new EvidenceFormatError(`event_log.${field}: ${why}`, `event_log.${field}`, this.p);
  }
  need(n: number, f: string): void {
    if (this.p + n > this.b.length) this.fail(f, `truncated at offset ${this.p} (needs ${n} bytes)`);
  }
  u8(f: string): number {
    this.need(1, f);
    return this.b[this.p++];
  }
  u16(f: string): number {
    this.need(2, f);
    this.p += 2;
    return this.b.readUInt16LE(this.p - 2);
  }
  u32(f: string): number {
    this.need(4, f);
    this.p += 4;
    return this.b.readUInt32LE(this.p - 4);
  }
  bytes(n: number, f: string): Buffer {
    this.need(n, f);
    this.p += n;
    return this.b.subarray(this.p - n, this.p);
  }
}

function parseSpecId(data: Buffer): SpecIdEvent {
  const r: LeReader = new LeReader(data);
  const sig = r.bytes(16, "spec_id.signature").toString("latin1");
  if (sig !== SPEC_ID_SIGNATURE)
    r.fail("spec_id.signature", `'${sig.replace(/\0/g, "\\0")}' is not "Spec ID Event03" (only crypto-agile logs)`);
  const platformClass = r.u32("spec_id.platformClass");
  const minor = r.u8("spec_id.specVersionMinor");
  const major = r.u8("spec_id.specVersionMajor");
  const errata = r.u8("spec_id.specErrata");
  if (major !== 2) r.fail("spec_id.specVersionMajor", `${major}, expected 2`);
  const uintnSize = r.u8("spec_id.uintnSize");
  if (uintnSize !== 1 && uintnSize !== 2) r.fail("spec_id.uintnSize", `${uintnSize} (1 or 2)`);
  const n = r.u32("spec_id.numberOfAlgorithms");
  if (n === 0 || n > 8) r.fail("spec_id.numberOfAlgorithms", `${n} (1..8)`);
  const algorithms: SpecIdEvent["algorithms"] = [];
  for (let i = 0; i < n; i++) {
    const hashAlg = r.u16(`spec_id.digestSizes[${i}].algorithmId`);
    const digestSize = r.u16(`spec_id.digestSizes[${i}].digestSize`);
    const alg = HASH_ALGS[hashAlg];
    if (!alg) return r.fail(`spec_id.digestSizes[${i}].algorithmId`, `unsupported hash 0x${hashAlg.toString(16)}`);
    if (alg.bytes !== digestSize)
      r.fail(`spec_id.digestSizes[${i}].digestSize`, `${digestSize} for ${alg.name} (expected ${alg.bytes})`);
    if (algorithms.some((a) => a.hashAlg === hashAlg))
      r.fail(`spec_id.digestSizes[${i}].algorithmId`, `${alg.name} listed twice`);
    algorithms.push({ hashAlg, hash: alg.name, digestSize });
  }
  const vendorSize = r.u8("spec_id.vendorInfoSize");
  const vendorInfo = r.bytes(vendorSize, "spec_id.vendorInfo");
  if (r.p !== data.length) r.fail("spec_id", `${data.length - r.p} trailing bytes`);
  return { platformClass, specVersion: `${major}.${minor}.${errata}`, uintnSize, algorithms, vendorInfo };
}

/** Parses a crypto-agile TCG event log. Throws EvidenceFormatError naming the field for anything malformed. */
export function parseEventLog(log: Uint8Array): EventLog {
  const r: LeReader = new LeReader(Buffer.from(log.buffer, log.byteOffset, log.byteLength));
  // Header: TCG_PCClientPCREvent (SHA-1 format) with EV_NO_ACTION, PCR 0, zero digest.
  const pcr0 = r.u32("header.pcrIndex");
  const type0 = r.u32("header.eventType");
  const digest0 = r.bytes(20, "header.digest");
  if (pcr0 !== 0 || type0 !== EV.NO_ACTION || digest0.some((x) => x !== 0))
    r.fail("header", "the first event is not the EV_NO_ACTION Spec ID event (PCR 0, zero digest)");
  const size0 = r.u32("header.eventSize");
  if (size0 > 4096) r.fail("header.eventSize", `${size0}`);
  const specId = parseSpecId(r.bytes(size0, "header.event"));
  const events: TcgEvent[] = [];
  let startupLocality: number | undefined;
  while (r.p < r.b.length) {
    const i = events.length + 1;
    if (i > MAX_EVENTS) r.fail(`event[${i}]`, `more than ${MAX_EVENTS} events`);
    const offset = r.p;
    const pcr = r.u32(`event[${i}].pcrIndex`);
    if (pcr > 23) r.fail(`event[${i}].pcrIndex`, `${pcr} (a PC Client TPM has PCRs 0..23)`);
    const type = r.u32(`event[${i}].eventType`);
    const count = r.u32(`event[${i}].digests.count`);
    if (count !== specId.algorithms.length)
      r.fail(`event[${i}].digests.count`, `${count} digests, the Spec ID event lists ${specId.algorithms.length}`);
    const digests: TcgEvent["digests"] = {};
    for (let d = 0; d < count; d++) {
      const hashAlg = r.u16(`event[${i}].digests[${d}].hashAlg`);
      const alg = specId.algorithms.find((a) => a.hashAlg === hashAlg);
      if (!alg) r.fail(`event[${i}].digests[${d}].hashAlg`, `0x${hashAlg.toString(16)} is not in the Spec ID event`);
      if (digests[alg.hash]) r.fail(`event[${i}].digests[${d}].hashAlg`, `${alg.hash} twice`);
      digests[alg.hash] = r.bytes(alg.digestSize, `event[${i}].digests[${d}].digest`);
    }
    const size = r.u32(`event[${i}].eventSize`);
    if (size > MAX_EVENT_DATA) r.fail(`event[${i}].eventSize`, `${size} bytes`);
    const data = r.bytes(size, `event[${i}].event`);
    if (
      type === EV.NO_ACTION &&
      pcr === 0 &&
      data.length === 17 &&
      data.toString("latin1", 0, 16) === "StartupLocality\0"
    ) {
      if (startupLocality !== undefined) r.fail(`event[${i}]`, "a second StartupLocality event");
      startupLocality = data[16];
    }
    events.push({ index: i, pcr, type, typeName: eventTypeName(type), digests, data, offset });
  }
  return { specId, events, startupLocality };
}

export type PcrBank = Record<number, Buffer>;

/**
 * Replays the log into PCR values for one bank: every event except EV_NO_ACTION extends its PCR
 * (PCR_new = H(PCR_old ‖ digest)); PCR 0 starts at the StartupLocality value when one is logged.
 */
export function replayEventLog(log: EventLog, hash: HashName): PcrBank {
  const alg = HASH_ALGS[hashAlgId(hash)];
  if (!log.specId.algorithms.some((a) => a.hash === hash))
    throw new EvidenceFormatError(`event_log: the log has no ${hash} digests`, "event_log.spec_id");
  const pcrs: PcrBank = {};
  const init = (i: number) => {
    const v = Buffer.alloc(alg.bytes);
    if (i === 0 && log.startupLocality !== undefined) v[alg.bytes - 1] = log.startupLocality;
    return v;
  };
  for (const e of log.events) {
    if (e.type === EV.NO_ACTION) continue;
    const cur = pcrs[e.pcr] ?? init(e.pcr);
    pcrs[e.pcr] = createHash(hash).update(cur).update(e.digests[hash]!).digest();
  }
  return pcrs;
}

/** True when the event's digest in this bank is the hash of its own data (so the data can be believed). */
export function eventDataIsDigested(e: TcgEvent, hash: HashName): boolean {
  const d = e.digests[hash];
  return !!d && createHash(hash).update(e.data).digest().equals(Buffer.from(d));
}

// ---- EFI event data decoders (UEFI spec / TCG PC Client PFP §10.4) -------------------------------------

export interface UefiVariableData {
  /** Vendor GUID in canonical text form. */
  guid: string;
  name: string;
  data: Uint8Array;
}

export function guidText(b: Uint8Array): string {
  const x = Buffer.from(b);
  const h = (s: Buffer) => s.toString("hex");
  return [
    x.readUInt32LE(0).toString(16).padStart(8, "0"),
    x.readUInt16LE(4).toString(16).padStart(4, "0"),
    x.readUInt16LE(6).toString(16).padStart(4, "0"),
    h(x.subarray(8, 10)),
    h(x.subarray(10, 16)),
  ].join("-");
}

/** UEFI_VARIABLE_DATA: VariableName GUID, UnicodeNameLength, VariableDataLength (UINT64), name (CHAR16), data. */
export function parseUefiVariableData(data: Uint8Array, where = "event"): UefiVariableData {
  const r: LeReader = new LeReader(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  const guid = guidText(r.bytes(16, `${where}.VariableName`));
  const nameLen = r.u32(`${where}.UnicodeNameLength`);
  if (r.u32(`${where}.UnicodeNameLength.hi`) !== 0 || nameLen > 1024)
    r.fail(`${where}.UnicodeNameLength`, "out of range");
  const dataLen = r.u32(`${where}.VariableDataLength`);
  if (r.u32(`${where}.VariableDataLength.hi`) !== 0) r.fail(`${where}.VariableDataLength`, "out of range");
  const name = r.bytes(nameLen * 2, `${where}.UnicodeName`).toString("utf16le");
  const value = r.bytes(dataLen, `${where}.VariableData`);
  if (r.p !== r.b.length) r.fail(where, `${r.b.length - r.p} trailing bytes after UEFI_VARIABLE_DATA`);
  return { guid, name, data: value };
}

/** TCG_PCClientTaggedEvent: taggedEventID, taggedEventDataSize, data. */
export function parseTaggedEvent(data: Uint8Array, where = "event"): { id: number; data: Uint8Array } {
  const r: LeReader = new LeReader(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  const id = r.u32(`${where}.taggedEventID`);
  const n = r.u32(`${where}.taggedEventDataSize`);
  const d = r.bytes(n, `${where}.taggedEventData`);
  if (r.p !== r.b.length) r.fail(where, "trailing bytes after the tagged event");
  return { id, data: d };
}

export const EFI_GLOBAL_VARIABLE = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
export const EFI_IMAGE_SECURITY_DATABASE = "d719b2cb-3d3a-4596-a3bc-dad00e67656f";

/** Builders used by tests and the swtpm harness to create logs the way firmware and boot loaders do. */
export function encodeSpecIdHeader(hashes: HashName[]): Buffer {
  const algs = hashes.map((h) => {
    const id = hashAlgId(h);
    const b = Buffer.alloc(4);
    b.writeUInt16LE(id, 0);
    b.writeUInt16LE(HASH_ALGS[id].bytes, 2);
    return b;
  });
  const body = Buffer.concat([
    Buffer.from(SPEC_ID_SIGNATURE, "latin1"),
    Buffer.from([0, 0, 0, 0, 0, 2, 0, 2]),
    u32le(hashes.length),
    ...algs,
    Buffer.from([0]),
  ]);
  return Buffer.concat([u32le(0), u32le(EV.NO_ACTION), Buffer.alloc(20), u32le(body.length), body]);
}

export function encodeEvent2(pcr: number, type: number, digests: [HashName, Uint8Array][], data: Uint8Array): Buffer {
  const parts: Buffer[] = [u32le(pcr), u32le(type), u32le(digests.length)];
  for (const [h, d] of digests) {
    const id = Buffer.alloc(2);
    id.writeUInt16LE(hashAlgId(h));
    parts.push(id, Buffer.from(d));
  }
  parts.push(u32le(data.length), Buffer.from(data));
  return Buffer.concat(parts);
}

export function encodeUefiVariableData(guid: string, name: string, value: Uint8Array): Buffer {
  const g = guid.replace(/-/g, "");
  const gb = Buffer.alloc(16);
  gb.writeUInt32LE(parseInt(g.slice(0, 8), 16), 0);
  gb.writeUInt16LE(parseInt(g.slice(8, 12), 16), 4);
  gb.writeUInt16LE(parseInt(g.slice(12, 16), 16), 6);
  Buffer.from(g.slice(16), "hex").copy(gb, 8);
  const nb = Buffer.from(name, "utf16le");
  const len = (n: number) => Buffer.concat([u32le(n), u32le(0)]);
  return Buffer.concat([gb, len(name.length), len(value.length), nb, Buffer.from(value)]);
}

export function encodeTaggedEvent(id: number, data: Uint8Array): Buffer {
  return Buffer.concat([u32le(id), u32le(data.length), Buffer.from(data)]);
}

function u32le(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}
