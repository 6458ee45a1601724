// SEV-SNP ATTESTATION_REPORT parsing (firmware ABI spec #56860), TCB_VERSION encodings per product and
// the extended-report certificate table (GHCB spec #56421). Parsing only: no cryptography, no policy.
// Strict by design: reserved fields, the high bytes of R and S and the unsigned tail must be zero, because
// bytes outside the signed range [0, 0x2A0) could otherwise be changed without breaking the signature.
import { EvidenceFormatError } from "../types.js";

export const REPORT_SIZE = 0x4a0;
/** The signature covers bytes [0, SIGNED_LENGTH). */
export const SIGNED_LENGTH = 0x2a0;
export const MIN_REPORT_VERSION = 2;
export const MAX_REPORT_VERSION = 5;

export type SnpProduct = "Milan" | "Genoa" | "Turin";
export const SNP_PRODUCTS: readonly SnpProduct[] = ["Milan", "Genoa", "Turin"];

/** Decoded TCB_VERSION. `fmc` exists only on Turin. */
export interface TcbVersion {
  fmc?: number;
  bootloader: number;
  tee: number;
  snp: number;
  microcode: number;
}
export type TcbComponent = keyof TcbVersion;

export type SigningKey = "vcek" | "vlek" | "none";

export interface SnpPolicyBits {
  abiMinor: number;
  abiMajor: number;
  smt: boolean;
  migrateMa: boolean;
  debug: boolean;
  singleSocket: boolean;
  cxlAllow: boolean;
  memAes256Xts: boolean;
  raplDis: boolean;
  ciphertextHiding: boolean;
  pageSwapDisable: boolean;
}

export interface SnpReport {
  version: number;
  guestSvn: number;
  policy: bigint;
  policyBits: SnpPolicyBits;
  familyId: Uint8Array;
  imageId: Uint8Array;
  vmpl: number;
  signatureAlgo: number;
  currentTcb: Uint8Array;
  platformInfo: bigint;
  authorKeyEn: boolean;
  maskChipKey: boolean;
  signingKey: SigningKey;
  reportData: Uint8Array;
  measurement: Uint8Array;
  hostData: Uint8Array;
  idKeyDigest: Uint8Array;
  authorKeyDigest: Uint8Array;
  reportId: Uint8Array;
  reportIdMa: Uint8Array;
  reportedTcb: Uint8Array;
  /** v3+ only. */
  cpuid?: { family: number; model: number; stepping: number };
  chipId: Uint8Array;
  committedTcb: Uint8Array;
  currentVersion: { major: number; minor: number; build: number };
  committedVersion: { major: number; minor: number; build: number };
  launchTcb: Uint8Array;
  /** v5 only. */
  launchMitVector?: bigint;
  currentMitVector?: bigint;
  /** 48-byte big-endian R and S, ready for IEEE-P1363 (r ‖ s). */
  signatureR: Uint8Array;
  signatureS: Uint8Array;
  /** The exact bytes parsed (a view, not a copy). */
  raw: Uint8Array;
}

function fail(field: string, offset: number, message: string): never {
  throw new EvidenceFormatError(`SNP report ${field} (offset 0x${offset.toString(16)}): ${message}`, field, offset);
}

function requireZero(b: Uint8Array, from: number, to: number, field: string): void {
  for (let i = from; i < to; i++) {
    if (b[i] !== 0) fail(field, i, `reserved byte must be zero, found 0x${b[i].toString(16).padStart(2, "0")}`);
  }
}

/** Little-endian 48-byte value zero-extended to 72 bytes → 48-byte big-endian. */
function sigComponent(b: Uint8Array, off: number): Uint8Array {
  const out = new Uint8Array(48);
  for (let i = 0; i < 48; i++) out[i] = b[off + 47 - i];
  return out;
}

export function parsePolicyBits(policy: bigint): SnpPolicyBits {
  const bit = (n: number) => ((policy >> BigInt(n)) & 1n) === 1n;
  return {
    abiMinor: Number(policy & 0xffn),
    abiMajor: Number((policy >> 8n) & 0xffn),
    smt: bit(16),
    migrateMa: bit(18),
    debug: bit(19),
    singleSocket: bit(20),
    cxlAllow: bit(21),
    memAes256Xts: bit(22),
    raplDis: bit(23),
    ciphertextHiding: bit(24),
    pageSwapDisable: bit(25),
  };
}

/** Parses a 0x4A0-byte ATTESTATION_REPORT (versions 2..5). Throws EvidenceFormatError naming the field. */
export function parseReport(bytes: Uint8Array): SnpReport {
  if (!(bytes instanceof Uint8Array)) throw new EvidenceFormatError("SNP report: expected bytes", "report");
  if (bytes.length !== REPORT_SIZE) {
    throw new EvidenceFormatError(`SNP report: expected ${REPORT_SIZE} bytes, got ${bytes.length}`, "report");
  }
  const b = bytes;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const u32 = (o: number) => dv.getUint32(o, true);
  const u64 = (o: number) => dv.getBigUint64(o, true);
  const slice = (o: number, n: number) => b.subarray(o, o + n);

  const version = u32(0x000);
  if (version < MIN_REPORT_VERSION || version > MAX_REPORT_VERSION) {
    fail(
      "version",
      0,
      `unsupported report version ${version} (supported ${MIN_REPORT_VERSION}..${MAX_REPORT_VERSION})`,
    );
  }
  const vmpl = u32(0x030);
  // 0xFFFFFFFF marks a report the hypervisor requested (SNP_HV_REPORT_REQ): its REPORT_DATA is host-chosen,
  // so it must never pass as the guest's own evidence.
  if (vmpl === 0xffffffff)
    fail("vmpl", 0x30, "VMPL 0xffffffff: the report was requested by the hypervisor, not by the guest");
  if (vmpl > 3) fail("vmpl", 0x30, `VMPL must be 0..3, got ${vmpl}`);
  const signatureAlgo = u32(0x034);
  if (signatureAlgo !== 1)
    fail("signature_algo", 0x34, `only 1 (ECDSA P-384 with SHA-384) is defined, got ${signatureAlgo}`);

  const signerInfo = u32(0x048);
  if (signerInfo >>> 5 !== 0)
    fail("signer_info", 0x48, `reserved bits 31:5 must be zero (value 0x${signerInfo.toString(16)})`);
  const keySel = (signerInfo >>> 2) & 7;
  let signingKey: SigningKey;
  if (keySel === 0) signingKey = "vcek";
  else if (keySel === 1) signingKey = "vlek";
  else if (keySel === 7) signingKey = "none";
  else fail("signer_info", 0x48, `SIGNING_KEY ${keySel} is reserved`);

  requireZero(b, 0x04c, 0x050, "reserved_0x4c");
  let cpuid: SnpReport["cpuid"];
  if (version >= 3) {
    cpuid = { family: b[0x188], model: b[0x189], stepping: b[0x18a] };
    requireZero(b, 0x18b, 0x1a0, "reserved_0x18b");
  } else {
    requireZero(b, 0x188, 0x1a0, "reserved_0x188");
  }
  requireZero(b, 0x1eb, 0x1ec, "reserved_0x1eb");
  requireZero(b, 0x1ef, 0x1f0, "reserved_0x1ef");
  let launchMitVector: bigint | undefined;
  let currentMitVector: bigint | undefined;
  if (version >= 5) {
    launchMitVector = u64(0x1f8);
    currentMitVector = u64(0x200);
  } else {
    requireZero(b, 0x1f8, 0x208, "reserved_0x1f8");
  }
  requireZero(b, 0x208, 0x2a0, "reserved_0x208");
  requireZero(b, 0x2d0, 0x2e8, "signature_r_high");
  requireZero(b, 0x318, 0x330, "signature_s_high");
  requireZero(b, 0x330, REPORT_SIZE, "signature_reserved");

  const policy = u64(0x008);
  return {
    version,
    guestSvn: u32(0x004),
    policy,
    policyBits: parsePolicyBits(policy),
    familyId: slice(0x010, 16),
    imageId: slice(0x020, 16),
    vmpl,
    signatureAlgo,
    currentTcb: slice(0x038, 8),
    platformInfo: u64(0x040),
    authorKeyEn: (signerInfo & 1) === 1,
    maskChipKey: (signerInfo & 2) === 2,
    signingKey,
    reportData: slice(0x050, 64),
    measurement: slice(0x090, 48),
    hostData: slice(0x0c0, 32),
    idKeyDigest: slice(0x0e0, 48),
    authorKeyDigest: slice(0x110, 48),
    reportId: slice(0x140, 32),
    reportIdMa: slice(0x160, 32),
    reportedTcb: slice(0x180, 8),
    cpuid,
    chipId: slice(0x1a0, 64),
    committedTcb: slice(0x1e0, 8),
    currentVersion: { build: b[0x1e8], minor: b[0x1e9], major: b[0x1ea] },
    committedVersion: { build: b[0x1ec], minor: b[0x1ed], major: b[0x1ee] },
    launchTcb: slice(0x1f0, 8),
    launchMitVector,
    currentMitVector,
    signatureR: sigComponent(b, 0x2a0),
    signatureS: sigComponent(b, 0x2e8),
    raw: b,
  };
}

// ---- product detection ---------------------------------------------------------------------------

/** Product from the CPUID family/model bytes of a v3+ report; undefined when not a known SNP product. */
export function productFromCpuid(family: number, model: number): SnpProduct | undefined {
  if (family === 0x19) {
    if (model <= 0x0f) return "Milan";
    if ((model >= 0x10 && model <= 0x1f) || (model >= 0xa0 && model <= 0xaf)) return "Genoa";
  }
  if (family === 0x1a && model <= 0x11) return "Turin";
  return undefined;
}

/** Product from a VCEK/VLEK productName ("Milan-B0", "Genoa", "Turin") or a CA common name. */
export function productFromName(name: string): SnpProduct | undefined {
  const base = name
    .replace(/^(ARK-|SEV-VLEK-|SEV-)/, "")
    .split("-")[0]
    .toLowerCase();
  return SNP_PRODUCTS.find((p) => p.toLowerCase() === base);
}

// ---- TCB_VERSION ---------------------------------------------------------------------------------

/** Decodes 8 TCB bytes with the product's layout (Turin differs from Milan/Genoa). */
export function decodeTcb(raw: Uint8Array, product: SnpProduct): TcbVersion {
  if (raw.length !== 8) throw new EvidenceFormatError(`TCB_VERSION must be 8 bytes, got ${raw.length}`, "tcb");
  if (product === "Turin") {
    return { fmc: raw[0], bootloader: raw[1], tee: raw[2], snp: raw[3], microcode: raw[7] };
  }
  return { bootloader: raw[0], tee: raw[1], snp: raw[6], microcode: raw[7] };
}

export function encodeTcb(tcb: TcbVersion, product: SnpProduct): Uint8Array {
  const out = new Uint8Array(8);
  const byte = (name: string, v: number | undefined) => {
    const n = v ?? 0;
    if (!Number.isInteger(n) || n < 0 || n > 255)
      throw new EvidenceFormatError(`TCB ${name} must be 0..255, got ${v}`, `tcb.${name}`);
    return n;
  };
  if (product === "Turin") {
    out[0] = byte("fmc", tcb.fmc);
    out[1] = byte("bootloader", tcb.bootloader);
    out[2] = byte("tee", tcb.tee);
    out[3] = byte("snp", tcb.snp);
  } else {
    if (tcb.fmc !== undefined && tcb.fmc !== 0)
      throw new EvidenceFormatError(`TCB fmc exists only on Turin`, "tcb.fmc");
    out[0] = byte("bootloader", tcb.bootloader);
    out[1] = byte("tee", tcb.tee);
    out[6] = byte("snp", tcb.snp);
  }
  out[7] = byte("microcode", tcb.microcode);
  return out;
}

export function tcbComponents(product: SnpProduct): TcbComponent[] {
  return product === "Turin"
    ? ["fmc", "bootloader", "tee", "snp", "microcode"]
    : ["bootloader", "tee", "snp", "microcode"];
}

export function formatTcb(t: TcbVersion): string {
  const core = `bootloader=${t.bootloader} tee=${t.tee} snp=${t.snp} microcode=${t.microcode}`;
  return t.fmc === undefined ? core : `fmc=${t.fmc} ${core}`;
}

/** CHIP_ID bytes that identify the chip in the VCEK hwID (Turin: the first 8 bytes). */
export function hwIdOf(chipId: Uint8Array, product: SnpProduct): Uint8Array {
  return product === "Turin" ? chipId.subarray(0, 8) : chipId;
}

// ---- certificate table ---------------------------------------------------------------------------

/** GUIDs of the extended-report certificate table (GHCB spec), in canonical string form. */
export const CERT_GUID = {
  vcek: "63da758d-e664-4564-adc5-f4b93be8accd",
  vlek: "a8074bc2-a25a-483e-aae6-39c045a0b8a1",
  ask: "4ab7b379-bbac-4fe4-a02f-05aef327c782",
  ark: "c0b406a4-a803-4952-9743-3fb6014cd0ae",
} as const;
// No GUID is defined for the ASVK; hosts that ship one use the ASK slot, so CA certificates are classified
// by their subject, never by the slot they arrived in.

export interface CertTableEntry {
  guid: string;
  data: Uint8Array;
}

const ENTRY_SIZE = 24;
/** Hosts deliver 3–5 entries (VCEK/VLEK, ASK, ARK, sometimes CRL or platform info); far more is not a table. */
const MAX_CERT_TABLE_ENTRIES = 64;
const ZERO_GUID = "00000000-0000-0000-0000-000000000000";

/** GUID bytes are in RFC 4122 order (as libuuid's uuid_parse and go's uuid.FromBytes use them). */
export function guidToString(b: Uint8Array): string {
  const h = Buffer.from(b).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function guidToBytes(guid: string): Uint8Array {
  const hex = guid.replace(/-/g, "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new EvidenceFormatError(`not a GUID: '${guid}'`, "guid");
  return new Uint8Array(Buffer.from(hex, "hex"));
}

/**
 * Parses a certificate table: entries {GUID(16), offset u32 LE, length u32 LE} terminated by an all-zero
 * entry; offsets are relative to the table start. Rejects overlapping headers, out-of-range payloads and
 * duplicate GUIDs.
 */
export function parseCertTable(bytes: Uint8Array): CertTableEntry[] {
  if (!(bytes instanceof Uint8Array)) throw new EvidenceFormatError("certificate table: expected bytes", "cert_table");
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const entries: CertTableEntry[] = [];
  const seen = new Set<string>();
  for (let pos = 0; ; pos += ENTRY_SIZE) {
    if (entries.length >= MAX_CERT_TABLE_ENTRIES) {
      throw new EvidenceFormatError(
        `certificate table: more than ${MAX_CERT_TABLE_ENTRIES} entries`,
        "cert_table",
        pos,
      );
    }
    if (pos + ENTRY_SIZE > bytes.length) {
      throw new EvidenceFormatError(
        `certificate table: missing all-zero terminator entry (table is ${bytes.length} bytes)`,
        "cert_table",
        pos,
      );
    }
    const guid = guidToString(bytes.subarray(pos, pos + 16));
    const offset = dv.getUint32(pos + 16, true);
    const length = dv.getUint32(pos + 20, true);
    if (guid === ZERO_GUID) {
      if (offset !== 0 || length !== 0) {
        throw new EvidenceFormatError(
          `certificate table: terminator entry at 0x${pos.toString(16)} has non-zero offset/length`,
          "cert_table",
          pos,
        );
      }
      const headerEnd = pos + ENTRY_SIZE;
      for (const e of entries) {
        const off = e.data.byteOffset - bytes.byteOffset;
        if (off < headerEnd)
          throw new EvidenceFormatError(
            `certificate table: entry ${e.guid} overlaps the table header`,
            "cert_table",
            off,
          );
      }
      return entries;
    }
    if (length === 0)
      throw new EvidenceFormatError(`certificate table: entry ${guid} has zero length`, "cert_table", pos);
    if (offset + length > bytes.length) {
      throw new EvidenceFormatError(
        `certificate table: entry ${guid} (offset ${offset}, length ${length}) exceeds the ${bytes.length}-byte table`,
        "cert_table",
        pos,
      );
    }
    if (seen.has(guid)) throw new EvidenceFormatError(`certificate table: duplicate entry ${guid}`, "cert_table", pos);
    seen.add(guid);
    entries.push({ guid, data: bytes.subarray(offset, offset + length) });
  }
}

/** Builds a certificate table (the layout SNP_GET_EXT_REPORT and configfs-tsm `auxblob` deliver). */
export function buildCertTable(entries: CertTableEntry[]): Uint8Array {
  const headerLen = (entries.length + 1) * ENTRY_SIZE;
  const total = headerLen + entries.reduce((n, e) => n + e.data.length, 0);
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  let off = headerLen;
  entries.forEach((e, i) => {
    out.set(guidToBytes(e.guid), i * ENTRY_SIZE);
    dv.setUint32(i * ENTRY_SIZE + 16, off, true);
    dv.setUint32(i * ENTRY_SIZE + 20, e.data.length, true);
    out.set(e.data, off);
    off += e.data.length;
  });
  return out;
}
