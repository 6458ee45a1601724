// The wire form of attestation evidence (runtime-api.md `evidence`): what the enclaivelet sends in
// POST /v1/nitride/attest and what `explain` takes. JSON with binary fields in base64, snake_case names.
// One type and one encoder/decoder for both sides: the guest builds a WireEvidence, the runtime decodes
// it (strictly: unknown fields, non-canonical base64 and missing parts are errors naming the field) into
// the attestation library's Evidence.
import type { Evidence, TpmQuote } from "../attestation/types.js";
import { WireFormatError, decodeBase64, encodeBase64, isObject, onlyKeys, type JsonObject } from "./errors.js";

export const EVIDENCE_KINDS = ["snp", "tdx", "azure-snp", "azure-tdx"] as const;
export type EvidenceKind = (typeof EVIDENCE_KINDS)[number];

/** A vTPM quote: TPMS_ATTEST message, signature, and the quoted SHA-256 PCRs (index "0".."23" → value). */
export interface WireTpmQuote {
  message: string;
  signature: string;
  pcrs: Record<string, string>;
}

export type WireEvidence =
  /** SEV-SNP: the attestation report, and optionally the extended-report certificate table or the VEK DER. */
  | { kind: "snp"; report: string; cert_table?: string; vek?: string }
  /** TDX: a DCAP quote (v4/v5). */
  | { kind: "tdx"; quote: string }
  /** Azure SEV-SNP CVM: the paravisor's HCL report and a vTPM quote; optionally the VCEK chain (PEM) from IMDS. */
  | { kind: "azure-snp"; hcl_report: string; tpm_quote: WireTpmQuote; vcek_chain_pem?: string }
  /** Azure TDX CVM: the HCL report, the TD quote for its hardware report, and a vTPM quote. */
  | { kind: "azure-tdx"; hcl_report: string; td_quote: string; tpm_quote: WireTpmQuote };

const FIELDS: Record<EvidenceKind, readonly string[]> = {
  snp: ["kind", "report", "cert_table", "vek"],
  tdx: ["kind", "quote"],
  "azure-snp": ["kind", "hcl_report", "tpm_quote", "vcek_chain_pem"],
  "azure-tdx": ["kind", "hcl_report", "td_quote", "tpm_quote"],
};

const PCR_INDEX = /^(?:[0-9]|1[0-9]|2[0-3])$/;

function present(o: JsonObject, key: string): boolean {
  return o[key] !== undefined && o[key] !== null;
}

function decodeTpmQuote(v: unknown, field: string): TpmQuote {
  if (!isObject(v)) throw new WireFormatError(field, "must be an object {message, signature, pcrs}");
  onlyKeys(v, field, ["message", "signature", "pcrs"]);
  if (!isObject(v.pcrs)) throw new WireFormatError(`${field}.pcrs`, "must be an object of PCR index → base64");
  const pcrs: Record<number, Uint8Array> = {};
  for (const [k, x] of Object.entries(v.pcrs)) {
    if (!PCR_INDEX.test(k)) throw new WireFormatError(`${field}.pcrs`, `"${k.slice(0, 8)}" is not a PCR index 0..23`);
    pcrs[Number(k)] = decodeBase64(x, `${field}.pcrs.${k}`);
  }
  return {
    message: decodeBase64(v.message, `${field}.message`),
    signature: decodeBase64(v.signature, `${field}.signature`),
    pcrs,
  };
}

/** Wire JSON → Evidence. Throws WireFormatError naming the field (`field` is the JSON path of the value). */
export function decodeEvidence(v: unknown, field = "evidence"): Evidence {
  if (!isObject(v)) throw new WireFormatError(field, `must be an object with a "kind"`);
  const kind = v.kind;
  if (typeof kind !== "string" || !(EVIDENCE_KINDS as readonly string[]).includes(kind))
    throw new WireFormatError(`${field}.kind`, `must be one of ${EVIDENCE_KINDS.join(", ")}`);
  onlyKeys(v, field, FIELDS[kind as EvidenceKind]);
  switch (kind as EvidenceKind) {
    case "snp": {
      const e: Evidence = { kind: "snp", report: decodeBase64(v.report, `${field}.report`) };
      if (present(v, "cert_table"))
        e.certTable = decodeBase64(v.cert_table, `${field}.cert_table`, { allowEmpty: true });
      if (present(v, "vek")) e.vek = decodeBase64(v.vek, `${field}.vek`, { allowEmpty: true });
      return e;
    }
    case "tdx":
      return { kind: "tdx", quote: decodeBase64(v.quote, `${field}.quote`) };
    case "azure-snp": {
      const e: Evidence = {
        kind: "azure-snp",
        hclReport: decodeBase64(v.hcl_report, `${field}.hcl_report`),
        tpmQuote: decodeTpmQuote(v.tpm_quote, `${field}.tpm_quote`),
      };
      if (present(v, "vcek_chain_pem")) {
        if (typeof v.vcek_chain_pem !== "string" || !v.vcek_chain_pem.includes("-----BEGIN CERTIFICATE-----"))
          throw new WireFormatError(`${field}.vcek_chain_pem`, "must be a PEM certificate chain");
        e.vcekChainPem = v.vcek_chain_pem;
      }
      return e;
    }
    case "azure-tdx":
      return {
        kind: "azure-tdx",
        hclReport: decodeBase64(v.hcl_report, `${field}.hcl_report`),
        tdQuote: decodeBase64(v.td_quote, `${field}.td_quote`),
        tpmQuote: decodeTpmQuote(v.tpm_quote, `${field}.tpm_quote`),
      };
  }
}

function encodeTpmQuote(q: TpmQuote): WireTpmQuote {
  return {
    message: encodeBase64(q.message),
    signature: encodeBase64(q.signature),
    pcrs: Object.fromEntries(Object.entries(q.pcrs).map(([k, x]) => [k, encodeBase64(x)])),
  };
}

/** Evidence → wire JSON (the inverse of decodeEvidence; `caChain` is local to a verifier and not sent). */
export function encodeEvidence(e: Evidence): WireEvidence {
  switch (e.kind) {
    case "snp":
      return {
        kind: "snp",
        report: encodeBase64(e.report),
        ...(e.certTable ? { cert_table: encodeBase64(e.certTable) } : {}),
        ...(e.vek ? { vek: encodeBase64(e.vek) } : {}),
      };
    case "tdx":
      return { kind: "tdx", quote: encodeBase64(e.quote) };
    case "azure-snp":
      return {
        kind: "azure-snp",
        hcl_report: encodeBase64(e.hclReport),
        tpm_quote: encodeTpmQuote(e.tpmQuote),
        ...(e.vcekChainPem ? { vcek_chain_pem: e.vcekChainPem } : {}),
      };
    case "azure-tdx":
      return {
        kind: "azure-tdx",
        hcl_report: encodeBase64(e.hclReport),
        td_quote: encodeBase64(e.tdQuote),
        tpm_quote: encodeTpmQuote(e.tpmQuote),
      };
  }
}
