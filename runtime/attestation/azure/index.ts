// Azure confidential VMs (SEV-SNP or TDX behind the paravisor). Trust chain:
//   hardware evidence (SNP report signed by a VCEK, or a TD quote) → REPORT_DATA = hash(runtime JSON)
//   → runtime JSON → vTPM attestation key (HCLAkPub) → TPM quote → PCRs, nonce.
// The HCL header and JSON are unsigned; only the hash in REPORT_DATA makes them trustworthy. For TDX the
// TDREPORT inside the HCL report is MAC'd (not verifiable off-platform), so the TD quote is what is trusted.
import { createHash, timingSafeEqual } from "node:crypto";
import { EvidenceFormatError, type Check, type Claims, type Evidence, type Verdict } from "../types.js";
import type { Policy, SnpTrustConfig } from "../policy.js";
import { validateSnpPolicy } from "../snp/validate.js";
import { verifySnp } from "../snp/verify.js";
import { decodeTcb } from "../snp/abi.js";
import { splitCertificates } from "../snp/certs.js";
import { parseTdReport } from "../tdx/abi.js";
import { verifyTdx, type TdxVerifyOptions } from "../tdx/index.js";
import { hex } from "../tdx/validate.js";
import { reportDataFor } from "../binding.js";
import { attestationKey, expectedReportData, hardwareReportData, parseHclReport, type HclReport } from "./hcl.js";
import { parseTpmsAttest, verifyTpmQuote } from "./tpm.js";
import { validateAzure, type AzurePolicy } from "./validate.js";
import type { AzureEvidence } from "./evidence.js";

export {
  parseHclReport,
  expectedReportData,
  hardwareReportData,
  attestationKey,
  type HclReport,
  type RuntimeClaims,
} from "./hcl.js";
export { parseTpmsAttest, verifyTpmQuote, type TpmsAttest } from "./tpm.js";
export {
  parseAzureEvidence,
  parseBincodeTpmQuote,
  parseTpmQuoteFile,
  bytesField,
  type AzureEvidence,
} from "./evidence.js";
export { parseAzurePolicy, validateAzure, type AzurePolicy } from "./validate.js";

export interface AzureTrust {
  /** SEV-SNP: where the VCEK's ASK/ARK come from (the evidence's VCEK PEM may already carry them). */
  snp?: SnpTrustConfig;
  /** TDX: Intel trust options, collateral. */
  tdx?: Omit<TdxVerifyOptions, "policy" | "now">;
}

/** Structurally compatible with appraise.ts AppraiseOptions, plus the vTPM nonce. */
export interface AzureVerifyOptions {
  trust?: AzureTrust & { azure?: { tpmNonce?: Uint8Array } };
  now?: Date;
  /** Expected REPORT_DATA the workload bound into the runtime claims' "user-data" (zero-padded to 64). */
  expectedReportData?: Uint8Array;
  /** Nitride's nonce + workload key: expected "user-data" = binding.ts reportDataFor(nonce, key). */
  binding?: { nonce: Uint8Array; publicKeySpki: Uint8Array };
  /** Return claims even when verification fails (diagnostics); never use them for decisions. */
  explain?: boolean;
  /** Expected TPM quote extraData (the verifier's nonce). Default: SHA-256(expected REPORT_DATA) when one is given. */
  tpmNonce?: Uint8Array;
}

type AzurePolicyDoc = Policy & { azure?: AzurePolicy; requireReportDataBinding?: boolean };

const eq = (a: Uint8Array, b: Uint8Array) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

function digest(e: AzureEvidence): string {
  const h = createHash("sha384").update(e.hclReport);
  if (e.kind === "azure-tdx") h.update(e.tdQuote);
  return h.digest("hex");
}

function reject(e: AzureEvidence, checks: Check[]): Verdict {
  return { accepted: false, simulated: false, checks, evidenceDigest: digest(e) };
}

/** The REPORT_DATA the caller expects (binding.ts, or explicit, zero-padded); a string explains a bad value. */
function expectedUserData(opts: AzureVerifyOptions): Uint8Array | string | undefined {
  if (opts.binding) return reportDataFor(opts.binding.nonce, opts.binding.publicKeySpki);
  if (!opts.expectedReportData) return undefined;
  if (opts.expectedReportData.length > 64) return "expected REPORT_DATA longer than 64 bytes";
  const want = new Uint8Array(64);
  want.set(opts.expectedReportData);
  return want;
}

/**
 * Expected TPM quote extraData: an explicit nonce, else SHA-256(expected REPORT_DATA), which is what the
 * enclaivelet passes as qualifying data (runtime/enclaivelet/evidence/azure.ts).
 */
function expectedTpmNonce(opts: AzureVerifyOptions): Uint8Array | undefined {
  const explicit = opts.tpmNonce ?? opts.trust?.azure?.tpmNonce;
  if (explicit) return explicit;
  const want = expectedUserData(opts);
  return want instanceof Uint8Array ? createHash("sha256").update(want).digest() : undefined;
}

/** The workload's REPORT_DATA on Azure: the runtime claims' "user-data" (hex), bound by the hardware. */
function userDataCheck(hcl: HclReport, policy: AzurePolicyDoc, opts: AzureVerifyOptions): Check {
  const id = "policy.report-data";
  const want = expectedUserData(opts);
  if (typeof want === "string") return { id, ok: false, detail: want };
  if (!want) {
    return policy.requireReportDataBinding
      ? { id, ok: false, detail: "the policy requires a nonce/key binding, but no expected value was given" }
      : { id, ok: true, detail: "runtime user-data not checked: no expected value given" };
  }
  const ud = hcl.runtimeClaims["user-data"];
  const actual = typeof ud === "string" && /^[0-9a-fA-F]*$/.test(ud) ? Buffer.from(ud, "hex") : Buffer.alloc(0);
  const ok = eq(actual, want);
  return {
    id,
    ok,
    detail: ok
      ? "runtime claims user-data equals the expected binding (nonce + key)"
      : "runtime claims user-data does not match the expected binding",
  };
}

/** Common tail: runtime JSON → AK → TPM quote → PCRs → Azure policy. Returns the quoted PCRs. */
function verifyVtpm(
  e: AzureEvidence,
  hcl: HclReport,
  policy: AzurePolicyDoc,
  opts: AzureVerifyOptions,
  checks: Check[],
): Record<string, string> {
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
    return quoted;
  }
  const r = verifyTpmQuote(e.tpmQuote, ak, expectedTpmNonce(opts));
  checks.push(...r.checks);
  if (r.attest && r.checks.every((c) => c.ok)) {
    for (const sel of r.attest.pcrSelections) {
      if (sel.hashAlg !== 0x000b) continue;
      for (const i of sel.pcrs) quoted[String(i)] = hex(e.tpmQuote.pcrs[i]);
    }
  }
  checks.push(...validateAzure(quoted, hcl.runtimeClaims["vm-configuration"], policy.azure));
  checks.push(userDataCheck(hcl, policy, opts));
  return quoted;
}

/** Every non-policy check passed: the claims come from verified evidence. */
const authentic = (checks: Check[]) => checks.filter((c) => !c.id.startsWith("policy")).every((c) => c.ok);

function bindingCheck(id: string, what: string, reportData: Uint8Array, hcl: HclReport): Check {
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

function vmClaims(hcl: HclReport, quoted: Record<string, string>, e: AzureEvidence): Record<string, unknown> {
  let extraData: string | undefined;
  try {
    extraData = hex(parseTpmsAttest(e.tpmQuote.message).extraData);
  } catch {
    extraData = undefined;
  }
  return {
    hclVersion: hcl.version,
    hardwareReportData: hex(hardwareReportData(hcl)),
    vmConfiguration: hcl.runtimeClaims["vm-configuration"],
    userData: hcl.runtimeClaims["user-data"],
    pcrs: quoted,
    tpmExtraData: extraData,
  };
}

async function verifyAzureSnp(
  e: Extract<AzureEvidence, { kind: "azure-snp" }>,
  hcl: HclReport,
  policy: AzurePolicyDoc,
  opts: AzureVerifyOptions,
): Promise<Verdict> {
  const checks: Check[] = [{ id: "azure.hcl", ok: true, detail: `HCL report v${hcl.version} with an SEV-SNP report` }];
  checks.push(bindingCheck("azure.runtime-binding", "SNP report", hardwareReportData(hcl), hcl));
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
  const v = await verifySnp(
    { report: hcl.hardwareReport, vek, caChain },
    { trust: opts.trust?.snp ?? {}, now: opts.now },
  );
  checks.push(...v.checks);
  const r = v.report;
  if (r && v.product)
    checks.push(...validateSnpPolicy(r, v.product, r.signingKey === "vlek" ? "vlek" : "vcek", policy.snp ?? {}));
  else
    checks.push({
      id: "policy",
      ok: false,
      detail: "SNP policy not evaluated: the report could not be parsed or its product determined",
    });
  const quoted = verifyVtpm(e, hcl, policy, opts, checks);
  if (v.simulated)
    checks.push({
      id: "snp.simulated",
      ok: true,
      detail: "SNP report chains to a SIMULATED AMD root: not genuine hardware",
    });
  let claims: Claims | undefined;
  if (r && v.product && (authentic(checks) || opts.explain)) {
    claims = {
      platform: "azure-snp",
      measurement: hex(r.measurement),
      reportData:
        typeof hcl.runtimeClaims["user-data"] === "string" ? hcl.runtimeClaims["user-data"].toLowerCase() : "",
      chipId: hex(r.chipId),
      tcb: { ...decodeTcb(r.reportedTcb, v.product) },
      debug: r.policyBits.debug,
      product: v.product,
      extra: {
        ...vmClaims(hcl, quoted, e),
        vmpl: r.vmpl,
        policy: "0x" + r.policy.toString(16),
        hostData: hex(r.hostData),
      },
    };
  }
  return { accepted: checks.every((c) => c.ok), simulated: v.simulated, checks, claims, evidenceDigest: digest(e) };
}

async function verifyAzureTdx(
  e: Extract<AzureEvidence, { kind: "azure-tdx" }>,
  hcl: HclReport,
  policy: AzurePolicyDoc,
  opts: AzureVerifyOptions,
): Promise<Verdict> {
  const checks: Check[] = [{ id: "azure.hcl", ok: true, detail: `HCL report v${hcl.version} with a TDX TDREPORT` }];
  let tdReport;
  try {
    tdReport = parseTdReport(hcl.hardwareReport);
  } catch (err) {
    checks.push({ id: "azure.td-report", ok: false, detail: (err as Error).message });
  }
  const v = await verifyTdx(e.tdQuote, {
    ...(opts.trust?.tdx ?? {}),
    now: opts.now,
    policy: policy.tdx,
    explain: true,
  });
  checks.push(...v.checks.filter((c) => c.id !== "policy.report-data"));
  const q = v.claims;
  if (q) {
    // The quote is what Intel signs: it must carry hash(runtime JSON) itself.
    checks.push(bindingCheck("azure.runtime-binding", "TD quote", Buffer.from(q.reportData, "hex"), hcl));
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
  const quoted = verifyVtpm(e, hcl, policy, opts, checks);
  let claims: Claims | undefined;
  if (q && (authentic(checks) || opts.explain)) {
    claims = {
      ...q,
      platform: "azure-tdx",
      reportData:
        typeof hcl.runtimeClaims["user-data"] === "string" ? hcl.runtimeClaims["user-data"].toLowerCase() : "",
      extra: { ...q.extra, ...vmClaims(hcl, quoted, e), tdQuoteReportData: q.reportData },
    };
  }
  return { accepted: checks.every((c) => c.ok), simulated: v.simulated, checks, claims, evidenceDigest: digest(e) };
}

/** Verifies Azure CVM evidence and appraises it (policy.snp / policy.tdx / policy.azure). Never throws for bad evidence. */
export async function verifyAzure(
  evidence: Evidence | AzureEvidence,
  policy: AzurePolicyDoc = {},
  opts: AzureVerifyOptions = {},
): Promise<Verdict> {
  try {
    return await verifyAzureUnguarded(evidence, policy, opts);
  } catch (e) {
    // Defence in depth: a verifier bug or malformed evidence object surfaces as a rejection, never a crash.
    return {
      accepted: false,
      simulated: false,
      evidenceDigest: "",
      checks: [{ id: "azure.internal", ok: false, detail: `verification aborted: ${(e as Error).message}` }],
    };
  }
}

async function verifyAzureUnguarded(
  evidence: Evidence | AzureEvidence,
  policy: AzurePolicyDoc,
  opts: AzureVerifyOptions,
): Promise<Verdict> {
  if (evidence?.kind !== "azure-snp" && evidence?.kind !== "azure-tdx") {
    return {
      accepted: false,
      simulated: false,
      evidenceDigest: "",
      checks: [{ id: "azure.kind", ok: false, detail: `not Azure evidence (kind '${String(evidence?.kind)}')` }],
    };
  }
  let hcl: HclReport;
  try {
    hcl = parseHclReport(evidence.hclReport);
  } catch (err) {
    const msg = err instanceof EvidenceFormatError ? err.message : `unreadable HCL report: ${(err as Error).message}`;
    return reject(evidence, [{ id: "azure.hcl", ok: false, detail: msg }]);
  }
  const want = evidence.kind === "azure-snp" ? "snp" : "tdx";
  if (hcl.type !== want)
    return reject(evidence, [
      {
        id: "azure.hcl",
        ok: false,
        detail: `evidence kind ${evidence.kind} but the HCL report holds a ${hcl.type.toUpperCase()} report`,
      },
    ]);
  return evidence.kind === "azure-snp"
    ? verifyAzureSnp(evidence, hcl, policy, opts)
    : verifyAzureTdx(evidence, hcl, policy, opts);
}

/** The appraise.ts entry point: same as verifyAzure. */
export const appraiseAzure = verifyAzure;
