// Intel PCS collateral for a TDX quote: TCB info, QE identity, PCK and root CRLs. Each piece is
// signature-checked against the same root the PCK chain ended in, checked for freshness and matched
// to the quote; TCB info and QE identity then give TCB statuses (go-tdx-guest getMatchingTcbLevel).
import type { X509Certificate } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import "reflect-metadata"; // @peculiar/x509 needs it loaded first
import * as px509 from "@peculiar/x509";
import type { Check } from "../types.js";
import type { TdxQuote } from "./abi.js";
import { commonName, pemCertificates, type PckExtension } from "./pck.js";
import { publicKeyOf, verifyP256, type PckChain } from "./verify.js";
import { hex } from "./validate.js";
import { pemDecode } from "../pem.js";
import { chainCert, checkCrl, walkChain, type ChainCert } from "../x509.js";

export interface TdxCollateral {
  /** Raw TCB info response bodies `{"tcbInfo":…,"signature":…}` (several FMSPCs allowed; the matching one is used). */
  tcbInfos: string[];
  /** Raw QE identity response bodies `{"enclaveIdentity":…,"signature":…}`. */
  qeIdentities: string[];
  /** Issuer certificates (DER) from the PCS response headers: the TCB signing cert and CA certificates. */
  certificates: Uint8Array[];
  /** DER CRLs (PCK CRL of the Platform/Processor CA, root CRL). */
  crls: Uint8Array[];
}

export interface CollateralResult {
  checks: Check[];
  /** Statuses that the policy judges: platform, TDX module (TDX 1.5), QE. Undefined without TCB info. */
  statuses?: string[];
  info: Record<string, unknown>;
}

export function emptyCollateral(): TdxCollateral {
  return { tcbInfos: [], qeIdentities: [], certificates: [], crls: [] };
}

/** Reads a directory of PCS responses, classifying each file by content, not by name. */
export function loadCollateralDir(dir: string, into: TdxCollateral = emptyCollateral()): TdxCollateral {
  for (const name of readdirSync(dir).sort()) {
    const file = path.join(dir, name);
    if (!statSync(file).isFile()) continue;
    addCollateralFile(readFileSync(file), into);
  }
  return into;
}

export function addCollateralFile(bytes: Uint8Array, into: TdxCollateral): void {
  const text = Buffer.from(bytes).toString("utf8");
  if (text.trimStart().startsWith("{")) {
    try {
      const o = JSON.parse(text) as Record<string, unknown>;
      if (o.tcbInfo) into.tcbInfos.push(text);
      else if (o.enclaveIdentity) into.qeIdentities.push(text);
    } catch {
      /* not JSON: ignored */
    }
    return;
  }
  if (text.includes("-----BEGIN CERTIFICATE-----")) {
    into.certificates.push(...pemCertificates(text, "collateral certificate"));
    return;
  }
  if (text.includes("-----BEGIN X509 CRL-----")) {
    into.crls.push(...pemDecode(text, "X509 CRL", "collateral CRL"));
    return;
  }
  if (bytes[0] === 0x30) {
    try {
      new px509.X509Crl(bytes);
      into.crls.push(bytes);
    } catch {
      /* not a CRL (the PCS also serves other files): ignored */
    }
  }
}

/** The exact bytes of a top-level member's value, as signed by Intel (never re-serialised). */
export function rawJsonMember(text: string, key: string): string | undefined {
  let depth = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (c === '"') {
      const start = i;
      i++;
      while (i < n && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
      const str = text.slice(start + 1, i);
      i++;
      if (depth === 1 && str === key) {
        let j = i;
        while (j < n && /\s/.test(text[j])) j++;
        if (text[j] !== ":") continue;
        j++;
        while (j < n && /\s/.test(text[j])) j++;
        return text.slice(j, endOfValue(text, j));
      }
      continue;
    }
    if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
    i++;
  }
  return undefined;
}

function endOfValue(text: string, start: number): number {
  let depth = 0;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      i++;
      while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
      if (depth === 0) return i + 1;
    } else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") {
      depth--;
      if (depth === 0) return i + 1;
    } else if (depth === 0 && (c === "," || c === "}")) return i;
  }
  return text.length;
}

/** A top-level object member of a JSON text, or undefined when the text is not such JSON. */
function member(text: string, key: string): Record<string, unknown> | undefined {
  try {
    const v = (JSON.parse(text) as Record<string, unknown>)?.[key];
    return typeof v === "object" && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

interface SignedJson {
  body: Record<string, unknown>;
  ok: boolean;
  detail: string;
}

/** Checks `{"<member>":{…},"signature":"<hex r‖s>"}` with the signer key over the raw member bytes. */
function verifySignedJson(text: string, member: string, signer: X509Certificate | undefined): SignedJson {
  let outer: Record<string, unknown>;
  try {
    outer = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return { body: {}, ok: false, detail: `${member}: not JSON` };
  }
  const inner = outer && typeof outer === "object" ? outer[member] : undefined;
  const body = (inner && typeof inner === "object" ? inner : {}) as Record<string, unknown>;
  const raw = rawJsonMember(text, member);
  const sig = typeof outer?.signature === "string" ? Buffer.from(outer.signature, "hex") : Buffer.alloc(0);
  if (!signer)
    return {
      body,
      ok: false,
      detail: `${member}: no valid Intel SGX TCB Signing certificate chaining to the root was supplied`,
    };
  if (!raw || sig.length !== 64) return { body, ok: false, detail: `${member}: missing body or 64-byte signature` };
  const ok = verifyP256(Buffer.from(raw, "utf8"), signer.publicKey, sig);
  return {
    body,
    ok,
    detail: ok ? `${member} signed by the Intel SGX TCB Signing key` : `${member} signature does not verify`,
  };
}

function freshness(body: Record<string, unknown>, now: Date): string | undefined {
  const issue = Date.parse(String(body.issueDate));
  const next = Date.parse(String(body.nextUpdate));
  if (!Number.isFinite(issue) || !Number.isFinite(next)) return "issueDate/nextUpdate missing";
  if (now.getTime() < issue) return `issued ${body.issueDate}, after the verification time ${now.toISOString()}`;
  if (now.getTime() > next) return `stale: nextUpdate ${body.nextUpdate} is before ${now.toISOString()}`;
  return undefined;
}

const maskEq = (value: Uint8Array, maskHex: unknown, wantHex: unknown): boolean => {
  const mask = Buffer.from(String(maskHex ?? ""), "hex");
  const want = Buffer.from(String(wantHex ?? ""), "hex");
  if (mask.length !== value.length || want.length !== value.length) return false;
  return value.every((b, i) => (b & mask[i]) === want[i]);
};

interface TcbLevel {
  tcb: { sgxtcbcomponents?: { svn: number }[]; pcesvn?: number; tdxtcbcomponents?: { svn: number }[]; isvsvn?: number };
  tcbStatus: string;
  advisoryIDs?: string[];
}

const arr = <T>(x: unknown): T[] => (Array.isArray(x) ? (x as T[]) : []);
/** An SVN from collateral; anything that is not a number can never be met. */
const svnOf = (c: { svn?: unknown } | null | undefined): number => (typeof c?.svn === "number" ? c.svn : Infinity);
const isvOf = (l: TcbLevel | null | undefined): number =>
  typeof l?.tcb?.isvsvn === "number" ? l.tcb.isvsvn : Infinity;

/** The first TCB level the platform meets (go-tdx-guest getMatchingTcbLevel). */
export function matchPlatformLevel(
  levels: TcbLevel[],
  sgxComps: number[],
  pceSvn: number,
  teeTcbSvn: Uint8Array,
): TcbLevel | undefined {
  const skipModuleBytes = teeTcbSvn[1] > 0;
  return arr<TcbLevel>(levels).find((l) => {
    const sgx = arr<{ svn: number }>(l?.tcb?.sgxtcbcomponents);
    const tdx = arr<{ svn: number }>(l?.tcb?.tdxtcbcomponents);
    if (sgx.length !== 16 || tdx.length !== 16) return false;
    if (!sgx.every((c, i) => sgxComps[i] >= svnOf(c))) return false;
    if (pceSvn < (typeof l.tcb.pcesvn === "number" ? l.tcb.pcesvn : Infinity)) return false;
    return tdx.every((c, i) => (skipModuleBytes && i < 2) || teeTcbSvn[i] >= svnOf(c));
  });
}

/**
 * Verifies the collateral and derives the TCB statuses of a quote whose PCK chain already verified, in named
 * steps: TCB Signing certificate → TCB info (platform and TDX module levels) → QE identity → CRLs.
 */
export async function evaluateCollateral(
  quote: TdxQuote,
  chain: PckChain,
  col: TdxCollateral,
  now: Date,
): Promise<CollateralResult> {
  const r: CollateralResult = { checks: [], info: {} };
  const signer = tcbSignerStep(chain, col, now, r);
  if (col.tcbInfos.length && chain.extension) tcbInfoStep(quote, chain.extension, col.tcbInfos, signer, now, r);
  if (col.qeIdentities.length) qeIdentityStep(quote, col.qeIdentities, signer, now, r);
  for (const der of col.crls) crlStep(der, chain, now, r);
  return r;
}

/** The TCB signing certificate: supplied with the collateral, signed by the same root as the PCK chain. */
function tcbSignerStep(
  chain: PckChain,
  col: TdxCollateral,
  now: Date,
  r: CollateralResult,
): X509Certificate | undefined {
  const root = chainCert(chain.root.raw);
  const rootFp = root.sha256;
  let signer: X509Certificate | undefined;
  const signerFaults: string[] = [];
  for (const der of col.certificates) {
    let c: ChainCert;
    try {
      c = chainCert(der);
    } catch {
      continue;
    }
    if (commonName(c.node.subject) !== "Intel SGX TCB Signing") continue;
    // Signing certificate ← the PCK chain's root (already pinned): the shared walker, the root as anchor.
    const walk = walkChain([c, root], { anchors: [rootFp] }, now);
    const own = walk.faults.filter((f) => f.index === 0);
    if (own.some((f) => f.kind === "signature") || publicKeyOf(c.node)?.asymmetricKeyType !== "ec") {
      signerFaults.push("a TCB Signing certificate is not signed by the root");
      continue;
    }
    const invalid = own.filter((f) => f.kind !== "validity").map((f) => `TCB Signing certificate ${f.detail}`);
    if (own.some((f) => f.kind === "validity"))
      invalid.unshift(
        `TCB Signing certificate not valid at ${now.toISOString()} (${c.node.validFrom} .. ${c.node.validTo})`,
      );
    if (invalid.length) {
      signerFaults.push(...invalid);
      continue;
    }
    signer = c.node;
    break;
  }
  if (col.tcbInfos.length || col.qeIdentities.length) {
    r.checks.push({
      id: "tdx.collateral.signer",
      ok: signer !== undefined,
      detail: signer
        ? `TCB Signing certificate chains to root ${rootFp.slice(0, 16)}…`
        : signerFaults.join("; ") || "no Intel SGX TCB Signing certificate supplied",
    });
  }
  return signer;
}

/** TCB info for this platform's FMSPC: signature, freshness, TDX module match, then the platform's TCB level. */
function tcbInfoStep(
  quote: TdxQuote,
  ext: PckExtension,
  tcbInfos: string[],
  signer: X509Certificate | undefined,
  now: Date,
  r: CollateralResult,
): void {
  const text = tcbInfos.find((t) => String(member(t, "tcbInfo")?.fmspc).toLowerCase() === ext.fmspc);
  if (!text) {
    r.checks.push({
      id: "tdx.collateral.tcb-info",
      ok: false,
      detail: `no TCB info for FMSPC ${ext.fmspc} among ${tcbInfos.length} supplied`,
    });
    return;
  }
  const s = verifySignedJson(text, "tcbInfo", signer);
  const t = s.body;
  const faults: string[] = s.ok ? [] : [s.detail];
  if (t.id !== "TDX") faults.push(`tcbInfo.id '${String(t.id)}' is not TDX`);
  if (String(t.pceId).toLowerCase() !== ext.pceId)
    faults.push(`tcbInfo.pceId ${String(t.pceId)} ≠ PCK PCEID ${ext.pceId}`);
  const stale = freshness(t, now);
  if (stale) faults.push(`tcbInfo ${stale}`);
  const mod = (t.tdxModule ?? {}) as Record<string, unknown>;
  if (String(mod.mrsigner ?? "").toLowerCase() !== hex(quote.body.mrSignerSeam))
    faults.push("tdxModule.mrsigner ≠ MRSIGNERSEAM");
  if (!maskEq(quote.body.seamAttributes, mod.attributesMask, mod.attributes))
    faults.push("SEAMATTRIBUTES do not match tdxModule.attributes under its mask");
  r.checks.push({
    id: "tdx.collateral.tcb-info",
    ok: faults.length === 0,
    detail: faults.length ? faults.join("; ") : `TCB info for FMSPC ${ext.fmspc} verifies and is fresh`,
  });

  const levels = arr<TcbLevel>(t.tcbLevels);
  const level = matchPlatformLevel(levels, ext.sgxTcbComponents, ext.pceSvn, quote.body.teeTcbSvn);
  r.statuses = [level ? String(level.tcbStatus) : "Unsupported"];
  r.info.platformTcbStatus = level ? level.tcbStatus : "Unsupported (no TCB level matched)";
  if (level?.advisoryIDs) r.info.advisoryIDs = level.advisoryIDs;
  // TDX 1.5 modules have their own identity and TCB levels, keyed by the module's major version.
  const major = quote.body.teeTcbSvn[1];
  if (major > 0) {
    const moduleStatus = moduleIdentityStep(quote, t, major, r);
    r.statuses.push(moduleStatus);
    r.info.moduleTcbStatus = moduleStatus;
  }
}

/** A TDX 1.5 module's identity (TDX_<major>) in the TCB info and its TCB status. */
function moduleIdentityStep(quote: TdxQuote, t: Record<string, unknown>, major: number, r: CollateralResult): string {
  const id = `TDX_${major.toString(16).toUpperCase().padStart(2, "0")}`;
  const ident = arr<Record<string, unknown> | null>(t.tdxModuleIdentities).find((m) => m?.id === id);
  if (!ident) {
    r.checks.push({
      id: "tdx.collateral.module-identity",
      ok: false,
      detail: `TCB info has no identity ${id} for this TDX module`,
    });
    return "Unsupported";
  }
  const okSigner = String(ident.mrsigner ?? "").toLowerCase() === hex(quote.body.mrSignerSeam);
  const okAttr = maskEq(quote.body.seamAttributes, ident.attributesMask, ident.attributes);
  r.checks.push({
    id: "tdx.collateral.module-identity",
    ok: okSigner && okAttr,
    detail:
      okSigner && okAttr
        ? `TDX module identity ${id} matches`
        : `TDX module identity ${id}: mrsigner or attributes differ`,
  });
  const ml = arr<TcbLevel>(ident.tcbLevels).find((l) => isvOf(l) <= quote.body.teeTcbSvn[0]);
  return ml ? String(ml.tcbStatus) : "Unsupported";
}

/** The TD Quoting Enclave's identity: signature, freshness, the QE report's fields, then its TCB status. */
function qeIdentityStep(
  quote: TdxQuote,
  qeIdentities: string[],
  signer: X509Certificate | undefined,
  now: Date,
  r: CollateralResult,
): void {
  const text = qeIdentities.find((q) => member(q, "enclaveIdentity")?.id === "TD_QE") ?? qeIdentities[0];
  const s = verifySignedJson(text, "enclaveIdentity", signer);
  const e = s.body;
  const qe = quote.qeReport;
  const faults: string[] = s.ok ? [] : [s.detail];
  if (e.id !== "TD_QE") faults.push(`enclaveIdentity.id '${String(e.id)}' is not TD_QE`);
  const stale = freshness(e, now);
  if (stale) faults.push(`QE identity ${stale}`);
  if (String(e.mrsigner ?? "").toLowerCase() !== hex(qe.mrSigner))
    faults.push(`QE MRSIGNER ${hex(qe.mrSigner)} ≠ identity ${String(e.mrsigner)}`);
  if (e.isvprodid !== qe.isvProdId) faults.push(`QE ISVPRODID ${qe.isvProdId} ≠ identity ${String(e.isvprodid)}`);
  const misc = Buffer.alloc(4);
  misc.writeUInt32BE(qe.miscSelect >>> 0);
  // MISCSELECT is little-endian in the report; the identity writes it as a big-endian hex number.
  if (!maskEq(misc, e.miscselectMask, e.miscselect)) faults.push("QE MISCSELECT does not match under the mask");
  if (!maskEq(qe.attributes, e.attributesMask, e.attributes)) faults.push("QE ATTRIBUTES do not match under the mask");
  r.checks.push({
    id: "tdx.collateral.qe-identity",
    ok: faults.length === 0,
    detail: faults.length ? faults.join("; ") : `QE identity verifies and matches (ISVSVN ${qe.isvSvn})`,
  });
  const level = arr<TcbLevel>(e.tcbLevels).find((l) => isvOf(l) <= qe.isvSvn);
  const qeStatus = level ? String(level.tcbStatus) : "Unsupported";
  r.info.qeTcbStatus = qeStatus;
  (r.statuses ??= []).push(qeStatus);
}

/** One CRL: the PCK CRL (issuer = PCK CA) or the root CRL; any other CA's CRL is not applicable. */
function crlStep(der: Uint8Array, chain: PckChain, now: Date, r: CollateralResult): void {
  let crl: px509.X509Crl;
  try {
    crl = new px509.X509Crl(der);
  } catch {
    r.checks.push({ id: "tdx.collateral.crl", ok: false, detail: "a supplied CRL does not parse" });
    return;
  }
  const cn = commonName(crl.issuer.replace(/, /g, "\n"));
  const isRoot = cn === commonName(chain.root.subject);
  const isPckCa = cn === commonName(chain.intermediate.subject);
  if (!isRoot && !isPckCa) return; // e.g. the other CA's CRL
  const issuer = isRoot ? chain.root : chain.intermediate;
  const subject = isRoot ? chain.intermediate : chain.leaf;
  const id = isRoot ? "tdx.collateral.root-crl" : "tdx.collateral.pck-crl";
  // Signature, currency (nextUpdate required) and revocation: the shared CRL check of ../x509.ts.
  const c = checkCrl(der, chainCert(issuer.raw), chainCert(subject.raw), now, { requireNextUpdate: true });
  const serial = normSerial(subject.serialNumber);
  const faults = c.faults.map((f) =>
    f.kind === "signature"
      ? `CRL is not signed by ${cn}`
      : f.kind === "revoked"
        ? `certificate '${commonName(subject.subject)}' serial ${serial} is REVOKED`
        : f.detail,
  );
  r.checks.push({
    id,
    ok: faults.length === 0,
    detail: faults.length
      ? faults.join("; ")
      : `${cn} CRL verifies, is fresh and does not list '${commonName(subject.subject)}'`,
  });
  if (c.revokedAt) (r.statuses ??= []).push("Revoked");
}

const normSerial = (s: string): string => s.toLowerCase().replace(/^0+/, "");

/** Intel PCS v4 endpoints (go-tdx-guest pcs.go). */
export const PCS_BASE = "https://api.trustedservices.intel.com";
const ROOT_CRL_URL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

/**
 * Fetches collateral for a platform from the Intel PCS: TCB info (by FMSPC), the TD QE identity, the PCK
 * CRL of the given CA and the root CRL, with the issuer chains from the response headers. Everything
 * fetched is verified afterwards by evaluateCollateral, exactly like collateral read from disk.
 */
export async function fetchPcsCollateral(
  fmspc: string,
  caType: "platform" | "processor",
  opts: { fetch?: typeof fetch; timeoutMs?: number; maxAgeMs?: number } = {},
): Promise<TdxCollateral> {
  // Collateral changes monthly: serve a recent fetch from memory instead of hitting the PCS per quote.
  // A cached copy is only a copy; evaluateCollateral still checks its signatures and freshness every time.
  const key = `${fmspc}/${caType}`;
  const hit = pcsCache.get(key);
  if (hit && Date.now() - hit.at < (opts.maxAgeMs ?? 3_600_000) && !opts.fetch) return hit.col;
  const col = await fetchPcsUncached(fmspc, caType, opts);
  if (!opts.fetch) pcsCache.set(key, { at: Date.now(), col });
  return col;
}

const pcsCache = new Map<string, { at: number; col: TdxCollateral }>();

async function fetchPcsUncached(
  fmspc: string,
  caType: "platform" | "processor",
  opts: { fetch?: typeof fetch; timeoutMs?: number },
): Promise<TdxCollateral> {
  const get = opts.fetch ?? fetch;
  const col = emptyCollateral();
  const one = async (url: string, chainHeader: string | undefined, binary: boolean) => {
    const res = await get(url, { signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000) });
    if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
    const chain = chainHeader ? res.headers.get(chainHeader) : null;
    if (chain) col.certificates.push(...pemCertificates(decodeURIComponent(chain), chainHeader));
    const body = binary ? new Uint8Array(await res.arrayBuffer()) : Buffer.from(await res.text(), "utf8");
    addCollateralFile(body, col);
  };
  await Promise.all([
    one(`${PCS_BASE}/tdx/certification/v4/tcb?fmspc=${encodeURIComponent(fmspc)}`, "TCB-Info-Issuer-Chain", false),
    one(`${PCS_BASE}/tdx/certification/v4/qe/identity`, "SGX-Enclave-Identity-Issuer-Chain", false),
    one(`${PCS_BASE}/sgx/certification/v4/pckcrl?ca=${caType}&encoding=der`, "SGX-PCK-CRL-Issuer-Chain", true),
    one(ROOT_CRL_URL, undefined, true),
  ]);
  return col;
}
