// TPM 2.0 wire structures a verifier receives (TPM 2.0 Library, Part 2 "Structures"), parsed strictly:
// big-endian, every size checked, no trailing bytes, unknown algorithms refused with the field named.
//   TPMS_ATTEST (TPM2_Quote output, TPM_ST_ATTEST_QUOTE), TPMT_SIGNATURE (RSASSA, RSAPSS, ECDSA),
//   TPM2B_PUBLIC / TPMT_PUBLIC (RSA and ECC keys: the attestation key), TPML_PCR_SELECTION.
import { createHash, createPublicKey, type KeyObject } from "node:crypto";
import { EvidenceFormatError } from "../types.js";
import type { HashName } from "./evidence.js";

export const TPM_GENERATED_VALUE = 0xff544347;
export const TPM_ST_ATTEST_QUOTE = 0x8018;

export const TPM_ALG = {
  RSA: 0x0001,
  SHA1: 0x0004,
  NULL: 0x0010,
  SHA256: 0x000b,
  SHA384: 0x000c,
  SHA512: 0x000d,
  RSASSA: 0x0014,
  RSAPSS: 0x0016,
  ECDSA: 0x0018,
  ECC: 0x0023,
} as const;

export type { HashName } from "./evidence.js";

/** TPM_ALG_ID → node:crypto hash name and digest size. */
export const HASH_ALGS: Readonly<Record<number, { name: HashName; bytes: number }>> = {
  [TPM_ALG.SHA1]: { name: "sha1", bytes: 20 },
  [TPM_ALG.SHA256]: { name: "sha256", bytes: 32 },
  [TPM_ALG.SHA384]: { name: "sha384", bytes: 48 },
  [TPM_ALG.SHA512]: { name: "sha512", bytes: 64 },
};

export function hashAlgId(name: HashName): number {
  return Number(Object.entries(HASH_ALGS).find(([, v]) => v.name === name)![0]);
}

const CURVES: Readonly<Record<number, { crv: string; bytes: number }>> = {
  0x0003: { crv: "P-256", bytes: 32 },
  0x0004: { crv: "P-384", bytes: 48 },
  0x0005: { crv: "P-521", bytes: 66 },
};

/** TPMA_OBJECT bits an attestation key's trustworthiness depends on (Part 2 §8.3). */
export const TPMA_OBJECT = {
  fixedTPM: 1 << 1,
  fixedParent: 1 << 4,
  sensitiveDataOrigin: 1 << 5,
  userWithAuth: 1 << 6,
  adminWithPolicy: 1 << 7,
  restricted: 1 << 16,
  decrypt: 1 << 17,
  sign: 1 << 18,
} as const;

/** Reserved TPMA_OBJECT bits (0, 3, 8, 9, 12-15, 20-31): a TPM never sets them. */
const TPMA_OBJECT_RESERVED = 0xfff0f309;

/** Big-endian cursor that names the field and offset of any truncation. */
export class TpmReader {
  p = 0;
  constructor(
    readonly b: Uint8Array,
    readonly where: string,
  ) {}
  fail(field: string, why: string): never {
    throw new EvidenceFormatError(`${this.where}.${field}: ${why}`, `${this.where}.${field}`, this.p);
  }
  private need(n: number, field: string): void {
    if (this.p + n > this.b.length) this.fail(field, `truncated at offset ${this.p} (needs ${n} bytes)`);
  }
  u8(f: string): number {
    this.need(1, f);
    return this.b[this.p++];
  }
  u16(f: string): number {
    this.need(2, f);
    const v = (this.b[this.p] << 8) | this.b[this.p + 1];
    this.p += 2;
    return v;
  }
  u32(f: string): number {
    this.need(4, f);
    const v = Buffer.from(this.b.buffer, this.b.byteOffset + this.p, 4).readUInt32BE(0);
    this.p += 4;
    return v;
  }
  u64(f: string): bigint {
    this.need(8, f);
    const v = Buffer.from(this.b.buffer, this.b.byteOffset + this.p, 8).readBigUInt64BE(0);
    this.p += 8;
    return v;
  }
  bytes(n: number, f: string): Uint8Array {
    this.need(n, f);
    this.p += n;
    return this.b.subarray(this.p - n, this.p);
  }
  tpm2b(f: string, max = 4096): Uint8Array {
    const n = this.u16(`${f}.size`);
    if (n > max) this.fail(f, `size ${n} exceeds ${max}`);
    return this.bytes(n, f);
  }
  end(what: string): void {
    if (this.p !== this.b.length) this.fail(what, `${this.b.length - this.p} trailing bytes after the structure`);
  }
}

export interface PcrSelection {
  hashAlg: number;
  hash: HashName;
  /** Selected PCR indices, ascending (the order the TPM hashes them in). */
  pcrs: number[];
}

function readPcrSelections(r: TpmReader, f: string): PcrSelection[] {
  const count = r.u32(`${f}.count`);
  if (count > 16) r.fail(`${f}.count`, `${count} banks (at most 16)`);
  const out: PcrSelection[] = [];
  for (let i = 0; i < count; i++) {
    const hashAlg = r.u16(`${f}[${i}].hash`);
    const alg = HASH_ALGS[hashAlg];
    if (!alg) r.fail(`${f}[${i}].hash`, `unsupported hash algorithm 0x${hashAlg.toString(16)}`);
    const size = r.u8(`${f}[${i}].sizeofSelect`);
    if (size > 4) r.fail(`${f}[${i}].sizeofSelect`, `${size} bytes (a PC Client TPM has 24 PCRs: at most 4)`);
    const bitmap = r.bytes(size, `${f}[${i}].pcrSelect`);
    const pcrs: number[] = [];
    for (let j = 0; j < size * 8; j++) if (bitmap[j >> 3] & (1 << (j & 7))) pcrs.push(j);
    out.push({ hashAlg, hash: alg.name, pcrs });
  }
  return out;
}

export interface TpmsAttest {
  qualifiedSigner: Uint8Array;
  extraData: Uint8Array;
  clock: bigint;
  resetCount: number;
  restartCount: number;
  safe: boolean;
  firmwareVersion: bigint;
  pcrSelections: PcrSelection[];
  pcrDigest: Uint8Array;
}

/** TPMS_ATTEST of a TPM2_Quote (magic, TPM_ST_ATTEST_QUOTE, TPMS_QUOTE_INFO); anything else is refused. */
export function parseTpmsAttest(b: Uint8Array, where = "tpm_quote.message"): TpmsAttest {
  const r: TpmReader = new TpmReader(b, where);
  if (r.u32("magic") !== TPM_GENERATED_VALUE) {
    r.p = 0;
    r.fail("magic", "not TPM_GENERATED_VALUE (ff544347)");
  }
  const type = r.u16("type");
  if (type !== TPM_ST_ATTEST_QUOTE) r.fail("type", `0x${type.toString(16)} is not TPM_ST_ATTEST_QUOTE (0x8018)`);
  const qualifiedSigner = r.tpm2b("qualified_signer", 2 + 64);
  const extraData = r.tpm2b("extra_data", 64);
  const clock = r.u64("clock");
  const resetCount = r.u32("reset_count");
  const restartCount = r.u32("restart_count");
  const safeByte = r.u8("safe");
  if (safeByte > 1) r.fail("safe", `TPMI_YES_NO ${safeByte}`);
  const firmwareVersion = r.u64("firmware_version");
  const pcrSelections = readPcrSelections(r, "pcr_select");
  const pcrDigest = r.tpm2b("pcr_digest", 64);
  r.end("quote_info");
  return {
    qualifiedSigner,
    extraData,
    clock,
    resetCount,
    restartCount,
    safe: safeByte === 1,
    firmwareVersion,
    pcrSelections,
    pcrDigest,
  };
}

export type TpmSignature =
  | { alg: "rsassa" | "rsapss"; hash: HashName; sig: Uint8Array }
  | { alg: "ecdsa"; hash: HashName; r: Uint8Array; s: Uint8Array };

/** TPMT_SIGNATURE: RSASSA / RSAPSS (TPM2B signature) or ECDSA (TPM2B r, s). */
export function parseTpmtSignature(b: Uint8Array, where = "tpm_quote.signature"): TpmSignature {
  const r: TpmReader = new TpmReader(b, where);
  const sigAlg = r.u16("sigAlg");
  const hashAlg = r.u16("hash");
  const hash = HASH_ALGS[hashAlg]?.name;
  if (!hash) r.fail("hash", `unsupported hash algorithm 0x${hashAlg.toString(16)}`);
  let out: TpmSignature;
  if (sigAlg === TPM_ALG.RSASSA || sigAlg === TPM_ALG.RSAPSS) {
    out = { alg: sigAlg === TPM_ALG.RSASSA ? "rsassa" : "rsapss", hash, sig: r.tpm2b("sig", 512) };
  } else if (sigAlg === TPM_ALG.ECDSA) {
    out = { alg: "ecdsa", hash, r: r.tpm2b("signatureR", 66), s: r.tpm2b("signatureS", 66) };
  } else {
    r.p = 0;
    return r.fail("sigAlg", `0x${sigAlg.toString(16)} is not RSASSA (0x14), RSAPSS (0x16) or ECDSA (0x18)`);
  }
  r.end("signature");
  return out;
}

export interface TpmPublic {
  type: "rsa" | "ecc";
  nameAlg: HashName;
  objectAttributes: number;
  /** The signing scheme fixed in the key (restricted keys must have one), if any. */
  scheme?: { alg: "rsassa" | "rsapss" | "ecdsa"; hash: HashName };
  key: KeyObject;
  /** TPMT_PUBLIC bytes (without the TPM2B size), what the Name is computed over. */
  tpmtPublic: Uint8Array;
  /** TPM Name: nameAlg ‖ H_nameAlg(TPMT_PUBLIC). */
  name: Uint8Array;
  /** The object's authPolicy (empty when none). */
  authPolicy: Uint8Array;
  /** The symmetric definition of a storage/decryption key (an EK's: AES-128/256 CFB), if not TPM_ALG_NULL. */
  symmetric?: { alg: number; keyBits: number; mode: number };
}

const b64u = (b: Uint8Array) => Buffer.from(b).toString("base64url");

function readSymmetric(r: TpmReader, f: string): TpmPublic["symmetric"] {
  const alg = r.u16(`${f}.algorithm`);
  if (alg === TPM_ALG.NULL) return undefined;
  return { alg, keyBits: r.u16(`${f}.keyBits`), mode: r.u16(`${f}.mode`) };
}

function readScheme(r: TpmReader, f: string): TpmPublic["scheme"] {
  const alg = r.u16(`${f}.scheme`);
  if (alg === TPM_ALG.NULL) return undefined;
  const names: Record<number, "rsassa" | "rsapss" | "ecdsa"> = {
    [TPM_ALG.RSASSA]: "rsassa",
    [TPM_ALG.RSAPSS]: "rsapss",
    [TPM_ALG.ECDSA]: "ecdsa",
  };
  const name = names[alg];
  if (!name) r.fail(`${f}.scheme`, `signing scheme 0x${alg.toString(16)} is not RSASSA, RSAPSS or ECDSA`);
  const hashAlg = r.u16(`${f}.hashAlg`);
  const hash = HASH_ALGS[hashAlg]?.name;
  if (!hash) r.fail(`${f}.hashAlg`, `unsupported hash algorithm 0x${hashAlg.toString(16)}`);
  return { alg: name, hash };
}

/**
 * TPM2B_PUBLIC (with its size prefix) or a bare TPMT_PUBLIC (`sized: false`) of an RSA or ECC key, as
 * tpm2_createak -f tpmt / TPM2_ReadPublic output it. The key is returned as a node KeyObject.
 */
export function parseTpmPublic(b: Uint8Array, opts: { sized?: boolean; where?: string } = {}): TpmPublic {
  const where = opts.where ?? "ak_public";
  let body = b;
  if (opts.sized !== false) {
    const outer = new TpmReader(b, where);
    body = outer.tpm2b("size", 2048);
    outer.end("public");
  }
  const r: TpmReader = new TpmReader(body, where);
  const type = r.u16("type");
  const nameAlgId = r.u16("nameAlg");
  const nameAlg = HASH_ALGS[nameAlgId]?.name;
  if (!nameAlg) r.fail("nameAlg", `unsupported name algorithm 0x${nameAlgId.toString(16)}`);
  const objectAttributes = r.u32("objectAttributes");
  if (objectAttributes & TPMA_OBJECT_RESERVED)
    r.fail("objectAttributes", `reserved bits set (0x${(objectAttributes & TPMA_OBJECT_RESERVED).toString(16)})`);
  const authPolicy = r.tpm2b("authPolicy", 64);
  let key: KeyObject;
  let scheme: TpmPublic["scheme"];
  let symmetric: TpmPublic["symmetric"];
  let kind: "rsa" | "ecc";
  if (type === TPM_ALG.RSA) {
    kind = "rsa";
    symmetric = readSymmetric(r, "parameters.symmetric");
    scheme = readScheme(r, "parameters.scheme");
    const keyBits = r.u16("parameters.keyBits");
    if (keyBits !== 2048 && keyBits !== 3072 && keyBits !== 4096)
      r.fail("parameters.keyBits", `${keyBits} (2048, 3072 or 4096 expected)`);
    const exp = r.u32("parameters.exponent");
    const n = r.tpm2b("unique", 512);
    if (n.length * 8 !== keyBits) r.fail("unique", `modulus of ${n.length} bytes for a ${keyBits}-bit key`);
    const e = Buffer.alloc(4);
    e.writeUInt32BE(exp === 0 ? 65537 : exp);
    let i = 0;
    while (i < 3 && e[i] === 0) i++;
    key = createPublicKey({ key: { kty: "RSA", n: b64u(n), e: b64u(e.subarray(i)) }, format: "jwk" });
  } else if (type === TPM_ALG.ECC) {
    kind = "ecc";
    symmetric = readSymmetric(r, "parameters.symmetric");
    scheme = readScheme(r, "parameters.scheme");
    const curveId = r.u16("parameters.curveID");
    const curve = CURVES[curveId];
    if (!curve) r.fail("parameters.curveID", `0x${curveId.toString(16)} is not NIST P-256, P-384 or P-521`);
    const kdf = r.u16("parameters.kdf.scheme");
    if (kdf !== TPM_ALG.NULL) r.u16("parameters.kdf.hashAlg");
    const x = r.tpm2b("unique.x", 66);
    const y = r.tpm2b("unique.y", 66);
    if (x.length !== curve.bytes || y.length !== curve.bytes)
      r.fail("unique", `point coordinates of ${x.length}/${y.length} bytes for ${curve.crv}`);
    try {
      key = createPublicKey({ key: { kty: "EC", crv: curve.crv, x: b64u(x), y: b64u(y) }, format: "jwk" });
    } catch {
      return r.fail("unique", `not a point on ${curve.crv}`);
    }
  } else {
    r.p = 0;
    return r.fail("type", `0x${type.toString(16)} is not TPM_ALG_RSA or TPM_ALG_ECC`);
  }
  r.end("public");
  const nameBuf = Buffer.alloc(2);
  nameBuf.writeUInt16BE(nameAlgId);
  const name = Buffer.concat([nameBuf, createHash(nameAlg).update(body).digest()]);
  return {
    type: kind,
    nameAlg,
    objectAttributes,
    scheme,
    key,
    tpmtPublic: body,
    name,
    authPolicy,
    ...(symmetric ? { symmetric } : {}),
  };
}

/** Is the key a restricted signing key that never leaves the TPM (what an AK must be)? Names what is missing. */
export function akAttributeProblems(pub: TpmPublic): string[] {
  const a = pub.objectAttributes;
  const problems: string[] = [];
  if (!(a & TPMA_OBJECT.sign)) problems.push("not a signing key (sign=0)");
  if (!(a & TPMA_OBJECT.restricted))
    problems.push("not restricted (restricted=0: it could sign forged TPMS_ATTEST data)");
  if (a & TPMA_OBJECT.decrypt) problems.push("also a decryption key (decrypt=1)");
  if (!(a & TPMA_OBJECT.fixedTPM)) problems.push("may be duplicated out of the TPM (fixedTPM=0)");
  if (!(a & TPMA_OBJECT.sensitiveDataOrigin)) problems.push("private key imported, not TPM-generated");
  return problems;
}
