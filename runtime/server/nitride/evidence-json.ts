// The wire form of evidence in attest/explain requests (JSON, binary fields base64) → Evidence.
import { LogicalError } from "../vault/backend.js";
import type { Evidence, TpmQuote } from "../../attestation/types.js";

type Obj = Record<string, unknown>;

function bytes(o: Obj, key: string, field: string, required: boolean): Uint8Array | undefined {
  const v = o[key];
  if (v === undefined || v === null) {
    if (required) throw new LogicalError(400, `${field}: missing`);
    return undefined;
  }
  if (typeof v !== "string" || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(v))
    throw new LogicalError(400, `${field}: must be base64`);
  return new Uint8Array(Buffer.from(v, /[-_]/.test(v) ? "base64url" : "base64"));
}

function tpmQuote(v: unknown, field: string): TpmQuote {
  if (typeof v !== "object" || v === null)
    throw new LogicalError(400, `${field}: must be an object {message, signature, pcrs}`);
  const o = v as Obj;
  const pcrsIn = o.pcrs;
  if (typeof pcrsIn !== "object" || pcrsIn === null)
    throw new LogicalError(400, `${field}.pcrs: must be an object of index → base64`);
  const pcrs: Record<number, Uint8Array> = {};
  for (const [k, x] of Object.entries(pcrsIn as Obj)) {
    if (!/^\d{1,2}$/.test(k)) throw new LogicalError(400, `${field}.pcrs: "${k}" is not a PCR index`);
    pcrs[Number(k)] = bytes({ x }, "x", `${field}.pcrs.${k}`, true)!;
  }
  return {
    message: bytes(o, "message", `${field}.message`, true)!,
    signature: bytes(o, "signature", `${field}.signature`, true)!,
    pcrs,
  };
}

export function evidenceFromJson(v: unknown, field = "evidence"): Evidence {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new LogicalError(400, `${field}: must be an object with a "kind"`);
  const o = v as Obj;
  switch (o.kind) {
    case "snp": {
      const e: Evidence = { kind: "snp", report: bytes(o, "report", `${field}.report`, true)! };
      const certTable = bytes(o, "cert_table", `${field}.cert_table`, false);
      const vek = bytes(o, "vek", `${field}.vek`, false);
      if (certTable) e.certTable = certTable;
      if (vek) e.vek = vek;
      return e;
    }
    case "tdx":
      return { kind: "tdx", quote: bytes(o, "quote", `${field}.quote`, true)! };
    case "azure-snp": {
      const e: Evidence = {
        kind: "azure-snp",
        hclReport: bytes(o, "hcl_report", `${field}.hcl_report`, true)!,
        tpmQuote: tpmQuote(o.tpm_quote, `${field}.tpm_quote`),
      };
      if (typeof o.vcek_chain_pem === "string") e.vcekChainPem = o.vcek_chain_pem;
      return e;
    }
    case "azure-tdx":
      return {
        kind: "azure-tdx",
        hclReport: bytes(o, "hcl_report", `${field}.hcl_report`, true)!,
        tdQuote: bytes(o, "td_quote", `${field}.td_quote`, true)!,
        tpmQuote: tpmQuote(o.tpm_quote, `${field}.tpm_quote`),
      };
    default:
      throw new LogicalError(400, `${field}.kind: must be one of snp, tdx, azure-snp, azure-tdx`);
  }
}

/** The inverse, for clients (enclaivelet, tests). */
export function evidenceToJson(e: Evidence): Record<string, unknown> {
  const b = (x: Uint8Array) => Buffer.from(x).toString("base64");
  const tq = (q: TpmQuote) => ({
    message: b(q.message),
    signature: b(q.signature),
    pcrs: Object.fromEntries(Object.entries(q.pcrs).map(([k, x]) => [k, b(x)])),
  });
  switch (e.kind) {
    case "snp":
      return {
        kind: "snp",
        report: b(e.report),
        ...(e.certTable ? { cert_table: b(e.certTable) } : {}),
        ...(e.vek ? { vek: b(e.vek) } : {}),
      };
    case "tdx":
      return { kind: "tdx", quote: b(e.quote) };
    case "azure-snp":
      return {
        kind: "azure-snp",
        hcl_report: b(e.hclReport),
        tpm_quote: tq(e.tpmQuote),
        ...(e.vcekChainPem ? { vcek_chain_pem: e.vcekChainPem } : {}),
      };
    case "azure-tdx":
      return { kind: "azure-tdx", hcl_report: b(e.hclReport), td_quote: b(e.tdQuote), tpm_quote: tq(e.tpmQuote) };
  }
}
