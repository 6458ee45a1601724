// The one entry point Nitride, the CLI and the enclaivelet use: verify evidence of any kind and appraise
// it against a policy. SNP is handled here; TDX and Azure evidence go to their modules (loaded lazily so a
// build without one still answers, with a failed "not supported" check). Never throws for bad evidence.
import { createHash, timingSafeEqual } from "node:crypto";
import type { Check, Claims, Evidence, Verdict } from "./types.js";
import { reportDataFor } from "./binding.js";
import type { Policy, TrustConfig } from "./policy.js";
import { decodeTcb, formatTcb, type SnpProduct } from "./snp/abi.js";
import { KdsClient } from "./snp/kds.js";
import { validateSnpPolicy } from "./snp/validate.js";
import { verifySnp } from "./snp/verify.js";

export interface AppraiseOptions {
  trust: TrustConfig;
  /** Verification time (certificate validity). Default: now. */
  now?: Date;
  /** Expected 64-byte REPORT_DATA (shorter values are zero-padded on the right, as Azure's SHA-256 ‖ 0^32). */
  expectedReportData?: Uint8Array;
  /** Alternative to expectedReportData: derive it from Nitride's nonce and the workload's key (binding.ts). */
  binding?: { nonce: Uint8Array; publicKeySpki: Uint8Array };
  /** Explain mode: same checks, no side effects (no network, no cache writes); claims even when rejected. */
  explain?: boolean;
  /** SNP v2 reports only: the product when neither the report nor its VEK names it. */
  snpProduct?: SnpProduct;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function digestOf(e: Evidence): string {
  const h = createHash("sha384");
  switch (e.kind) {
    case "snp":
      h.update(e.report);
      break;
    case "tdx":
      h.update(e.quote);
      break;
    case "azure-snp":
      h.update(e.hclReport);
      break;
    case "azure-tdx":
      h.update(e.hclReport).update(e.tdQuote);
      break;
  }
  return h.digest("hex");
}

function expectedData(opts: AppraiseOptions): Uint8Array | undefined | string {
  if (opts.binding) return reportDataFor(opts.binding.nonce, opts.binding.publicKeySpki);
  const e = opts.expectedReportData;
  if (!e) return undefined;
  if (e.length > 64) return `expected REPORT_DATA is ${e.length} bytes; at most 64`;
  const out = new Uint8Array(64);
  out.set(e);
  return out;
}

/** policy.report-data: exact comparison of REPORT_DATA with the caller's expected value. */
export function reportDataCheck(actualHex: string | undefined, policy: Policy, opts: AppraiseOptions): Check {
  const id = "policy.report-data";
  const want = expectedData(opts);
  if (typeof want === "string") return { id, ok: false, detail: want };
  if (!want) {
    return policy.requireReportDataBinding
      ? {
          id,
          ok: false,
          detail: "the policy requires REPORT_DATA to be bound to a fresh nonce, but no expected value was given",
        }
      : { id, ok: true, detail: "REPORT_DATA not checked: no expected value given" };
  }
  if (actualHex === undefined) return { id, ok: false, detail: "REPORT_DATA unavailable (evidence did not parse)" };
  const actual = Buffer.from(actualHex, "hex");
  const ok = actual.length === 64 && timingSafeEqual(actual, Buffer.from(want));
  return {
    id,
    ok,
    detail: ok
      ? "REPORT_DATA equals the expected binding (nonce + key)"
      : `REPORT_DATA ${actualHex.slice(0, 16)}… does not match the expected ${hex(want).slice(0, 16)}…`,
  };
}

function notSupported(kind: string, why: string, evidenceDigest: string): Verdict {
  return {
    accepted: false,
    simulated: false,
    evidenceDigest,
    checks: [
      { id: `${kind}.supported`, ok: false, detail: `${kind} evidence is not supported in this build (${why})` },
    ],
  };
}

export async function appraise(evidence: Evidence, policy: Policy, opts: AppraiseOptions): Promise<Verdict> {
  policy ??= {};
  opts = { ...opts, trust: opts?.trust ?? {} };
  let evidenceDigest: string;
  try {
    evidenceDigest = digestOf(evidence);
  } catch {
    return {
      accepted: false,
      simulated: false,
      evidenceDigest: "",
      checks: [{ id: "evidence.format", ok: false, detail: "evidence fields are missing or not bytes" }],
    };
  }
  switch (evidence?.kind) {
    case "snp":
      return appraiseSnp(evidence, policy, opts, evidenceDigest);
    case "tdx": {
      let mod: typeof import("./tdx/index.js");
      try {
        mod = await import("./tdx/index.js");
      } catch (e) {
        return notSupported("tdx", (e as Error).message, evidenceDigest);
      }
      const v = await mod.appraiseTdx(evidence.quote, (policy.tdx ?? {}) as Parameters<typeof mod.appraiseTdx>[1], {
        ...(opts.trust.tdx ?? {}),
        now: opts.now,
      });
      return withReportData(v, policy, opts);
    }
    case "azure-snp":
    case "azure-tdx": {
      let mod: typeof import("./azure/index.js");
      try {
        mod = await import("./azure/index.js");
      } catch (e) {
        return notSupported(evidence.kind, (e as Error).message, evidenceDigest);
      }
      return mod.appraiseAzure(evidence, policy, opts);
    }
    default:
      return {
        accepted: false,
        simulated: false,
        evidenceDigest,
        checks: [
          {
            id: "evidence.kind",
            ok: false,
            detail: `unknown evidence kind '${String((evidence as { kind?: unknown })?.kind)}'`,
          },
        ],
      };
  }
}

function withReportData(v: Verdict, policy: Policy, opts: AppraiseOptions): Verdict {
  const checks = [
    ...v.checks.filter((c) => c.id !== "policy.report-data"),
    reportDataCheck(v.claims?.reportData, policy, opts),
  ];
  return { ...v, checks, accepted: checks.every((c) => c.ok) };
}

const offlineViews = new WeakMap<object, KdsClient>();

async function appraiseSnp(
  evidence: Extract<Evidence, { kind: "snp" }>,
  policy: Policy,
  opts: AppraiseOptions,
  evidenceDigest: string,
): Promise<Verdict> {
  let trust = opts.trust.snp ?? {};
  if (opts.explain && trust.kds) {
    // Explain mode must not touch the network or the cache on disk: serve cached objects only.
    let view = offlineViews.get(trust.kds);
    if (!view)
      offlineViews.set(
        trust.kds,
        (view =
          trust.kds instanceof KdsClient ? trust.kds.offlineView() : new KdsClient({ ...trust.kds, offline: true })),
      );
    trust = { ...trust, kds: view };
  }
  let v: Awaited<ReturnType<typeof verifySnp>>;
  try {
    v = await verifySnp(
      {
        report: evidence.report,
        vek: evidence.vek,
        caChain: evidence.caChain,
        certTable: evidence.certTable,
        product: opts.snpProduct,
      },
      { trust, now: opts.now },
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
  const checks: Check[] = [...v.checks];
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

  let claims: Claims | undefined;
  if (r && v.product && (v.ok || opts.explain)) {
    const tcb = decodeTcb(r.reportedTcb, v.product);
    claims = {
      platform: "snp",
      measurement: hex(r.measurement),
      reportData: hex(r.reportData),
      chipId: hex(r.chipId),
      tcb: { ...tcb },
      debug: r.policyBits.debug,
      product: v.product,
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
        currentTcb: formatTcb(decodeTcb(r.currentTcb, v.product)),
        committedTcb: formatTcb(decodeTcb(r.committedTcb, v.product)),
        launchTcb: formatTcb(decodeTcb(r.launchTcb, v.product)),
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
  return { accepted: checks.every((c) => c.ok), simulated: v.simulated, checks, claims, evidenceDigest };
}
