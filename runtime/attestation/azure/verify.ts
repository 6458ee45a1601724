// Cryptographic verification of Azure CVM evidence, link by link:
//   hardware evidence (SNP report signed by a VCEK → snp/verify.ts; TD quote → tdx/appraise.ts verifyTdx)
//   → REPORT_DATA = hash(runtime JSON) → runtime JSON → vTPM attestation key (HCLAkPub) → TPM quote → PCRs.
// Each function appends its checks; policy (validate.ts) and the REPORT_DATA binding are judged by appraise.ts.
import { timingSafeEqual } from "node:crypto";
import type { Check, Verdict } from "../types.js";
import type { SnpTrustConfig } from "../policy.js";
import { splitCertificates } from "../snp/certs.js";
import { verifySnp, type SnpVerification } from "../snp/verify.js";
import { parseTdReport } from "../tdx/abi.js";
import { verifyTdx, type TdxVerifyOptions } from "../tdx/appraise.js";
import type { TdxPolicy } from "../tdx/validate.js";
import { hex } from "../tdx/validate.js";
import { attestationKey, expectedReportData, type HclReport } from "./abi.js";
import { verifyTpmQuote, type TpmsAttest } from "./tpm.js";
import type { AzureEvidence } from "./evidence.js";

export const eq = (a: Uint8Array, b: Uint8Array) =>
  a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

/** The hardware REPORT_DATA must be hash(runtime claims JSON) ‖ 0: the only thing binding the JSON and its AK. */
export function runtimeBindingCheck(id: string, what: string, reportData: Uint8Array, hcl: HclReport): Check {
  const want = expectedReportData(hcl);
  const ok = eq(reportData, want);
  return {
    id,
    ok,
    detail: ok
      ? `${what} REPORT_DATA = hash(runtime claims JSON) ‖ 0`
      : `${what} REPORT_DATA ${hex(reportData).slice(0, 32)}… is not hash(runtime claims JSON) ${hex(want).slice(0, 32)}…: claims and key are not bound to the hardware`,
  };
}

/** SEV-SNP: the HCL's hardware report with the evidence's VCEK (+ ASK/ARK) PEM, verified as any SNP report. */
export async function verifySnpHardware(
  e: Extract<AzureEvidence, { kind: "azure-snp" }>,
  hcl: HclReport,
  trust: SnpTrustConfig,
  now: Date | undefined,
  checks: Check[],
): Promise<SnpVerification> {
  let vek: Uint8Array | undefined;
  let caChain: Uint8Array[] | undefined;
  if (e.vcekChainPem) {
    try {
      const [first, ...rest] = splitCertificates(e.vcekChainPem);
      vek = first;
      caChain = rest;
    } catch (err) {
      checks.push({ id: "azure.vcek", ok: false, detail: `VCEK PEM unreadable: ${(err as Error).message}` });
    }
  }
  const v = await verifySnp({ report: hcl.hardwareReport, vek, caChain }, { trust, now });
  checks.push(...v.checks);
  return v;
}

/**
 * TDX: the TD quote is what Intel signs (the HCL's TDREPORT is MAC'd, not verifiable off-platform); the quote
 * must carry hash(runtime JSON) and describe the same TD as the TDREPORT. Returns the quote's verdict.
 */
export async function verifyTdxHardware(
  e: Extract<AzureEvidence, { kind: "azure-tdx" }>,
  hcl: HclReport,
  trust: Omit<TdxVerifyOptions, "policy" | "now">,
  policy: TdxPolicy | undefined,
  now: Date | undefined,
  checks: Check[],
): Promise<Verdict> {
  let tdReport;
  try {
    tdReport = parseTdReport(hcl.hardwareReport);
  } catch (err) {
    checks.push({ id: "azure.td-report", ok: false, detail: (err as Error).message });
  }
  const v = await verifyTdx(e.tdQuote, { ...trust, now, policy, explain: true });
  checks.push(...v.checks.filter((c) => c.id !== "policy.report-data"));
  const q = v.claims;
  if (q) {
    checks.push(runtimeBindingCheck("azure.runtime-binding", "TD quote", Buffer.from(q.reportData, "hex"), hcl));
    if (tdReport) {
      const diffs: string[] = [];
      if (hex(tdReport.reportData) !== q.reportData) diffs.push("REPORTDATA");
      if (hex(tdReport.mrTd) !== q.measurement) diffs.push("MRTD");
      tdReport.rtmrs.forEach((r, i) => hex(r) !== q.rtmrs?.[i] && diffs.push(`RTMR${i}`));
      if (hex(tdReport.tdAttributes) !== q.extra.tdAttributes) diffs.push("TD_ATTRIBUTES");
      if (hex(tdReport.xfam) !== q.extra.xfam) diffs.push("XFAM");
      checks.push({
        id: "azure.td-report-match",
        ok: diffs.length === 0,
        detail:
          diffs.length === 0
            ? "HCL TDREPORT and TD quote describe the same TD"
            : `HCL TDREPORT and TD quote differ in ${diffs.join(", ")}: evidence from different TDs`,
      });
    }
  }
  return v;
}

/**
 * Runtime JSON → AK → TPM quote (signature, nonce, PCR digest). Returns the quoted SHA-256 PCRs (hex), only
 * those of a quote that verified, with its TPMS_ATTEST (only then: the event log is replayed against it);
 * undefined when the runtime claims carry no usable AK (nothing more to judge).
 */
export function verifyVtpm(
  e: AzureEvidence,
  hcl: HclReport,
  nonce: Uint8Array | undefined,
  checks: Check[],
): { pcrs: Record<string, string>; attest?: TpmsAttest } | undefined {
  const quoted: Record<string, string> = {};
  let ak;
  try {
    ak = attestationKey(hcl.runtimeClaims);
    checks.push({
      id: "vtpm.attestation-key",
      ok: true,
      detail: "HCLAkPub (RSA) taken from the hardware-bound runtime claims",
    });
  } catch (err) {
    checks.push({ id: "vtpm.attestation-key", ok: false, detail: (err as Error).message });
    return undefined;
  }
  const r = verifyTpmQuote(e.tpmQuote, ak, nonce);
  checks.push(...r.checks);
  if (r.attest && r.checks.every((c) => c.ok)) {
    for (const sel of r.attest.pcrSelections) {
      if (sel.hashAlg !== 0x000b) continue;
      for (const i of sel.pcrs) quoted[String(i)] = hex(e.tpmQuote.pcrs[i]);
    }
    return { pcrs: quoted, attest: r.attest };
  }
  return { pcrs: quoted };
}
