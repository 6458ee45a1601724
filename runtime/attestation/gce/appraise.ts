// GCE launch endorsements in an appraisal: when the policy has a `gce` section, the report's MEASUREMENT (SNP)
// or MRTD (TDX) must be the value a verified Google endorsement gives for this VM's shape. The endorsement comes
// from the registration (policy.gce.endorsements) or from the SNP extended report's certificate table (GCE
// delivers it there); the first one that verifies and endorses the report decides, every attempt is listed.
import type { Check, Evidence, Verdict } from "../types.js";
import type { GceTrustConfig } from "./verify.js";
import { verifyGceEndorsement } from "./verify.js";
import { validateGceEndorsement } from "./validate.js";
import type { GcePolicy } from "./policy.js";
import { parseCertTable } from "../snp/abi.js";

/** Certificate-table GUID under which GCE's extended report carries the launch endorsement. */
export const GCE_ENDORSEMENT_GUID = "9f4116cd-c503-4f5a-8f6f-fb68882f4ce2";

function candidates(evidence: Evidence, p: GcePolicy): { from: string; bytes: Uint8Array }[] {
  const out: { from: string; bytes: Uint8Array }[] = (p.endorsements ?? []).map((b, i) => ({
    from: `registered endorsement ${i}`,
    bytes: new Uint8Array(Buffer.from(b, "base64")),
  }));
  if (evidence.kind === "snp" && evidence.certTable) {
    try {
      for (const e of parseCertTable(evidence.certTable))
        if (e.guid.toLowerCase() === GCE_ENDORSEMENT_GUID)
          out.push({ from: "the report's certificate table", bytes: e.data });
    } catch {
      // A malformed table is reported by the SNP verifier itself.
    }
  }
  return out;
}

/** Appends the GCE endorsement checks to a TEE verdict; rejects when none is satisfied. */
export function withGceEndorsement(
  v: Verdict,
  evidence: Evidence,
  p: GcePolicy,
  trust: GceTrustConfig | undefined,
  now?: Date,
): Verdict {
  const id = "gce.endorsement";
  const checks: Check[] = [...v.checks];
  const c = v.claims;
  const tee = c?.platform === "snp" ? "snp" : c?.platform === "tdx" ? "tdx" : undefined;
  if (!c || !tee) {
    checks.push({
      id,
      ok: false,
      detail: "the report did not verify far enough (or is not SNP/TDX) to compare it with a Google endorsement",
    });
    return { ...v, checks, accepted: false };
  }
  const found = candidates(evidence, p);
  if (found.length === 0) {
    checks.push({ id, ok: false, detail: "no Google launch endorsement registered or carried by the evidence" });
    return { ...v, checks, accepted: false };
  }
  const policyHex = typeof c.extra.policy === "string" ? c.extra.policy : undefined;
  const attempts: string[] = [];
  for (const f of found) {
    const ver = verifyGceEndorsement(f.bytes, trust ?? {}, now);
    const val = ver.endorsement
      ? validateGceEndorsement(
          ver.endorsement.golden,
          { tee, measurement: c.measurement, snpPolicy: policyHex ? BigInt(policyHex) : undefined },
          p,
        )
      : [];
    const all = [...ver.checks, ...val];
    if (ver.ok && val.every((x) => x.ok)) {
      checks.push(...all, { id, ok: true, detail: `${f.from} (${ver.digest.slice(0, 16)}…) endorses this launch` });
      return { ...v, checks, accepted: v.accepted && checks.every((x) => x.ok) };
    }
    attempts.push(
      `${f.from}: ${all
        .filter((x) => !x.ok)
        .map((x) => `${x.id}: ${x.detail}`)
        .join("; ")}`,
    );
    if (found.length === 1) checks.push(...all);
  }
  checks.push({ id, ok: false, detail: `no Google endorsement endorses this launch — ${attempts.join(" | ")}` });
  return { ...v, checks, accepted: false };
}
