// Intel TDX evidence: parse (abi) → verify signatures and PCK chain (verify) → collateral (TCB status)
// → policy (validate), folded into the shared Verdict.
import { createHash } from "node:crypto";
import { EvidenceFormatError, type Check, type Claims, type Verdict } from "../types.js";
import { parseQuote, tdDebug, type TdxQuote } from "./abi.js";
import { evaluateCollateral, fetchPcsCollateral, type TdxCollateral } from "./collateral.js";
import { verifyQuote, type TdxTrustOptions } from "./verify.js";
import { hex, validateBody, validateTcbStatus, type TdxPolicy } from "./validate.js";

export * from "./abi.js";
export {
  INTEL_SGX_ROOT_CA_SHA256,
  INTEL_TD_QE_MRSIGNER,
  verifyQuote,
  type TdxTrustOptions,
  type QuoteVerification,
  type PckChain,
} from "./verify.js";
export {
  loadCollateralDir,
  addCollateralFile,
  emptyCollateral,
  evaluateCollateral,
  fetchPcsCollateral,
  type TdxCollateral,
} from "./collateral.js";
export {
  validateBody,
  validateTcbStatus,
  checkTdxPolicy,
  DEFAULT_ALLOWED_TCB_STATUSES,
  type TdxPolicy,
} from "./validate.js";

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
    return await verifyTdxUnguarded(quoteBytes, options);
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

async function verifyTdxUnguarded(quoteBytes: Uint8Array, options: TdxVerifyOptions): Promise<Verdict> {
  const evidence = evidenceDigest(quoteBytes);
  let quote: TdxQuote;
  try {
    quote = parseQuote(quoteBytes);
  } catch (e) {
    const msg = e instanceof EvidenceFormatError ? e.message : `unparseable quote: ${(e as Error).message}`;
    return {
      accepted: false,
      simulated: false,
      checks: [{ id: "tdx.parse", ok: false, detail: msg }],
      evidenceDigest: evidence,
    };
  }
  const now = options.now ?? new Date();
  const v = verifyQuote(quote, { ...options, now });
  const checks: Check[] = [
    { id: "tdx.parse", ok: true, detail: `DCAP quote v${quote.header.version}, ${quote.raw.length} bytes` },
    ...v.checks,
  ];
  const extra: Record<string, unknown> = {};
  if (v.chain?.extension) {
    extra.fmspc = v.chain.extension.fmspc;
    extra.pceId = v.chain.extension.pceId;
    extra.pceSvn = v.chain.extension.pceSvn;
  }
  let statuses: string[] | undefined;
  let collateral = options.collateral;
  if (!collateral && options.fetchCollateral && v.ok && v.chain?.extension) {
    try {
      const f = typeof options.fetchCollateral === "function" ? options.fetchCollateral : undefined;
      collateral = await fetchPcsCollateral(v.chain.extension.fmspc, v.chain.caType, { fetch: f });
      checks.push({
        id: "tdx.collateral.fetch",
        ok: true,
        detail: `collateral for FMSPC ${v.chain.extension.fmspc} fetched from the Intel PCS`,
      });
    } catch (e) {
      // Without collateral the verdict rests on the signature chain; policy.requireCollateral makes that fatal.
      checks.push({
        id: "tdx.collateral.fetch",
        ok: options.policy?.requireCollateral !== true,
        detail: `Intel PCS unreachable, TCB status not evaluated: ${(e as Error).message}`,
      });
    }
  }
  if (collateral && v.chain) {
    const c = await evaluateCollateral(quote, v.chain, collateral, now);
    checks.push(...c.checks);
    statuses = c.statuses;
    Object.assign(extra, c.info);
  }
  checks.push(...validateBody(quote.body, options.policy), ...validateTcbStatus(statuses, options.policy));
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
    claims = tdxClaims(quote, extra);
    if (statuses) claims.tcb.tcbStatus = statuses.join("/");
  }
  return { accepted: checks.every((c) => c.ok), simulated: v.simulated, checks, claims, evidenceDigest: evidence };
}

/** Verdict of a quote under an explicit policy (same as verifyTdx with options.policy). */
export function appraiseTdx(
  quoteBytes: Uint8Array,
  policy: TdxPolicy,
  options: Omit<TdxVerifyOptions, "policy"> = {},
): Promise<Verdict> {
  return verifyTdx(quoteBytes, { ...options, policy });
}
