// The wire form of attestation evidence (runtime-api.md `evidence`): what the enclaivelet sends in
// POST /v1/nitride/attest and what `explain` takes. JSON with binary fields in base64, snake_case names.
// One type and one encoder/decoder for both sides: the guest builds a WireEvidence, the runtime decodes
// it (strictly: unknown fields, non-canonical base64 and missing parts are errors naming the field) into
// the attestation library's Evidence.
import type { Evidence, TpmQuote } from "../attestation/types.js";
import type { PcrValues, TpmEvidence } from "../attestation/tpm/verify.js";
import { WireFormatError, decodeBase64, encodeBase64, isObject, onlyKeys, type JsonObject } from "./errors.js";

export const EVIDENCE_KINDS = ["snp", "tdx", "azure-snp", "azure-tdx"] as const;
export type EvidenceKind = (typeof EVIDENCE_KINDS)[number];

/** A vTPM quote: TPMS_ATTEST message, signature, and the quoted SHA-256 PCRs (index "0".."23" → value). */
export interface WireTpmQuote {
  message: string;
  signature: string;
  pcrs: Record<string, string>;
}

/**
 * AWS NitroTPM / GCE vTPM riding on snp/tdx evidence: the AK (TPM2B_PUBLIC), the quote (TPMS_ATTEST +
 * TPMT_SIGNATURE), the TCG event log, and optionally the quoted PCR values per bank (index → base64).
 */
export interface WireVtpm {
  ak_public: string;
  quote: string;
  signature: string;
  event_log?: string;
  /** AWS: the NitroTPM attestation document (COSE_Sign1 CBOR) requested with the quote's nonce. */
  nitro_document?: string;
  pcrs?: Partial<Record<"sha1" | "sha256" | "sha384" | "sha512", Record<string, string>>>;
  /** GCE: the vTPM's AK certificate (DER, base64) and intermediates. */
  ak_cert?: string;
  ak_intermediates?: string[];
}

export type WireEvidence =
  /** SEV-SNP: the attestation report, and optionally the extended-report certificate table or the VEK DER. */
  | { kind: "snp"; report: string; cert_table?: string; vek?: string; vtpm?: WireVtpm }
  /** TDX: a DCAP quote (v4/v5). */
  | { kind: "tdx"; quote: string; vtpm?: WireVtpm }
  /**
   * Azure SEV-SNP CVM: the paravisor's HCL report and a vTPM quote; optionally the VCEK chain (PEM) from IMDS and the
   * guest's TCG event log (binary_bios_measurements), which must replay to the quoted PCRs when the policy has
   * azure.measuredBoot.
   */
  | { kind: "azure-snp"; hcl_report: string; tpm_quote: WireTpmQuote; vcek_chain_pem?: string; event_log?: string }
  /** Azure TDX CVM: the HCL report, the TD quote for its hardware report, a vTPM quote, optionally the event log. */
  | { kind: "azure-tdx"; hcl_report: string; td_quote: string; tpm_quote: WireTpmQuote; event_log?: string };

const FIELDS: Record<EvidenceKind, readonly string[]> = {
  snp: ["kind", "report", "cert_table", "vek", "vtpm"],
  tdx: ["kind", "quote", "vtpm"],
  "azure-snp": ["kind", "hcl_report", "tpm_quote", "vcek_chain_pem", "event_log"],
  "azure-tdx": ["kind", "hcl_report", "td_quote", "tpm_quote", "event_log"],
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

const BANKS = ["sha1", "sha256", "sha384", "sha512"] as const;

/** evidence.vtpm (AWS/GCE, on snp/tdx evidence) → the attestation library's TpmEvidence; errors name the field. */
export function decodeWireVtpm(v: unknown, field: string): TpmEvidence {
  if (!isObject(v))
    throw new WireFormatError(field, "must be an object {ak_public, quote, signature, event_log, pcrs}");
  onlyKeys(v, field, [
    "ak_public",
    "quote",
    "signature",
    "event_log",
    "nitro_document",
    "pcrs",
    "ak_cert",
    "ak_intermediates",
  ]);
  const out: TpmEvidence = {
    akPublic: decodeBase64(v.ak_public, `${field}.ak_public`),
    quote: decodeBase64(v.quote, `${field}.quote`),
    signature: decodeBase64(v.signature, `${field}.signature`),
  };
  if (present(v, "event_log")) out.eventLog = decodeBase64(v.event_log, `${field}.event_log`);
  if (present(v, "nitro_document")) out.nitroDocument = decodeBase64(v.nitro_document, `${field}.nitro_document`);
  if (present(v, "ak_cert")) out.akCertificate = decodeBase64(v.ak_cert, `${field}.ak_cert`);
  if (present(v, "ak_intermediates")) {
    if (!Array.isArray(v.ak_intermediates) || v.ak_intermediates.length > 4)
      throw new WireFormatError(`${field}.ak_intermediates`, "must be a list of at most 4 base64 certificates");
    out.akIntermediates = v.ak_intermediates.map((x, i) => decodeBase64(x, `${field}.ak_intermediates[${i}]`));
  }
  if (present(v, "pcrs")) {
    if (!isObject(v.pcrs)) throw new WireFormatError(`${field}.pcrs`, "must be an object of bank → {index → base64}");
    const pcrs: PcrValues = {};
    for (const [bank, values] of Object.entries(v.pcrs)) {
      if (!(BANKS as readonly string[]).includes(bank))
        throw new WireFormatError(`${field}.pcrs`, `"${bank.slice(0, 8)}" is not one of ${BANKS.join(", ")}`);
      if (!isObject(values)) throw new WireFormatError(`${field}.pcrs.${bank}`, "must be an object of index → base64");
      const b: Record<number, Uint8Array> = {};
      for (const [k, x] of Object.entries(values)) {
        if (!PCR_INDEX.test(k))
          throw new WireFormatError(`${field}.pcrs.${bank}`, `"${k.slice(0, 8)}" is not a PCR index 0..23`);
        b[Number(k)] = decodeBase64(x, `${field}.pcrs.${bank}.${k}`);
      }
      pcrs[bank as (typeof BANKS)[number]] = b;
    }
    out.pcrs = pcrs;
  }
  return out;
}

function encodeVtpm(t: TpmEvidence): WireVtpm {
  return {
    ak_public: encodeBase64(t.akPublic),
    quote: encodeBase64(t.quote),
    signature: encodeBase64(t.signature),
    ...(t.eventLog ? { event_log: encodeBase64(t.eventLog) } : {}),
    ...(t.nitroDocument ? { nitro_document: encodeBase64(t.nitroDocument) } : {}),
    ...(t.akCertificate ? { ak_cert: encodeBase64(t.akCertificate) } : {}),
    ...(t.akIntermediates?.length ? { ak_intermediates: t.akIntermediates.map((c) => encodeBase64(c)) } : {}),
    ...(t.pcrs
      ? {
          pcrs: Object.fromEntries(
            Object.entries(t.pcrs).map(([bank, v]) => [
              bank,
              Object.fromEntries(Object.entries(v ?? {}).map(([k, x]) => [k, encodeBase64(x)])),
            ]),
          ),
        }
      : {}),
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
      if (present(v, "vtpm")) e.vtpm = decodeWireVtpm(v.vtpm, `${field}.vtpm`);
      return e;
    }
    case "tdx": {
      const e: Evidence = { kind: "tdx", quote: decodeBase64(v.quote, `${field}.quote`) };
      if (present(v, "vtpm")) e.vtpm = decodeWireVtpm(v.vtpm, `${field}.vtpm`);
      return e;
    }
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
      if (present(v, "event_log")) e.eventLog = decodeBase64(v.event_log, `${field}.event_log`);
      return e;
    }
    case "azure-tdx": {
      const e: Evidence = {
        kind: "azure-tdx",
        hclReport: decodeBase64(v.hcl_report, `${field}.hcl_report`),
        tdQuote: decodeBase64(v.td_quote, `${field}.td_quote`),
        tpmQuote: decodeTpmQuote(v.tpm_quote, `${field}.tpm_quote`),
      };
      if (present(v, "event_log")) e.eventLog = decodeBase64(v.event_log, `${field}.event_log`);
      return e;
    }
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
        ...(e.vtpm ? { vtpm: encodeVtpm(e.vtpm) } : {}),
      };
    case "tdx":
      return { kind: "tdx", quote: encodeBase64(e.quote), ...(e.vtpm ? { vtpm: encodeVtpm(e.vtpm) } : {}) };
    case "azure-snp":
      return {
        kind: "azure-snp",
        hcl_report: encodeBase64(e.hclReport),
        tpm_quote: encodeTpmQuote(e.tpmQuote),
        ...(e.vcekChainPem ? { vcek_chain_pem: e.vcekChainPem } : {}),
        ...(e.eventLog ? { event_log: encodeBase64(e.eventLog) } : {}),
      };
    case "azure-tdx":
      return {
        kind: "azure-tdx",
        hcl_report: encodeBase64(e.hclReport),
        td_quote: encodeBase64(e.tdQuote),
        tpm_quote: encodeTpmQuote(e.tpmQuote),
        ...(e.eventLog ? { event_log: encodeBase64(e.eventLog) } : {}),
      };
  }
}
