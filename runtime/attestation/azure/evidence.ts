// Azure CVM evidence as it travels: the JSON shapes of confidential-containers/trustee's az-snp-vtpm and
// az-tdx-vtpm attesters (v0 byte arrays; v1/v2 hex + base64url), and the bincode {sig,msg,pcrs} TPM quote.
// Everything is normalised to the shared Evidence union; the kind comes from the HCL report itself.
import { EvidenceFormatError, type Evidence, type TpmQuote } from "../types.js";
import { pemEncode } from "../pem.js";
import { parseHclReport } from "./abi.js";

export type AzureEvidence = Extract<Evidence, { kind: "azure-snp" | "azure-tdx" }>;

/** Decodes a byte field given as a JSON number array, hex string or base64/base64url string. */
export function bytesField(v: unknown, field: string, encoding?: "hex" | "base64"): Uint8Array {
  if (Array.isArray(v)) {
    if (!v.every((x) => Number.isInteger(x) && x >= 0 && x <= 255))
      throw new EvidenceFormatError(`${field}: array holds a non-byte value`, field);
    return Uint8Array.from(v as number[]);
  }
  if (typeof v !== "string") throw new EvidenceFormatError(`${field}: expected bytes (array, hex or base64)`, field);
  const s = v.trim();
  const isHex = /^(?:[0-9a-fA-F]{2})*$/.test(s);
  if (encoding === "hex" || (encoding === undefined && isHex)) {
    if (!isHex) throw new EvidenceFormatError(`${field}: not hex`, field);
    return Buffer.from(s, "hex");
  }
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(s)) throw new EvidenceFormatError(`${field}: not base64`, field);
  return Buffer.from(s.replace(/-/g, "+").replace(/_/g, "/"), "base64");
}

function tpmQuoteFrom(v: unknown, field: string, encoding?: "hex"): TpmQuote {
  if (typeof v !== "object" || v === null)
    throw new EvidenceFormatError(`${field}: expected {signature, message, pcrs}`, field);
  const o = v as Record<string, unknown>;
  if (!Array.isArray(o.pcrs))
    throw new EvidenceFormatError(`${field}.pcrs: expected a list of PCR values`, `${field}.pcrs`);
  const pcrs: Record<number, Uint8Array> = {};
  o.pcrs.forEach((p, i) => (pcrs[i] = bytesField(p, `${field}.pcrs[${i}]`, encoding)));
  return {
    signature: bytesField(o.signature, `${field}.signature`, encoding),
    message: bytesField(o.message, `${field}.message`, encoding),
    pcrs,
  };
}

/** The bincode encoding of trustee's vtpm Quote {signature, message, pcrs} (u64 LE lengths). */
export function parseBincodeTpmQuote(b: Uint8Array): TpmQuote {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  let p = 0;
  const len = (f: string) => {
    if (p + 8 > buf.length) throw new EvidenceFormatError(`tpm_quote.${f}: truncated`, `tpm_quote.${f}`, p);
    const n = buf.readBigUInt64LE(p);
    p += 8;
    if (n > BigInt(buf.length))
      throw new EvidenceFormatError(`tpm_quote.${f}: length ${n} exceeds the input`, `tpm_quote.${f}`, p - 8);
    return Number(n);
  };
  const take = (n: number, f: string) => {
    if (p + n > buf.length) throw new EvidenceFormatError(`tpm_quote.${f}: truncated`, `tpm_quote.${f}`, p);
    p += n;
    return b.subarray(p - n, p);
  };
  const signature = take(len("signature"), "signature");
  const message = take(len("message"), "message");
  const count = len("pcrs");
  const pcrs: Record<number, Uint8Array> = {};
  for (let i = 0; i < count; i++) pcrs[i] = take(32, `pcrs[${i}]`);
  if (p !== buf.length)
    throw new EvidenceFormatError(`tpm_quote: ${buf.length - p} unexpected trailing bytes`, "tpm_quote", p);
  return { signature, message, pcrs };
}

/** A TPM quote file: trustee JSON ({signature,message,pcrs} hex) or bincode. */
export function parseTpmQuoteFile(b: Uint8Array): TpmQuote {
  const text = Buffer.from(b).toString("utf8").trimStart();
  if (text.startsWith("{")) {
    let o: unknown;
    try {
      o = JSON.parse(text);
    } catch {
      throw new EvidenceFormatError("tpm_quote: not JSON", "tpm_quote");
    }
    return tpmQuoteFrom(o, "tpm_quote");
  }
  return parseBincodeTpmQuote(b);
}

function vcekPem(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new EvidenceFormatError("vcek: expected PEM or base64 DER", "vcek");
  if (v.includes("-----BEGIN")) return v;
  const der = bytesField(v, "vcek", "base64");
  return pemEncode("CERTIFICATE", der);
}

/**
 * Parses an Azure evidence JSON document. Accepted shapes (all from trustee's attesters):
 *  - SNP v0: {report: [HCL bytes], quote: {signature, message, pcrs: [[32 bytes]…]} (byte arrays), vcek: PEM}
 *  - SNP v1/v2: {version, hcl_report: base64url, tpm_quote: {signature, message, pcrs} (hex), vcek: base64 DER}
 *  - TDX v0: {hcl_report: [bytes], td_quote: [bytes], tpm_quote: {…byte arrays}}
 *  - TDX v1: {version, hcl_report: base64url, td_quote: base64url, tpm_quote: {…hex}}
 * Byte fields may also be given in any of the three encodings.
 */
export function parseAzureEvidence(input: string | Uint8Array): AzureEvidence {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(typeof input === "string" ? input : Buffer.from(input).toString("utf8")) as Record<
      string,
      unknown
    >;
  } catch {
    throw new EvidenceFormatError("azure evidence: not JSON", "evidence");
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc))
    throw new EvidenceFormatError("azure evidence: expected a JSON object", "evidence");
  const hclRaw = doc.hcl_report ?? doc.report;
  if (hclRaw === undefined)
    throw new EvidenceFormatError("azure evidence: no hcl_report (or v0 'report')", "hcl_report");
  const hclReport = bytesField(
    hclRaw,
    doc.hcl_report !== undefined ? "hcl_report" : "report",
    Array.isArray(hclRaw) ? undefined : "base64",
  );
  const quoteRaw = doc.tpm_quote ?? doc.quote;
  if (quoteRaw === undefined)
    throw new EvidenceFormatError("azure evidence: no tpm_quote (or v0 'quote')", "tpm_quote");
  const tpmQuote = tpmQuoteFrom(quoteRaw, doc.tpm_quote !== undefined ? "tpm_quote" : "quote");
  const hcl = parseHclReport(hclReport);
  if (hcl.type === "tdx") {
    if (doc.td_quote === undefined)
      throw new EvidenceFormatError("azure evidence: TDX HCL report without td_quote", "td_quote");
    const tdQuote = bytesField(doc.td_quote, "td_quote", Array.isArray(doc.td_quote) ? undefined : "base64");
    return { kind: "azure-tdx", hclReport, tdQuote, tpmQuote };
  }
  return { kind: "azure-snp", hclReport, tpmQuote, vcekChainPem: vcekPem(doc.vcek) };
}
