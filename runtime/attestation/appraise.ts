// The one entry point Nitride, the CLI and the enclaivelet use: verify evidence of any kind and appraise it
// against a policy. Each TEE folder (snp/, tdx/, azure/) has the same shape — abi → verify → validate, composed
// by its appraise.ts into an Appraiser (options.ts) — and is dispatched to the same way, loaded lazily so a
// build without one still answers, with a failed "not supported" check. Never throws for bad evidence.
import { createHash } from "node:crypto";
import type { Evidence, Verdict } from "./types.js";
import type { Policy } from "./policy.js";
import type { AppraiseOptions, Appraiser, EvidenceOf } from "./options.js";
import { appraiseWithVtpm, involvesVtpm } from "./tpm/appraise.js";
import { withGceEndorsement } from "./gce/appraise.js";

export type { AppraiseOptions, Appraiser, EvidenceOf } from "./options.js";
export { reportDataCheck } from "./binding.js";

type Kind = Evidence["kind"];

/** Where each evidence kind is appraised: the TEE folder's appraise.ts and the Appraiser it exports. */
const APPRAISERS: { [K in Kind]: () => Promise<Appraiser<EvidenceOf<K>>> } = {
  snp: async () => (await import("./snp/appraise.js")).appraiseSnp,
  tdx: async () => (await import("./tdx/appraise.js")).appraiseTdx,
  "azure-snp": async () => (await import("./azure/appraise.js")).appraiseAzure,
  "azure-tdx": async () => (await import("./azure/appraise.js")).appraiseAzure,
};

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
  const kind = evidence?.kind;
  if (!Object.hasOwn(APPRAISERS, kind))
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
  let appraiser: Appraiser;
  try {
    // The table pairs each kind with its own Appraiser; TypeScript cannot follow that through the lookup.
    appraiser = (await APPRAISERS[kind]()) as Appraiser;
  } catch (e) {
    return notSupported(kind, (e as Error).message, evidenceDigest);
  }
  // GCE: the firmware measurement must be one Google endorses for this VM's shape (judged on the TEE's claims).
  const gce = policy.gce;
  const tee: Appraiser = gce
    ? async (e, p, o) => withGceEndorsement(await appraiser(e, p, o), e, gce, o.trust.gce, o.now)
    : appraiser;
  // AWS/GCE vTPM evidence rides on SNP/TDX evidence: its AK is bound into REPORT_DATA, checked here.
  if (involvesVtpm(evidence, policy)) return appraiseWithVtpm(evidence, policy, opts, tee);
  return tee(evidence, policy, opts);
}
