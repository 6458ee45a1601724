// What a verified GCE launch endorsement says about one hardware report: the report's SEV-SNP MEASUREMENT is
// the one Google endorses for the VM's vCPU count (or the TDX MRTD is an endorsed one), the firmware's SVN meets
// the policy's minimum, and the guest policy is the one Google launches this firmware with. One check per
// constraint, constrained or not.
import type { Check } from "../types.js";
import type { GoldenMeasurement } from "./abi.js";

export interface GceEndorsementPolicy {
  /** vCPU count of the machine type: selects the one endorsed SNP measurement. Absent = any endorsed count. */
  vcpus?: number;
  /** Minimum Google SVN of the firmware. */
  minSvn?: number;
  /** TDX: RAM (GiB) of the machine type, when MRTDs depend on it (older TDHOB hypervisor mode). */
  ramGib?: number;
}

export interface ReportFacts {
  tee: "snp" | "tdx";
  /** SNP MEASUREMENT or TDX MRTD (hex). */
  measurement: string;
  /** SNP guest policy from the report. */
  snpPolicy?: bigint;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

export function validateGceEndorsement(g: GoldenMeasurement, r: ReportFacts, p: GceEndorsementPolicy): Check[] {
  const out: Check[] = [];
  const m = r.measurement.toLowerCase();
  if (r.tee === "snp") {
    const snp = g.sevSnp;
    if (!snp) return [{ id: "gce.endorsed-measurement", ok: false, detail: "the endorsement has no SEV-SNP section" }];
    if (p.vcpus !== undefined) {
      const want = snp.measurements.get(p.vcpus);
      out.push({
        id: "gce.endorsed-measurement",
        ok: !!want && hex(want) === m,
        detail: !want
          ? `the endorsement has no measurement for ${p.vcpus} vCPUs (endorsed: ${[...snp.measurements.keys()].sort((a, b) => a - b).join(", ")})`
          : hex(want) === m
            ? `MEASUREMENT ${m.slice(0, 16)}… is Google's endorsed value for ${p.vcpus} vCPUs`
            : `MEASUREMENT ${m.slice(0, 16)}… differs from Google's endorsed ${hex(want).slice(0, 16)}… for ${p.vcpus} vCPUs`,
      });
    } else {
      const hit = [...snp.measurements].find(([, v]) => hex(v) === m);
      out.push({
        id: "gce.endorsed-measurement",
        ok: !!hit,
        detail: hit
          ? `MEASUREMENT ${m.slice(0, 16)}… is endorsed for ${hit[0]} vCPUs (the vCPU count is not pinned by the policy)`
          : `MEASUREMENT ${m.slice(0, 16)}… is not endorsed for any vCPU count`,
      });
    }
    if (snp.policy !== 0n && r.snpPolicy !== undefined)
      out.push({
        id: "gce.launch-policy",
        ok: r.snpPolicy === snp.policy,
        detail:
          r.snpPolicy === snp.policy
            ? `guest policy 0x${r.snpPolicy.toString(16)} is the endorsed launch policy`
            : `guest policy 0x${r.snpPolicy.toString(16)} differs from the endorsed 0x${snp.policy.toString(16)}`,
      });
    out.push(svnCheck(snp.svn, p.minSvn));
  } else {
    const tdx = g.tdx;
    if (!tdx) return [{ id: "gce.endorsed-measurement", ok: false, detail: "the endorsement has no TDX section" }];
    const hit = tdx.measurements.find((x) => hex(x.mrtd) === m && (p.ramGib === undefined || x.ramGib === p.ramGib));
    out.push({
      id: "gce.endorsed-measurement",
      ok: !!hit,
      detail: hit
        ? `MRTD ${m.slice(0, 16)}… is endorsed${hit.ramGib ? ` for ${hit.ramGib} GiB RAM` : ""}${hit.earlyAccept ? " (early accept)" : ""}`
        : `MRTD ${m.slice(0, 16)}… is not among the ${tdx.measurements.length} endorsed MRTDs${p.ramGib !== undefined ? ` for ${p.ramGib} GiB` : ""}`,
    });
    out.push(svnCheck(tdx.svn, p.minSvn));
  }
  return out;
}

function svnCheck(svn: number, min: number | undefined): Check {
  if (min === undefined)
    return { id: "gce.svn", ok: true, detail: `firmware SVN ${svn}: not constrained by the policy` };
  return {
    id: "gce.svn",
    ok: svn >= min,
    detail: svn >= min ? `firmware SVN ${svn} ≥ ${min}` : `firmware SVN ${svn} is below the minimum ${min}`,
  };
}
