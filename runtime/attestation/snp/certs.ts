// AMD SEV-SNP certificates: VCEK/VLEK profile and KDS extensions (spec #57230), ARK/ASK/ASVK roles, the
// pinned ARK fingerprints and CRL checks. Parsing uses @peculiar/x509; signatures, the chain walk and CRLs are
// the shared ../x509.ts (node:crypto, RSASSA-PSS aware), which memoises verified signatures and CRLs by DER
// digest, so a warm verifier does not redo RSA work for a chain it has already checked.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import type { KeyObject } from "node:crypto";
import { EvidenceFormatError } from "../types.js";
import { pemDecode } from "../pem.js";
import {
  chainCert,
  checkCrl as checkIssuerCrl,
  sha256Hex,
  signedBy,
  type ChainCert,
  type CrlFaultKind,
} from "../x509.js";
import { productFromName, type SnpProduct, type TcbVersion } from "./abi.js";

/**
 * SHA-256 fingerprints (DER) of the genuine AMD root keys. Computed from the ARK certificates AMD publishes
 * at https://kdsintf.amd.com/vcek/v1/<Product>/cert_chain (identical in go-sev-guest, virtee/sev, trustee).
 * Only these fingerprints are pinned; the certificates themselves come from evidence, an operator directory or KDS.
 */
export const PINNED_ARK_SHA256: Readonly<Record<SnpProduct, string>> = {
  Milan: "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
  Genoa: "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
  Turin: "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
};

const KDS_OID = "1.3.6.1.4.1.3704.1";
export const OID = {
  structVersion: `${KDS_OID}.1`,
  productName: `${KDS_OID}.2`,
  blSPL: `${KDS_OID}.3.1`,
  teeSPL: `${KDS_OID}.3.2`,
  snpSPL: `${KDS_OID}.3.3`,
  spl4: `${KDS_OID}.3.4`,
  spl5: `${KDS_OID}.3.5`,
  spl6: `${KDS_OID}.3.6`,
  spl7: `${KDS_OID}.3.7`,
  ucodeSPL: `${KDS_OID}.3.8`,
  fmcSPL: `${KDS_OID}.3.9`,
  hwID: `${KDS_OID}.4`,
  cspID: `${KDS_OID}.5`,
} as const;

export type CaRole = "ark" | "ask" | "asvk";

/** A certificate as the SNP verifier sees it: the shared walker's view (../x509.ts) plus names and dates. */
export interface ParsedCert extends ChainCert {
  subjectCN: string;
  issuerCN: string;
  subject: string;
  issuer: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  publicKey: KeyObject;
}

export interface CaCert extends ParsedCert {
  role: CaRole;
  product: SnpProduct;
}

export interface VekCert extends ParsedCert {
  kind: "vcek" | "vlek";
  structVersion: number;
  productName: string;
  product?: SnpProduct;
  spl: {
    bl: number;
    tee: number;
    snp: number;
    ucode: number;
    fmc?: number;
    spl4?: number;
    spl5?: number;
    spl6?: number;
    spl7?: number;
  };
  /** VCEK only: 64 bytes (Milan/Genoa) or 8 bytes (Turin). */
  hwId?: Uint8Array;
  /** VLEK only, e.g. "CN=cc-us-east-2.amazonaws.com". */
  cspId?: string;
}

// ---- small DER readers for the KDS extension values ----------------------------------------------

function derValue(v: Uint8Array, what: string): { tag: number; content: Uint8Array } {
  if (v.length < 2) throw new EvidenceFormatError(`${what}: truncated DER value`, what);
  const tag = v[0];
  let len = v[1];
  let off = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 2 || v.length < 2 + n) throw new EvidenceFormatError(`${what}: bad DER length`, what);
    len = 0;
    for (let i = 0; i < n; i++) len = (len << 8) | v[2 + i];
    off = 2 + n;
  }
  if (off + len !== v.length)
    throw new EvidenceFormatError(`${what}: DER length ${len} does not match ${v.length - off} content bytes`, what);
  return { tag, content: v.subarray(off) };
}

function derSmallUint(v: Uint8Array, what: string): number {
  const { tag, content } = derValue(v, what);
  if (tag !== 0x02 || content.length === 0 || content.length > 4)
    throw new EvidenceFormatError(`${what}: expected a small DER INTEGER`, what);
  if (content[0] & 0x80) throw new EvidenceFormatError(`${what}: negative INTEGER`, what);
  let n = 0;
  for (const b of content) n = n * 256 + b;
  return n;
}

function derString(v: Uint8Array, what: string): string {
  const { tag, content } = derValue(v, what);
  if (tag !== 0x16 && tag !== 0x0c && tag !== 0x13) throw new EvidenceFormatError(`${what}: expected IA5String`, what);
  return Buffer.from(content).toString("latin1");
}

/** hwID is raw bytes in real VCEKs (64 or 8); some tools wrap it in an OCTET STRING. */
function hwIdBytes(v: Uint8Array): Uint8Array {
  if (v.length === 64 || v.length === 8) return v;
  if (v[0] === 0x04 && (v.length === 66 || v.length === 10) && v[1] === v.length - 2) return v.subarray(2);
  throw new EvidenceFormatError(`VEK hwID extension: expected 64 or 8 bytes, got ${v.length}`, "vek.hwID");
}

// ---- parsing --------------------------------------------------------------------------------------

const parsedCache = new Map<string, ParsedCert>();
// Bounded: a Nitride serving many chips and TCBs keeps their VEKs warm; hostile input only evicts (FIFO).
const MAX_CACHE = 2048;

function remember<K, V>(m: Map<K, V>, k: K, v: V): V {
  if (m.size >= MAX_CACHE) m.delete(m.keys().next().value as K);
  m.set(k, v);
  return v;
}

function cnOf(name: x509.Name): string {
  const cn = name.getField("CN");
  return cn[0] ?? "";
}

/** Accepts PEM (one or many certificates) or DER; returns DER blobs. */
export function splitCertificates(data: Uint8Array | string): Uint8Array[] {
  if (typeof data !== "string" && data[0] === 0x30) return [data]; // DER SEQUENCE: no text scan needed
  const text = typeof data === "string" ? data : Buffer.from(data).toString("latin1");
  if (text.includes("-----BEGIN")) {
    const out = pemDecode(text, "CERTIFICATE", "certificate");
    if (out.length === 0) throw new EvidenceFormatError("PEM input holds no CERTIFICATE block", "certificate");
    return out;
  }
  if (typeof data === "string") throw new EvidenceFormatError("certificate text is not PEM", "certificate");
  return [data];
}

/** Parses one DER certificate (memoised by digest). */
export function parseCert(der: Uint8Array): ParsedCert {
  const sha256 = sha256Hex(der);
  const hit = parsedCache.get(sha256);
  if (hit) return hit;
  let parsed: ParsedCert;
  try {
    // @peculiar/x509 decodes lazily, so every field is read inside the guard.
    const base = chainCert(der);
    const pc = new x509.X509Certificate(der);
    parsed = {
      ...base,
      subjectCN: cnOf(pc.subjectName),
      issuerCN: cnOf(pc.issuerName),
      subject: pc.subject,
      issuer: pc.issuer,
      serial: pc.serialNumber.toLowerCase(),
      notBefore: pc.notBefore,
      notAfter: pc.notAfter,
      publicKey: base.node.publicKey,
    };
  } catch (e) {
    throw new EvidenceFormatError(
      `certificate does not parse as X.509: ${(e as Error)?.message ?? "malformed"}`,
      "certificate",
    );
  }
  return remember(parsedCache, sha256, parsed);
}

/** Classifies an AMD CA certificate by subject CN: ARK-<P>, SEV-<P> (ASK), SEV-VLEK-<P> (ASVK). */
export function asCaCert(p: ParsedCert): CaCert | undefined {
  const m = /^(ARK|SEV-VLEK|SEV)-([A-Za-z]+)$/.exec(p.subjectCN);
  if (!m) return undefined;
  const product = productFromName(m[2]);
  if (!product) return undefined;
  const role: CaRole = m[1] === "ARK" ? "ark" : m[1] === "SEV-VLEK" ? "asvk" : "ask";
  return { ...p, role, product };
}

const vekCache = new Map<string, VekCert>();

/** Parses a VCEK or VLEK and checks its profile (EC P-384 key, KDS extensions, hwID xor cspID). */
export function parseVek(data: Uint8Array | string): VekCert {
  const ders = splitCertificates(data);
  const der = ders[0];
  const p = parseCert(der);
  const hit = vekCache.get(p.sha256);
  if (hit) return hit;
  let kind: "vcek" | "vlek";
  if (p.subjectCN === "SEV-VCEK") kind = "vcek";
  else if (p.subjectCN === "SEV-VLEK") kind = "vlek";
  else
    throw new EvidenceFormatError(`VEK subject CN must be SEV-VCEK or SEV-VLEK, got '${p.subjectCN}'`, "vek.subject");
  const details = p.publicKey.asymmetricKeyDetails;
  if (p.publicKey.asymmetricKeyType !== "ec" || details?.namedCurve !== "secp384r1") {
    throw new EvidenceFormatError(
      `VEK public key must be EC P-384, got ${p.publicKey.asymmetricKeyType} ${details?.namedCurve ?? ""}`.trim(),
      "vek.publicKey",
    );
  }
  const ext = new Map<string, Uint8Array>();
  try {
    for (const e of new x509.X509Certificate(der).extensions) ext.set(e.type, new Uint8Array(e.value));
  } catch (e) {
    throw new EvidenceFormatError(
      `VEK extensions do not parse: ${(e as Error)?.message ?? "malformed"}`,
      "vek.extensions",
    );
  }
  const int = (oid: string, name: string, required: boolean): number | undefined => {
    const v = ext.get(oid);
    if (!v) {
      if (required) throw new EvidenceFormatError(`VEK lacks the ${name} extension (${oid})`, `vek.${name}`);
      return undefined;
    }
    const n = derSmallUint(v, `vek.${name}`);
    if (name.endsWith("SPL") && n > 255) throw new EvidenceFormatError(`VEK ${name} ${n} exceeds 255`, `vek.${name}`);
    return n;
  };
  const nameExt = ext.get(OID.productName);
  if (!nameExt)
    throw new EvidenceFormatError(`VEK lacks the productName extension (${OID.productName})`, "vek.productName");
  const productName = derString(nameExt, "vek.productName");
  const product = productFromName(productName);
  const spl: VekCert["spl"] = {
    bl: int(OID.blSPL, "blSPL", true)!,
    tee: int(OID.teeSPL, "teeSPL", true)!,
    snp: int(OID.snpSPL, "snpSPL", true)!,
    ucode: int(OID.ucodeSPL, "ucodeSPL", true)!,
    fmc: int(OID.fmcSPL, "fmcSPL", product === "Turin"),
    spl4: int(OID.spl4, "spl4", false),
    spl5: int(OID.spl5, "spl5", false),
    spl6: int(OID.spl6, "spl6", false),
    spl7: int(OID.spl7, "spl7", false),
  };
  const hw = ext.get(OID.hwID);
  const csp = ext.get(OID.cspID);
  if (hw && csp) throw new EvidenceFormatError("VEK carries both hwID and cspID", "vek.hwID");
  let hwId: Uint8Array | undefined;
  let cspId: string | undefined;
  if (kind === "vcek") {
    if (!hw) throw new EvidenceFormatError(`VCEK lacks the hwID extension (${OID.hwID})`, "vek.hwID");
    hwId = hwIdBytes(hw);
  } else {
    if (!csp) throw new EvidenceFormatError(`VLEK lacks the cspID extension (${OID.cspID})`, "vek.cspID");
    cspId = derString(csp, "vek.cspID");
  }
  const vek: VekCert = {
    ...p,
    kind,
    structVersion: int(OID.structVersion, "structVersion", false) ?? 0,
    productName,
    product,
    spl,
    hwId,
    cspId,
  };
  return remember(vekCache, p.sha256, vek);
}

/** The TCB a VEK certifies, in report terms. */
export function vekTcb(v: VekCert): TcbVersion {
  const t: TcbVersion = { bootloader: v.spl.bl, tee: v.spl.tee, snp: v.spl.snp, microcode: v.spl.ucode };
  if (v.spl.fmc !== undefined) t.fmc = v.spl.fmc;
  return t;
}

// ---- signatures and CRLs --------------------------------------------------------------------------

/** True when `issuer`'s key signed `cert` (the shared walker's memoised check: a warm chain costs no RSA work). */
export const issuedBy = (cert: ParsedCert, issuer: ParsedCert): boolean => signedBy(cert, issuer);

export interface CrlResult {
  ok: boolean;
  detail: string;
  /** The first fault: "issuer" and "parse" mean the CRL is not the ARK's (not applicable), not that it failed. */
  fault?: CrlFaultKind;
}

/**
 * Checks a DER CRL (the shared checkCrl of ../x509.ts): signed by the ARK, current at `now`, and not listing
 * `subject` (ASK/ASVK) by serial. Any parse failure is a failed result, never an exception.
 */
export function checkCrl(crlBytes: Uint8Array, ark: ParsedCert, subject: ParsedCert, now: Date): CrlResult {
  const r = checkIssuerCrl(crlBytes, ark, subject, now);
  if (r.ok)
    return {
      ok: true,
      detail: `${subject.subjectCN} is not on the ARK's CRL (${r.entries} entries, thisUpdate ${r.thisUpdate!.toISOString()})`,
    };
  const detail = r.faults
    .map((f) =>
      f.kind === "revoked"
        ? `${subject.subjectCN} (serial ${subject.serial}) is revoked since ${r.revokedAt!.toISOString()}`
        : f.kind === "signature"
          ? "CRL signature does not verify with the ARK"
          : f.detail,
    )
    .join("; ");
  return { ok: false, detail, fault: r.faults[0].kind };
}
