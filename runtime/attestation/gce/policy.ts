// The `gce` section of an appraisal policy: the firmware measurement must be one Google's signed launch
// endorsement gives for this VM's shape. Parsed strictly, errors naming the field.
import type { GceEndorsementPolicy } from "./validate.js";

export interface GcePolicy extends GceEndorsementPolicy {
  /**
   * Google launch endorsements (VMLaunchEndorsement, base64) registered for this workload at deploy time. The
   * SNP evidence may carry one too (extended-report certificate table, GUID GCE_ENDORSEMENT_GUID); either is
   * verified against the runtime's configured GCE-cc-tcb-root at every appraisal.
   */
  endorsements?: string[];
}

export class GcePolicyError extends Error {
  override name = "GcePolicyError";
  constructor(
    readonly reason: string,
    readonly field: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

const uint = (v: unknown, f: string, max: number): number => {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max)
    throw new GcePolicyError(`expected an integer 0..${max}`, f);
  return v;
};

export function parseGcePolicy(v: unknown, f = "gce"): GcePolicy {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new GcePolicyError("expected an object", f);
  const o = v as Record<string, unknown>;
  const out: GcePolicy = {};
  for (const [k, x] of Object.entries(o)) {
    const g = `${f}.${k}`;
    if (k === "vcpus") out.vcpus = uint(x, g, 4096);
    else if (k === "minSvn") out.minSvn = uint(x, g, 0xffffffff);
    else if (k === "ramGib") out.ramGib = uint(x, g, 1 << 20);
    else if (k === "endorsements") {
      if (!Array.isArray(x) || x.length === 0 || x.length > 16)
        throw new GcePolicyError("expected a list of 1..16 base64 VMLaunchEndorsements", g);
      out.endorsements = x.map((e, i) => {
        if (typeof e !== "string" || e.length > 350_000 || !/^[A-Za-z0-9+/]+={0,2}$/.test(e))
          throw new GcePolicyError("expected base64", `${g}[${i}]`);
        return e;
      });
    } else throw new GcePolicyError("unknown field (allowed: endorsements, vcpus, minSvn, ramGib)", g);
  }
  return out;
}
