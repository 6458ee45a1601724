// TDX appraisal policy: which verified TD reports are acceptable. Pure comparisons on parsed fields;
// cryptography lives in verify.ts, TCB status in collateral.ts.
import { timingSafeEqual } from "node:crypto";
import type { Check } from "../types.js";
import { tdDebug, type TdReportBody } from "./abi.js";

/** TCB statuses accepted when the policy names none (Intel's "no action needed or configuration only"). */
export const DEFAULT_ALLOWED_TCB_STATUSES = [
  "UpToDate",
  "SWHardeningNeeded",
  "ConfigurationNeeded",
  "ConfigurationAndSWHardeningNeeded",
];

/** JSON-friendly TDX policy. Hex strings are case-insensitive; an omitted field does not constrain. */
export interface TdxPolicy {
  /** Allowed MRTD values (48-byte hex). */
  mrTd?: string[];
  /** Allowed RTMR values, per register (48-byte hex). */
  rtmr0?: string[];
  rtmr1?: string[];
  rtmr2?: string[];
  rtmr3?: string[];
  /** Exact MRCONFIGID / MROWNER / MROWNERCONFIG (48-byte hex). */
  mrConfigId?: string;
  mrOwner?: string;
  mrOwnerConfig?: string;
  /** Allowed MRSEAM values (the TDX module). */
  mrSeam?: string[];
  /** Exact XFAM (8-byte hex). */
  xfam?: string;
  /** TD_ATTRIBUTES.DEBUG is refused unless this is true. */
  allowDebug?: boolean;
  /** Minimum TEE_TCB_SVN (16-byte hex), compared component by component. */
  minTeeTcbSvn?: string;
  /** TCB statuses accepted from collateral (default DEFAULT_ALLOWED_TCB_STATUSES). */
  allowedTcbStatuses?: string[];
  /** Refuse quotes when no collateral was evaluated (default false: signature chain only). */
  requireCollateral?: boolean;
  /** Exact REPORTDATA (64-byte hex), e.g. the nonce binding. */
  reportData?: string;
  /** Refuse when no expected REPORTDATA is configured (a policy's requireReportDataBinding). */
  requireReportData?: boolean;
  /** TD_ATTRIBUTES under a mask must equal a value (8-byte hex each), e.g. to require SEPT_VE_DISABLE. */
  tdAttributes?: { mask: string; value: string };
  /** Exact MRSERVICETD (TD report 1.5 only; 48-byte hex). */
  mrServiceTd?: string;
}

export const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const norm = (s: string): string => s.toLowerCase().replace(/^0x/, "");

function allowList(id: string, name: string, actual: Uint8Array, allowed: string[] | undefined, checks: Check[]): void {
  if (allowed === undefined) return;
  const a = hex(actual);
  const ok = allowed.map(norm).includes(a);
  checks.push({
    id,
    ok,
    detail: ok ? `${name} ${a} is allowed` : `${name} ${a} is not among the ${allowed.length} allowed value(s)`,
  });
}

function exact(id: string, name: string, actual: Uint8Array, want: string | undefined, checks: Check[]): void {
  if (want === undefined) return;
  const a = hex(actual);
  const w = Buffer.from(norm(want), "hex");
  const ok = w.length === actual.length && timingSafeEqual(w, Buffer.from(actual));
  checks.push({ id, ok, detail: ok ? `${name} matches` : `${name} ${a} differs from the expected ${norm(want)}` });
}

/** Policy checks on the TD report body. Debug is always checked. */
export function validateBody(body: TdReportBody, policy: TdxPolicy = {}): Check[] {
  const checks: Check[] = [];
  const debug = tdDebug(body.tdAttributes);
  checks.push({
    id: "policy.debug",
    ok: !debug || policy.allowDebug === true,
    detail: debug
      ? policy.allowDebug
        ? "TD_ATTRIBUTES.DEBUG is set (allowed by policy)"
        : `TD_ATTRIBUTES.DEBUG is set (td_attributes ${hex(body.tdAttributes)}): a debuggable TD exposes its memory to the host; refused by default`
      : "TD_ATTRIBUTES.DEBUG is clear",
  });
  allowList("policy.mrtd", "MRTD", body.mrTd, policy.mrTd, checks);
  const rtmrPolicies = [policy.rtmr0, policy.rtmr1, policy.rtmr2, policy.rtmr3];
  rtmrPolicies.forEach((allowed, i) => allowList(`policy.rtmr${i}`, `RTMR${i}`, body.rtmrs[i], allowed, checks));
  exact("policy.mrconfigid", "MRCONFIGID", body.mrConfigId, policy.mrConfigId, checks);
  exact("policy.mrowner", "MROWNER", body.mrOwner, policy.mrOwner, checks);
  exact("policy.mrownerconfig", "MROWNERCONFIG", body.mrOwnerConfig, policy.mrOwnerConfig, checks);
  allowList("policy.mrseam", "MRSEAM", body.mrSeam, policy.mrSeam, checks);
  exact("policy.xfam", "XFAM", body.xfam, policy.xfam, checks);
  exact("policy.report-data", "REPORTDATA", body.reportData, policy.reportData, checks);
  if (policy.reportData === undefined && policy.requireReportData) {
    checks.push({
      id: "policy.report-data",
      ok: false,
      detail: "the policy requires REPORTDATA to be bound to a fresh nonce, but no expected value was given",
    });
  }
  if (policy.tdAttributes) {
    const mask = Buffer.from(norm(policy.tdAttributes.mask), "hex");
    const value = Buffer.from(norm(policy.tdAttributes.value), "hex");
    const ok = body.tdAttributes.every((b, i) => (b & mask[i]) === value[i]);
    checks.push({
      id: "policy.td-attributes",
      ok,
      detail: ok
        ? `TD_ATTRIBUTES ${hex(body.tdAttributes)} match ${hex(value)} under mask ${hex(mask)}`
        : `TD_ATTRIBUTES ${hex(body.tdAttributes)} do not match ${hex(value)} under mask ${hex(mask)}`,
    });
  }
  if (policy.mrServiceTd !== undefined) {
    if (body.mrServiceTd) exact("policy.mrservicetd", "MRSERVICETD", body.mrServiceTd, policy.mrServiceTd, checks);
    else
      checks.push({
        id: "policy.mrservicetd",
        ok: false,
        detail: "the policy pins MRSERVICETD but the quote has a TD report 1.0 body (no MRSERVICETD)",
      });
  }
  if (policy.minTeeTcbSvn !== undefined) {
    const min = Buffer.from(norm(policy.minTeeTcbSvn), "hex");
    const low: number[] = [];
    for (let i = 0; i < 16; i++) if (body.teeTcbSvn[i] < (min[i] ?? 0)) low.push(i);
    checks.push({
      id: "policy.tee-tcb-svn",
      ok: low.length === 0,
      detail:
        low.length === 0
          ? `TEE_TCB_SVN ${hex(body.teeTcbSvn)} ≥ ${hex(min)}`
          : `TEE_TCB_SVN ${hex(body.teeTcbSvn)} below the minimum ${hex(min)} at component(s) ${low.join(", ")}`,
    });
  }
  return checks;
}

/** Policy check on the TCB status derived from collateral (undefined status = no collateral evaluated). */
export function validateTcbStatus(statuses: string[] | undefined, policy: TdxPolicy = {}): Check[] {
  if (statuses === undefined) {
    return [
      {
        id: "policy.tcb-status",
        ok: policy.requireCollateral !== true,
        detail: policy.requireCollateral
          ? "no collateral was evaluated and the policy requires a TCB status"
          : "TCB status not evaluated (no collateral supplied)",
      },
    ];
  }
  const allowed = policy.allowedTcbStatuses ?? DEFAULT_ALLOWED_TCB_STATUSES;
  const bad = statuses.filter((s) => !allowed.includes(s));
  return [
    {
      id: "policy.tcb-status",
      ok: bad.length === 0,
      detail:
        bad.length === 0
          ? `TCB status ${statuses.join(" / ")} is allowed`
          : `TCB status ${bad.join(", ")} is not in the allowed set (${allowed.join(", ")})`,
    },
  ];
}

/** Throws a message naming the field for a policy JSON that is not a TdxPolicy. */
export function checkTdxPolicy(p: unknown, where = "tdx policy"): TdxPolicy {
  if (typeof p !== "object" || p === null || Array.isArray(p)) throw new Error(`${where}: must be an object`);
  const o = p as Record<string, unknown>;
  const hexOf = (k: string, bytes: number, v: unknown) => {
    if (typeof v !== "string" || !/^(0x)?[0-9a-fA-F]*$/.test(v) || norm(v).length !== bytes * 2)
      throw new Error(`${where}.${k}: expected ${bytes}-byte hex`);
  };
  const lists: Record<string, number> = { mrTd: 48, rtmr0: 48, rtmr1: 48, rtmr2: 48, rtmr3: 48, mrSeam: 48 };
  const singles: Record<string, number> = {
    mrConfigId: 48,
    mrOwner: 48,
    mrOwnerConfig: 48,
    xfam: 8,
    minTeeTcbSvn: 16,
    reportData: 64,
    mrServiceTd: 48,
  };
  for (const [k, v] of Object.entries(o)) {
    if (k in lists) {
      if (!Array.isArray(v)) throw new Error(`${where}.${k}: expected an array of hex strings`);
      v.forEach((x, i) => hexOf(`${k}[${i}]`, lists[k], x));
    } else if (k in singles) hexOf(k, singles[k], v);
    else if (k === "tdAttributes") {
      if (typeof v !== "object" || v === null || Array.isArray(v))
        throw new Error(`${where}.${k}: expected {mask, value}`);
      const a = v as Record<string, unknown>;
      for (const key of Object.keys(a))
        if (key !== "mask" && key !== "value") throw new Error(`${where}.${k}: unknown field '${key}'`);
      hexOf(`${k}.mask`, 8, a.mask);
      hexOf(`${k}.value`, 8, a.value);
    } else if (k === "allowDebug" || k === "requireCollateral" || k === "requireReportData") {
      if (typeof v !== "boolean") throw new Error(`${where}.${k}: expected a boolean`);
    } else if (k === "allowedTcbStatuses") {
      if (!Array.isArray(v) || !v.every((x) => typeof x === "string"))
        throw new Error(`${where}.${k}: expected an array of strings`);
    } else throw new Error(`${where}: unknown field '${k}'`);
  }
  return o as TdxPolicy;
}
