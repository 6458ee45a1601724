// Azure confidential VMs (SEV-SNP or TDX behind the paravisor), the folder's entry point. Trust chain:
//   hardware evidence (SNP report signed by a VCEK, or a TD quote) → REPORT_DATA = hash(runtime JSON)
//   → runtime JSON → vTPM attestation key (HCLAkPub) → TPM quote → PCRs, nonce.
// The HCL header and JSON are unsigned; only the hash in REPORT_DATA makes them trustworthy. For TDX the
// TDREPORT inside the HCL report is MAC'd (not verifiable off-platform), so the TD quote is what is trusted.
// Steps: parse the HCL report (abi) → verify the hardware evidence and the vTPM chain (verify) → policy
// (validate, snp/validate, tdx), the measured boot over events (boot.ts, with azure.measuredBoot) and the
// REPORT_DATA binding → claims.
import { createHash } from "node:crypto";
import { EvidenceFormatError, type Check, type Claims, type Evidence, type Verdict } from "../types.js";
import type { Policy, SnpTrustConfig } from "../policy.js";
import { azureQuoteExtraData, reportDataFor } from "../binding.js";
import type { Appraiser } from "../options.js";
import { decodeTcb } from "../snp/abi.js";
import { validateSnpPolicy } from "../snp/validate.js";
import type { TdxVerifyOptions } from "../tdx/appraise.js";
import { hex } from "../tdx/validate.js";
import { hardwareReportData, parseHclReport, type HclReport } from "./abi.js";
import { parseTpmsAttest } from "./tpm.js";
import { validateAzure, type AzurePolicy } from "./validate.js";
import { eq, runtimeBindingCheck, verifySnpHardware, verifyTdxHardware, verifyVtpm } from "./verify.js";
import type { AzureEvidence } from "./evidence.js";
import { appraiseAzureMeasuredBoot } from "./boot.js";

export interface AzureTrust {
  /** SEV-SNP: where the VCEK's ASK/ARK come from (the evidence's VCEK PEM may already carry them). */
  snp?: SnpTrustConfig;
  /** TDX: Intel trust options, collateral. */
  tdx?: Omit<TdxVerifyOptions, "policy" | "now">;
}

/** Structurally compatible with AppraiseOptions (options.ts), plus the vTPM nonce. */
export interface AzureVerifyOptions {
  trust?: AzureTrust & { azure?: { tpmNonce?: Uint8Array } };
  now?: Date;
  /** Expected REPORT_DATA the workload bound into the runtime claims' "user-data" (zero-padded to 64). */
  expectedReportData?: Uint8Array;
  /** Nitride's nonce + workload key: expected "user-data" = binding.ts reportDataFor(nonce, key). */
  binding?: { nonce: Uint8Array; publicKeySpki: Uint8Array; userDataSha256?: Uint8Array };
  /** Return claims even when verification fails (diagnostics); never use them for decisions. */
  explain?: boolean;
  /** Expected TPM quote extraData (the verifier's nonce). Default: SHA-256(expected REPORT_DATA) when one is given. */
  tpmNonce?: Uint8Array;
}

type AzurePolicyDoc = Policy & { azure?: AzurePolicy; requireReportDataBinding?: boolean };

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
  if (opts.binding) return reportDataFor(opts.binding.nonce, opts.binding.publicKeySpki, opts.binding.userDataSha256);
  if (!opts.expectedReportData) return undefined;
  if (opts.expectedReportData.length > 64) return "expected REPORT_DATA longer than 64 bytes";
  const want = new Uint8Array(64);
  want.set(opts.expectedReportData);
  return want;
}

/**
 * Expected TPM quote extraData. With Nitride's binding (nonce + key [+ registered user-data hash]) it is always
 * azureQuoteExtraData(binding) — what the enclaivelet passes as qualifying data (runtime/guest/evidence/azure.ts) —
 * and an explicit nonce next to it is refused rather than preferred: an explicit value would silently replace the
 * binding of the key and the user-data. Without a binding: the explicit nonce (a raw verifier nonce, e.g. the CLI),
 * else SHA-256 of the explicit expected REPORT_DATA. A string explains a refusal.
 */
function expectedTpmNonce(opts: AzureVerifyOptions): Uint8Array | string | undefined {
  const explicit = opts.tpmNonce ?? opts.trust?.azure?.tpmNonce;
  const want = expectedUserData(opts);
  if (opts.binding) {
    if (explicit)
      return "both a nonce/key binding and an explicit TPM nonce were given: the quote's extraData must be the binding, refused rather than choosing";
    return want instanceof Uint8Array ? azureQuoteExtraData(want) : undefined;
  }
  if (explicit) return explicit;
  return want instanceof Uint8Array ? azureQuoteExtraData(want) : undefined;
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

/** The vTPM link and what is judged on it: the Azure policy (PCRs, vm-configuration) and the user-data binding. */
function vtpmStep(
  e: AzureEvidence,
  hcl: HclReport,
  policy: AzurePolicyDoc,
  opts: AzureVerifyOptions,
  checks: Check[],
): Record<string, string> {
  // AWS/GCE's vtpm section (AK pins, NitroTPM, Google's certificate, its measuredBoot) means nothing for Azure
  // evidence, whose AK the HCL binds: refused rather than silently ignored, so no registration binds less than it says.
  if (policy.vtpm)
    checks.push({
      id: "azure.vtpm-policy",
      ok: false,
      detail:
        "the policy has a vtpm section (AWS/GCE vTPM evidence); Azure evidence is appraised with azure.pcrs / azure.measuredBoot",
    });
  const nonce = expectedTpmNonce(opts);
  if (typeof nonce === "string") {
    checks.push({ id: "vtpm.nonce", ok: false, detail: nonce });
    return {};
  }
  const q = verifyVtpm(e, hcl, nonce, checks);
  if (opts.binding)
    for (const c of checks)
      if (c.id === "vtpm.nonce")
        c.detail = c.ok
          ? `TPM quote extraData = SHA-256 of the binding of Nitride's nonce, the workload key${opts.binding.userDataSha256 ? " and the REGISTERED user-data hash" : ""}`
          : `${c.detail} (expected: nonce + key${opts.binding.userDataSha256 ? " + the registered user-data hash: changed or injected user-data, or an agent that binds none" : ""})`;
  if (!q) return {};
  checks.push(...validateAzure(q.pcrs, hcl.runtimeClaims["vm-configuration"], policy.azure));
  // The OS by events (azure.measuredBoot): the event log must replay to this quote's PCRs, then the boot policy.
  if (policy.azure?.measuredBoot)
    checks.push(...appraiseAzureMeasuredBoot(e.eventLog, q.attest, e.tpmQuote.pcrs, policy.azure.measuredBoot));
  checks.push(userDataCheck(hcl, policy, opts));
  return q.pcrs;
}

/** Every non-policy check passed: the claims come from verified evidence. */
const authentic = (checks: Check[]) => checks.filter((c) => !c.id.startsWith("policy")).every((c) => c.ok);

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

const userDataClaim = (hcl: HclReport) =>
  typeof hcl.runtimeClaims["user-data"] === "string" ? hcl.runtimeClaims["user-data"].toLowerCase() : "";

async function appraiseAzureSnp(
  e: Extract<AzureEvidence, { kind: "azure-snp" }>,
  hcl: HclReport,
  policy: AzurePolicyDoc,
  opts: AzureVerifyOptions,
): Promise<Verdict> {
  const checks: Check[] = [{ id: "azure.hcl", ok: true, detail: `HCL report v${hcl.version} with an SEV-SNP report` }];
  checks.push(runtimeBindingCheck("azure.runtime-binding", "SNP report", hardwareReportData(hcl), hcl));
  const v = await verifySnpHardware(e, hcl, opts.trust?.snp ?? {}, opts.now, checks);
  const r = v.report;
  if (r && v.product)
    checks.push(...validateSnpPolicy(r, v.product, r.signingKey === "vlek" ? "vlek" : "vcek", policy.snp ?? {}));
  else
    checks.push({
      id: "policy",
      ok: false,
      detail: "SNP policy not evaluated: the report could not be parsed or its product determined",
    });
  const quoted = vtpmStep(e, hcl, policy, opts, checks);
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
      reportData: userDataClaim(hcl),
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

async function appraiseAzureTdx(
  e: Extract<AzureEvidence, { kind: "azure-tdx" }>,
  hcl: HclReport,
  policy: AzurePolicyDoc,
  opts: AzureVerifyOptions,
): Promise<Verdict> {
  const checks: Check[] = [{ id: "azure.hcl", ok: true, detail: `HCL report v${hcl.version} with a TDX TDREPORT` }];
  const v = await verifyTdxHardware(e, hcl, opts.trust?.tdx ?? {}, policy.tdx, opts.now, checks);
  const q = v.claims;
  const quoted = vtpmStep(e, hcl, policy, opts, checks);
  let claims: Claims | undefined;
  if (q && (authentic(checks) || opts.explain)) {
    claims = {
      ...q,
      platform: "azure-tdx",
      reportData: userDataClaim(hcl),
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
    return await verifyAzureSteps(evidence, policy, opts);
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

async function verifyAzureSteps(
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
    ? appraiseAzureSnp(evidence, hcl, policy, opts)
    : appraiseAzureTdx(evidence, hcl, policy, opts);
}

/** The appraise.ts entry point (same shape as appraiseSnp and appraiseTdx): verifyAzure. */
export const appraiseAzure: Appraiser<AzureEvidence> = (evidence, policy, opts) => verifyAzure(evidence, policy, opts);
