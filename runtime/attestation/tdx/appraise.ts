// Intel TDX entry point (the shape of every TEE folder's appraise.ts), in named steps: parse the quote (abi)
// → verify signatures and the PCK chain (verify) → obtain and evaluate PCS collateral (collateral: TCB
// status) → judge against the policy (validate) → claims. Never throws for bad evidence.
import { createHash } from "node:crypto";
import { EvidenceFormatError, type Check, type Claims, type Verdict } from "../types.js";
import type { Policy } from "../policy.js";
import { reportDataCheck } from "../binding.js";
import type { AppraiseOptions, Appraiser, EvidenceOf } from "../options.js";
import { parseQuote, tdDebug, type TdxQuote } from "./abi.js";
import { evaluateCollateral, fetchPcsCollateral, type TdxCollateral } from "./collateral.js";
import { verifyQuote, type QuoteVerification, type TdxTrustOptions } from "./verify.js";
import { hex, validateBody, validateTcbStatus, type TdxPolicy } from "./validate.js";

export interface TdxVerifyOptions extends TdxTrustOptions {
  policy?: TdxPolicy;
  /** PCS collateral; when present its checks and TCB statuses join the verdict. */
  collateral?: TdxCollateral;
  /** Return claims even when the quote does not verify (diagnostics, `--json`); never use them for decisions. */
  explain?: boolean;
  /** Fetch collateral from the Intel PCS when none is given (true = global fetch). Off by default. */
  fetchCollateral?: boolean | typeof fetch;
}

export function evidenceDigest(bytes: Uint8Array): string {
  return createHash("sha384").update(bytes).digest("hex");
}

/** Claims of a parsed quote (hex, lowercase). */
export function tdxClaims(q: TdxQuote, extra: Record<string, unknown> = {}): Claims {
  const b = q.body;
  return {
    platform: "tdx",
    measurement: hex(b.mrTd),
    rtmrs: b.rtmrs.map(hex),
    reportData: hex(b.reportData),
    tcb: {
      teeTcbSvn: hex(b.teeTcbSvn),
      qeIsvSvn: q.qeReport.isvSvn,
      ...(b.teeTcbSvn2 ? { teeTcbSvn2: hex(b.teeTcbSvn2) } : {}),
    },
    debug: tdDebug(b.tdAttributes),
    extra: {
      quoteVersion: q.header.version,
      tdReport: q.bodyType === 3 ? "1.5" : "1.0",
      mrSeam: hex(b.mrSeam),
      mrSignerSeam: hex(b.mrSignerSeam),
      seamAttributes: hex(b.seamAttributes),
      tdAttributes: hex(b.tdAttributes),
      xfam: hex(b.xfam),
      mrConfigId: hex(b.mrConfigId),
      mrOwner: hex(b.mrOwner),
      mrOwnerConfig: hex(b.mrOwnerConfig),
      ...(b.mrServiceTd ? { mrServiceTd: hex(b.mrServiceTd) } : {}),
      headerUserData: hex(q.header.userData),
      qeMrSigner: hex(q.qeReport.mrSigner),
      qeIsvProdId: q.qeReport.isvProdId,
      trailingBytes: q.trailingBytes,
      ...extra,
    },
  };
}

/**
 * Verifies a DCAP TDX quote and appraises it against `options.policy` (default policy when absent:
 * debug refused, TCB status judged only when collateral is given). Never throws for bad evidence.
 */
export async function verifyTdx(quoteBytes: Uint8Array, options: TdxVerifyOptions = {}): Promise<Verdict> {
  try {
    return await verifyTdxSteps(quoteBytes, options);
  } catch (e) {
    // Defence in depth: a verifier bug must surface as a rejection naming it, never as an accept or a crash.
    return {
      accepted: false,
      simulated: false,
      checks: [{ id: "tdx.internal", ok: false, detail: `verification aborted: ${(e as Error).message}` }],
      evidenceDigest: evidenceDigest(quoteBytes instanceof Uint8Array ? quoteBytes : new Uint8Array()),
    };
  }
}

/**
 * The appraise.ts entry point: the policy's TDX section and the trust configuration's Intel section, then
 * REPORT_DATA against the caller's expected binding.
 */
export const appraiseTdx: Appraiser<EvidenceOf<"tdx">> = async (evidence, policy, opts) => {
  const v = await verifyTdx(evidence.quote, {
    ...(opts.trust.tdx ?? {}),
    now: opts.now,
    policy: (policy.tdx ?? {}) as TdxPolicy,
  });
  return withReportData(v, policy, opts);
};

function withReportData(v: Verdict, policy: Policy, opts: AppraiseOptions): Verdict {
  const checks = [
    ...v.checks.filter((c) => c.id !== "policy.report-data"),
    reportDataCheck(v.claims?.reportData, policy, opts),
  ];
  return { ...v, checks, accepted: checks.every((c) => c.ok) };
}

async function verifyTdxSteps(quoteBytes: Uint8Array, options: TdxVerifyOptions): Promise<Verdict> {
  const digest = evidenceDigest(quoteBytes);
  const quote = parseStep(quoteBytes);
  if (!quote.ok) return { accepted: false, simulated: false, checks: [quote.check], evidenceDigest: digest };
  const now = options.now ?? new Date();
  const v = verifyQuote(quote.quote, { ...options, now });
  const checks: Check[] = [quote.check, ...v.checks];
  const extra: Record<string, unknown> = {};
  if (v.chain?.extension) {
    extra.fmspc = v.chain.extension.fmspc;
    if (v.chain.extension.ppid) extra.ppid = v.chain.extension.ppid;
    extra.pceId = v.chain.extension.pceId;
    extra.pceSvn = v.chain.extension.pceSvn;
  }
  const collateral = options.collateral ?? (await fetchCollateralStep(v, options, checks));
  let statuses: string[] | undefined;
  if (collateral && v.chain) {
    const c = await evaluateCollateral(quote.quote, v.chain, collateral, now);
    checks.push(...c.checks);
    statuses = c.statuses;
    Object.assign(extra, c.info);
  }
  checks.push(...validateBody(quote.quote.body, options.policy), ...validateTcbStatus(statuses, options.policy));
  if (v.simulated)
    checks.push({
      id: "tdx.simulated",
      ok: true,
      detail: "evidence chains to a SIMULATED root configured by the caller: not genuine Intel hardware",
    });
  // Claims of a quote whose signatures do not verify are attacker-chosen: only shown in explain mode.
  const authentic = checks.filter((c) => c.id.startsWith("tdx.")).every((c) => c.ok);
  let claims: Claims | undefined;
  if (authentic || options.explain) {
    claims = tdxClaims(quote.quote, extra);
    if (statuses) claims.tcb.tcbStatus = statuses.join("/");
  }
  return { accepted: checks.every((c) => c.ok), simulated: v.simulated, checks, claims, evidenceDigest: digest };
}

function parseStep(bytes: Uint8Array): { ok: true; quote: TdxQuote; check: Check } | { ok: false; check: Check } {
  try {
    const quote = parseQuote(bytes);
    return {
      ok: true,
      quote,
      check: { id: "tdx.parse", ok: true, detail: `DCAP quote v${quote.header.version}, ${quote.raw.length} bytes` },
    };
  } catch (e) {
    const msg = e instanceof EvidenceFormatError ? e.message : `unparseable quote: ${(e as Error).message}`;
    return { ok: false, check: { id: "tdx.parse", ok: false, detail: msg } };
  }
}

/** Fetches PCS collateral for a verified quote when the options ask for it (tdx.collateral.fetch). */
async function fetchCollateralStep(
  v: QuoteVerification,
  options: TdxVerifyOptions,
  checks: Check[],
): Promise<TdxCollateral | undefined> {
  if (!options.fetchCollateral || !v.ok || !v.chain?.extension) return undefined;
  try {
    const f = typeof options.fetchCollateral === "function" ? options.fetchCollateral : undefined;
    const collateral = await fetchPcsCollateral(v.chain.extension.fmspc, v.chain.caType, { fetch: f });
    checks.push({
      id: "tdx.collateral.fetch",
      ok: true,
      detail: `collateral for FMSPC ${v.chain.extension.fmspc} fetched from the Intel PCS`,
    });
    return collateral;
  } catch (e) {
    // Without collateral the verdict rests on the signature chain; policy.requireCollateral makes that fatal.
    checks.push({
      id: "tdx.collateral.fetch",
      ok: options.policy?.requireCollateral !== true,
      detail: `Intel PCS unreachable, TCB status not evaluated: ${(e as Error).message}`,
    });
    return undefined;
  }
}
