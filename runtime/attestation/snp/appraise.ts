// SEV-SNP entry point (the shape of every TEE folder's appraise.ts): verify the report (verify.ts), judge it
// against the policy (validate.ts), compare REPORT_DATA with the expected binding, and extract the claims.
import { createHash } from "node:crypto";
import type { Check, Claims } from "../types.js";
import type { Policy, SnpTrustConfig } from "../policy.js";
import { reportDataCheck } from "../binding.js";
import type { AppraiseOptions, Appraiser, EvidenceOf } from "../options.js";
import { decodeTcb, formatTcb, type SnpProduct, type SnpReport } from "./abi.js";
import { KdsClient } from "./kds.js";
import { validateSnpPolicy } from "./validate.js";
import { verifySnp, type SnpVerification } from "./verify.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

export const appraiseSnp: Appraiser<EvidenceOf<"snp">> = async (evidence, policy, opts) => {
  const evidenceDigest = createHash("sha384").update(evidence.report).digest("hex");
  let v: SnpVerification;
  try {
    v = await verifySnp(
      {
        report: evidence.report,
        vek: evidence.vek,
        caChain: evidence.caChain,
        certTable: evidence.certTable,
        product: opts.snpProduct,
      },
      { trust: trustFor(opts), now: opts.now },
    );
  } catch (e) {
    // verifySnp turns bad evidence into failed checks; reaching here is a defect, and it must still refuse.
    return {
      accepted: false,
      simulated: false,
      evidenceDigest,
      checks: [{ id: "snp.internal", ok: false, detail: `verifier error: ${(e as Error)?.message ?? String(e)}` }],
    };
  }
  const checks: Check[] = [...v.checks, ...policyChecks(v, policy, opts)];
  const claims = v.report && v.product && (v.ok || opts.explain) ? snpClaims(v.report, v.product, v) : undefined;
  return { accepted: checks.every((c) => c.ok), simulated: v.simulated, checks, claims, evidenceDigest };
};

const offlineViews = new WeakMap<object, KdsClient>();

/** Explain mode must not touch the network or the cache on disk: KDS then serves cached objects only. */
function trustFor(opts: AppraiseOptions): SnpTrustConfig {
  const trust = opts.trust.snp ?? {};
  if (!opts.explain || !trust.kds) return trust;
  let view = offlineViews.get(trust.kds);
  if (!view)
    offlineViews.set(
      trust.kds,
      (view =
        trust.kds instanceof KdsClient ? trust.kds.offlineView() : new KdsClient({ ...trust.kds, offline: true })),
    );
  return { ...trust, kds: view };
}

/** The policy's SNP section, the REPORT_DATA binding, and a note when the root is simulated. */
function policyChecks(v: SnpVerification, policy: Policy, opts: AppraiseOptions): Check[] {
  const checks: Check[] = [];
  const r = v.report;
  if (r && v.product) {
    checks.push(...validateSnpPolicy(r, v.product, r.signingKey === "vlek" ? "vlek" : "vcek", policy.snp ?? {}));
  } else {
    checks.push({
      id: "policy",
      ok: false,
      detail: "policy not evaluated: the report could not be parsed or its product determined",
    });
  }
  checks.push(reportDataCheck(r ? hex(r.reportData) : undefined, policy, opts));
  if (v.simulated)
    checks.push({
      id: "snp.simulated",
      ok: true,
      detail: "evidence chains to a SIMULATED AMD root configured in the trust configuration: not genuine hardware",
    });
  return checks;
}

/** Claims of a verified report (hex, lowercase); `extra` carries every field a policy or an audit may want. */
export function snpClaims(r: SnpReport, product: SnpProduct, v: Pick<SnpVerification, "vek" | "simulated">): Claims {
  const tcb = decodeTcb(r.reportedTcb, product);
  return {
    platform: "snp",
    measurement: hex(r.measurement),
    reportData: hex(r.reportData),
    chipId: hex(r.chipId),
    tcb: { ...tcb },
    debug: r.policyBits.debug,
    product,
    extra: {
      version: r.version,
      guestSvn: r.guestSvn,
      policy: "0x" + r.policy.toString(16),
      policyBits: r.policyBits,
      vmpl: r.vmpl,
      platformInfo: "0x" + r.platformInfo.toString(16),
      signingKey: r.signingKey,
      hostData: hex(r.hostData),
      idKeyDigest: hex(r.idKeyDigest),
      authorKeyDigest: hex(r.authorKeyDigest),
      authorKeyEn: r.authorKeyEn,
      familyId: hex(r.familyId),
      imageId: hex(r.imageId),
      reportId: hex(r.reportId),
      reportIdMa: hex(r.reportIdMa),
      currentTcb: formatTcb(decodeTcb(r.currentTcb, product)),
      committedTcb: formatTcb(decodeTcb(r.committedTcb, product)),
      launchTcb: formatTcb(decodeTcb(r.launchTcb, product)),
      currentFirmware: `${r.currentVersion.major}.${r.currentVersion.minor}.${r.currentVersion.build}`,
      committedFirmware: `${r.committedVersion.major}.${r.committedVersion.minor}.${r.committedVersion.build}`,
      ...(r.cpuid ? { cpuid: r.cpuid } : {}),
      ...(r.launchMitVector !== undefined
        ? {
            launchMitVector: "0x" + r.launchMitVector.toString(16),
            currentMitVector: "0x" + r.currentMitVector!.toString(16),
          }
        : {}),
      ...(v.vek
        ? {
            vek: {
              kind: v.vek.kind,
              productName: v.vek.productName,
              cspId: v.vek.cspId,
              notAfter: v.vek.notAfter.toISOString(),
            },
          }
        : {}),
      ...(v.simulated ? { simulated: true } : {}),
    },
  };
}
