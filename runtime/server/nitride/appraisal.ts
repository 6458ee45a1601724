// The one place Nitride calls evidence verification: merges a workload's reference values into its
// appraisal policy, runs runtime/attestation/appraise.ts, and adds Nitride's own checks (platform,
// reference values per platform) to the verdict. Never throws for bad evidence.
import { appraise } from "../../attestation/appraise.js";
import type { TrustConfig, Policy } from "../../attestation/policy.js";
import type { Check, Claims, Evidence, Verdict } from "../../attestation/types.js";
import type { WorkloadDefinition } from "./workloads.js";

export interface AppraisalRequest {
  evidence: Evidence;
  workload: WorkloadDefinition;
  trust: TrustConfig;
  /** Nonce and ephemeral key the REPORT_DATA must bind; absent only in explain without a nonce. */
  binding?: { nonce: Uint8Array; publicKeySpki: Uint8Array };
  /** SHA-256 (hex) of the user-data the guest says it booted with (it is bound into REPORT_DATA). */
  userDataSha256?: string;
  explain?: boolean;
}

/** nitride.user-data: the user-data the guest booted with is the one registered at deploy time. The
 *  REPORT_DATA check uses the REGISTERED hash, so a guest that misreports its hash fails that check;
 *  this one only names the reason (changed or injected user-data) in the verdict and the audit log. */
function userDataCheck(w: WorkloadDefinition, claimed: string | undefined): Check | undefined {
  const want = w.reference_values.user_data_sha256;
  if (!want) return undefined;
  const id = "nitride.user-data";
  if (!claimed)
    return {
      id,
      ok: false,
      detail:
        "the workload binds its user-data, but the guest did not report a user-data hash (agent without user-data measurement?)",
    };
  return claimed === want
    ? { id, ok: true, detail: "user-data SHA-256 equals the registered value" }
    : {
        id,
        ok: false,
        detail: `user-data SHA-256 ${claimed.slice(0, 16)}… differs from the registered ${want.slice(0, 16)}… (changed or injected user-data)`,
      };
}

/** The policy actually applied: the workload's policy with its SNP reference measurements merged in. */
export function effectivePolicy(w: WorkloadDefinition, requireBinding: boolean): Policy {
  // Shallow copies of what changes: appraisal only reads the policy, and a deep clone per attestation showed in profiles.
  const p: Policy = { ...w.policy, requireReportDataBinding: requireBinding };
  const ms = [...new Set([...(p.snp?.measurements ?? []), ...w.reference_values.snp_measurements])];
  if (ms.length) p.snp = { ...(p.snp ?? {}), measurements: ms };
  return p;
}

function referenceCheck(w: WorkloadDefinition, c: Claims): Check {
  const id = "nitride.reference-values";
  const rv = w.reference_values;
  const m = c.measurement.toLowerCase();
  const facts = Object.entries(rv.azure);
  const factsOk = () => facts.every(([k, v]) => String(c.extra[k]) === v);
  const factsDetail = () =>
    facts
      .filter(([k, v]) => String(c.extra[k]) !== v)
      .map(([k, v]) => `${k}: expected ${v}, got ${String(c.extra[k])}`)
      .join("; ");
  if (c.platform === "snp" || c.platform === "azure-snp") {
    if (!rv.snp_measurements.length && !w.policy.snp?.measurements?.length)
      return { id, ok: false, detail: `no SNP reference measurement is registered for this workload` };
    const known = [...rv.snp_measurements, ...(w.policy.snp?.measurements ?? [])];
    if (!known.includes(m))
      return { id, ok: false, detail: `measurement ${m.slice(0, 16)}… is not a reference value of this workload` };
  } else {
    if (!rv.tdx.length)
      return { id, ok: false, detail: "no TDX reference value (MRTD) is registered for this workload" };
    const rtmrs = (c.rtmrs ?? []).map((x) => x.toLowerCase());
    const hit = rv.tdx.find((t) => t.mrtd === m && (!t.rtmrs || t.rtmrs.every((r, i) => r === rtmrs[i])));
    if (!hit)
      return {
        id,
        ok: false,
        detail: `MRTD ${m.slice(0, 16)}… with these RTMRs matches no reference value of this workload`,
      };
  }
  if (c.platform.startsWith("azure") && facts.length && !factsOk())
    return { id, ok: false, detail: `Azure facts differ: ${factsDetail()}` };
  return { id, ok: true, detail: "measurement matches a registered reference value" };
}

export async function appraiseForWorkload(r: AppraisalRequest): Promise<Verdict> {
  let v: Verdict;
  try {
    v = await appraise(r.evidence, effectivePolicy(r.workload, !r.explain || r.binding !== undefined), {
      trust: r.trust,
      binding:
        r.binding && r.workload.reference_values.user_data_sha256
          ? { ...r.binding, userDataSha256: Buffer.from(r.workload.reference_values.user_data_sha256, "hex") }
          : r.binding,
      explain: r.explain,
    });
  } catch (e) {
    return {
      accepted: false,
      simulated: false,
      evidenceDigest: "",
      checks: [{ id: "evidence.appraisal", ok: false, detail: `appraisal failed: ${(e as Error).message}` }],
    };
  }
  const checks = [...v.checks];
  if (r.workload.platforms.length) {
    const p = v.claims?.platform ?? r.evidence.kind;
    const ok = r.workload.platforms.includes(p);
    checks.push({
      id: "nitride.platform",
      ok,
      detail: ok
        ? `platform ${p} is allowed`
        : `platform ${p} is not among the workload's platforms (${r.workload.platforms.join(", ")})`,
    });
  }
  if (v.claims) checks.push(referenceCheck(r.workload, v.claims));
  else
    checks.push({
      id: "nitride.reference-values",
      ok: false,
      detail: "no claims: the evidence did not verify far enough to compare reference values",
    });
  const ud = userDataCheck(r.workload, r.userDataSha256);
  if (ud) checks.push(ud);
  return { ...v, checks, accepted: v.accepted && checks.every((c) => c.ok) };
}
