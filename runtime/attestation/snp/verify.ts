// Cryptographic verification of an SEV-SNP report, in go-sev-guest's named steps: parse → look up the
// certificates (sources.ts: evidence, configuration, KDS) → product → endorsement key (VCEK/VLEK) → chain to a
// pinned ARK (validity, CRL) → report signature → TCB and chip binding. Policy lives in validate.ts. Never
// throws for bad evidence: every problem is a failed check.
import { verify as cryptoVerify } from "node:crypto";
import type { Check } from "../types.js";
import { EvidenceFormatError } from "../types.js";
import type { SimulatedSnpAnchor, SnpTrustConfig } from "../policy.js";
import {
  SIGNED_LENGTH,
  decodeTcb,
  formatTcb,
  hwIdOf,
  parseReport,
  productFromCpuid,
  tcbComponents,
  type SnpProduct,
  type SnpReport,
  type TcbVersion,
} from "./abi.js";
import { PINNED_ARK_SHA256, checkCrl, issuedBy, vekTcb, type CaCert, type ParsedCert, type VekCert } from "./certs.js";
import { walkChain, type ChainWalk } from "../x509.js";
import type { KdsClient } from "./kds.js";
import {
  fetchChain,
  fetchMissingVek,
  gatherCertificates,
  kdsOf,
  readCertDir,
  suppliedVek,
  type CertificatePool,
  type VekLookup,
} from "./sources.js";

export { readCertDir } from "./sources.js";

export interface SnpVerifyInput {
  /** The 0x4A0-byte ATTESTATION_REPORT. */
  report: Uint8Array;
  /** VCEK or VLEK, DER or PEM. */
  vek?: Uint8Array;
  /** ASK/ASVK/ARK certificates, DER or PEM (bundles allowed), any order. */
  caChain?: Uint8Array[];
  /** Extended-report certificate table (SNP_GET_EXT_REPORT certs / configfs-tsm auxblob). */
  certTable?: Uint8Array;
  /** Needed only for v2 reports whose product cannot be read from the VEK. */
  product?: SnpProduct;
}

export interface SnpVerifyOptions {
  trust: SnpTrustConfig;
  now?: Date;
}

export interface SnpVerification {
  ok: boolean;
  simulated: boolean;
  checks: Check[];
  report?: SnpReport;
  product?: SnpProduct;
  reportedTcb?: TcbVersion;
  vek?: VekCert;
  intermediate?: CaCert;
  ark?: CaCert;
}

/** Check ids in the order they appear in every SNP verdict. */
export const SNP_CHECK_IDS = [
  "snp.report",
  "snp.product",
  "snp.vek",
  "snp.chain.ark",
  "snp.chain.intermediate",
  "snp.chain.vek",
  "snp.chain.validity",
  "snp.chain.crl",
  "snp.signature",
  "snp.tcb",
  "snp.chip-id",
] as const;

// ---- the verifier ---------------------------------------------------------------------------------

/** Thrown by a step that cannot go on; verifySnp turns it into "not evaluated" for the checks not reached. */
class Stopped {
  constructor(readonly reason: string) {}
}

class Checks {
  readonly list: Check[] = [];
  add(id: string, ok: boolean, detail: string): boolean {
    this.list.push({ id, ok, detail });
    return ok;
  }
  /** Records a failed check and stops the verification (`reason` explains the checks not evaluated). */
  stop(id: string, detail: string, reason: string): never {
    this.add(id, false, detail);
    throw new Stopped(reason);
  }
  /** Marks every not-yet-listed SNP check as failed because an earlier step stopped verification. */
  skipRest(reason: string): void {
    for (const id of SNP_CHECK_IDS)
      if (!this.list.some((c) => c.id === id)) this.add(id, false, `not evaluated: ${reason}`);
  }
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

function eqBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a).equals(Buffer.from(b));
}

function reportSignature(report: SnpReport): Buffer {
  const sig = Buffer.allocUnsafe(96);
  sig.set(report.signatureR, 0);
  sig.set(report.signatureS, 48);
  return sig;
}

/** ECDSA P-384/SHA-384 over report[0, 0x2A0), signature as IEEE-P1363 r ‖ s (node:crypto: the faster path, see bench/). */
export function reportSignatureValid(report: SnpReport, vek: VekCert): boolean {
  try {
    return cryptoVerify(
      "sha384",
      report.raw.subarray(0, SIGNED_LENGTH),
      { key: vek.publicKey, dsaEncoding: "ieee-p1363" },
      reportSignature(report),
    );
  } catch {
    return false;
  }
}

/**
 * The same check on libuv's thread pool: a P-384 verify is the largest CPU cost of an attestation, and off
 * the event loop a busy server keeps serving other requests meanwhile. Never rejects; false when invalid.
 */
export function reportSignatureValidAsync(report: SnpReport, vek: VekCert): Promise<boolean> {
  return new Promise((resolve) => {
    try {
      cryptoVerify(
        "sha384",
        report.raw.subarray(0, SIGNED_LENGTH),
        { key: vek.publicKey, dsaEncoding: "ieee-p1363" },
        reportSignature(report),
        (err, ok) => resolve(!err && ok),
      );
    } catch {
      resolve(false);
    }
  });
}

/**
 * Verifies an SEV-SNP report in named steps, as go-sev-guest does: parse → look up the certificates (evidence,
 * configuration, KDS) → product → endorsement key → chain to a pinned ARK → revocation → report signature →
 * TCB and chip binding. A step that cannot go on stops the run; every check it did not reach is listed as
 * failed ("not evaluated"), so a verdict always names all SNP_CHECK_IDS.
 */
export async function verifySnp(input: SnpVerifyInput, opts: SnpVerifyOptions): Promise<SnpVerification> {
  const c = new Checks();
  const result: SnpVerification = { ok: false, simulated: false, checks: c.list };
  try {
    await runSteps(input, opts, c, result);
  } catch (e) {
    if (!(e instanceof Stopped)) throw e;
    c.skipRest(e.reason);
  }
  result.ok = c.list.length > 0 && c.list.every((x) => x.ok);
  return result;
}

async function runSteps(input: SnpVerifyInput, opts: SnpVerifyOptions, c: Checks, result: SnpVerification) {
  const trust = opts.trust;
  const now = opts.now ?? new Date();
  const kds = kdsOf(trust);

  const report = (result.report = parseStep(input.report, c));
  const pool = lookupStep(input, report, trust, c);
  const supplied = suppliedVek(pool);
  const product = (result.product = productStep(report, input.product, supplied, c));
  const reportedTcb = (result.reportedTcb = decodeTcb(report.reportedTcb, product));
  const vek = (result.vek = vekStep(report, await fetchMissingVek(supplied, report, product, reportedTcb, kds), c));

  if ((!findArk(pool, product, pinnedArks(trust, product)) || !haveIntermediate(pool, vek, product)) && kds)
    await fetchChain(pool, kds, product, vek.kind);
  const root = rootStep(pool, product, trust, c);
  result.ark = root.ark;
  result.simulated = root.simulated;
  verifyRootStep(root, now, c);
  const inter = (result.intermediate = intermediateStep(pool, vek, root.ark, product, c));
  // One walk of VEK ← ASK/ASVK ← ARK (../x509.ts), reported as the per-certificate checks below.
  const walk = walkChain([vek, inter, root.ark], { anchors: [root.ark.sha256] }, now);
  intermediateLinkStep(walk, inter, root.ark, c);
  chainStep(walk, vek, inter, c);
  validityStep(walk, [vek, inter, root.ark], vek, now, c);
  await crlCheck(c, trust, kds, product, vek.kind, root.ark, inter, now);

  await signatureStep(report, vek, c);
  tcbStep(report, vek, product, reportedTcb, c);
  chipStep(report, vek, product, c);
}

// ---- parse ----------------------------------------------------------------------------------------

function parseStep(bytes: Uint8Array, c: Checks): SnpReport {
  let report: SnpReport;
  try {
    report = parseReport(bytes);
  } catch (e) {
    const why = e instanceof EvidenceFormatError ? e.message : `unreadable report: ${(e as Error).message}`;
    return c.stop("snp.report", why, "the report does not parse");
  }
  if (report.signingKey === "none")
    return c.stop(
      "snp.report",
      `version ${report.version} report is unsigned (SIGNING_KEY=none)`,
      "the report is unsigned",
    );
  return report;
}

// ---- look up certificates, product, endorsement key -----------------------------------------------

function lookupStep(input: SnpVerifyInput, report: SnpReport, trust: SnpTrustConfig, c: Checks): CertificatePool {
  let pool: CertificatePool;
  try {
    pool = gatherCertificates(input, report, trust);
  } catch (e) {
    return c.stop(
      "snp.report",
      `version ${report.version} report; ${(e as Error).message}`,
      "the certificate table does not parse",
    );
  }
  c.add(
    "snp.report",
    true,
    `version ${report.version} report, signed by the ${report.signingKey.toUpperCase()}, strict format checks passed`,
  );
  return pool;
}

/** The product: CPUID (v3+), else the caller, else the VEK's productName; all that name it must agree. */
function productStep(report: SnpReport, given: SnpProduct | undefined, supplied: VekLookup, c: Checks): SnpProduct {
  const vek = supplied.vek;
  let product: SnpProduct | undefined;
  let productHow: string;
  // A v3+ report whose CPUID bytes are all zero (firmware that did not fill them) is treated like v2.
  const cpuidKnown =
    report.cpuid !== undefined && (report.cpuid.family | report.cpuid.model | report.cpuid.stepping) !== 0;
  if (report.cpuid && cpuidKnown) {
    product = productFromCpuid(report.cpuid.family, report.cpuid.model);
    productHow = `CPUID family 0x${report.cpuid.family.toString(16)} model 0x${report.cpuid.model.toString(16)}`;
    if (!product)
      return c.stop(
        "snp.product",
        `${productHow} is not a supported SEV-SNP product (Milan, Genoa, Turin)`,
        "unknown product",
      );
  } else if (given) {
    product = given;
    productHow = `given by the caller (v${report.version} report without CPUID fields)`;
  } else if (vek?.product) {
    product = vek.product;
    productHow = `VEK productName '${vek.productName}' (v${report.version} report without CPUID fields)`;
  } else {
    return c.stop(
      "snp.product",
      `v${report.version} report without CPUID fields and no VEK names the product: pass the product (milan|genoa|turin)${supplied.error ? `; ${supplied.error}` : ""}`,
      "unknown product",
    );
  }
  if (given && given !== product)
    return c.stop("snp.product", `caller says ${given} but ${productHow} says ${product}`, "product mismatch");
  if (vek?.product && vek.product !== product)
    return c.stop(
      "snp.product",
      `${productHow} says ${product} but the VEK is for '${vek.productName}'`,
      "product mismatch",
    );
  c.add("snp.product", true, `${product}, from ${productHow}`);
  return product;
}

/** The endorsement key must exist and be the kind the report says signed it. */
function vekStep(report: SnpReport, found: VekLookup, c: Checks): VekCert {
  const vek = found.vek;
  if (!vek) return c.stop("snp.vek", found.error ?? "no endorsement key", "no usable endorsement key");
  if (vek.kind !== report.signingKey)
    return c.stop(
      "snp.vek",
      `the report says it is signed by the ${report.signingKey.toUpperCase()} but the supplied key is a ${vek.kind.toUpperCase()}`,
      "wrong kind of endorsement key",
    );
  c.add(
    "snp.vek",
    true,
    `${vek.kind.toUpperCase()} from ${found.origin}: productName '${vek.productName}', ${vek.cspId ? `cspID '${vek.cspId}'` : `hwID ${hex(vek.hwId!).slice(0, 16)}…`}`,
  );
  return vek;
}

// ---- verify the chain to a pinned ARK -------------------------------------------------------------

/** Pinned ARK fingerprints for a product: AMD's, plus configured simulated roots (true = simulated). */
function pinnedArks(trust: SnpTrustConfig, product: SnpProduct): Map<string, boolean> {
  const pinned = new Map<string, boolean>([[PINNED_ARK_SHA256[product], false]]);
  const sims: SimulatedSnpAnchor[] = (trust.simulated ?? []).filter(
    (a) => a.simulated === true && a.product === product,
  );
  for (const a of sims) pinned.set(a.arkSha256.toLowerCase(), true);
  return pinned;
}

const intermediateRole = (vek: VekCert) => (vek.kind === "vlek" ? "asvk" : "ask");

function findArk(pool: CertificatePool, product: SnpProduct, pinned: Map<string, boolean>): CaCert | undefined {
  return pool.cas.find((x) => x.role === "ark" && x.product === product && pinned.has(x.sha256));
}

function haveIntermediate(pool: CertificatePool, vek: VekCert, product: SnpProduct): boolean {
  const role = intermediateRole(vek);
  return pool.cas.some((x) => x.role === role && x.product === product && issuedBy(vek, x));
}

interface Root {
  ark: CaCert;
  simulated: boolean;
}

/** The root: an ARK with a pinned fingerprint; an unpinned ARK carried by the evidence is refused. */
function rootStep(pool: CertificatePool, product: SnpProduct, trust: SnpTrustConfig, c: Checks): Root {
  const pinned = pinnedArks(trust, product);
  const foreignArk = pool.evidenceCas.find((x) => x.role === "ark" && x.product === product && !pinned.has(x.sha256));
  if (foreignArk)
    return c.stop(
      "snp.chain.ark",
      `the evidence carries an ARK-${product} (SHA-256 ${foreignArk.sha256}) that is not the pinned root`,
      "untrusted root",
    );
  const ark = findArk(pool, product, pinned);
  if (!ark) {
    const why = pool.problems.length ? ` (${pool.problems.join("; ")})` : "";
    return c.stop(
      "snp.chain.ark",
      `no ARK-${product} with a pinned fingerprint is available from the evidence, the certificate directory or KDS${why}`,
      "no trusted root",
    );
  }
  return { ark, simulated: pinned.get(ark.sha256) === true };
}

/** The faults of certificate `index` of a walk other than validity (reported on its own), as text. */
function linkFaults(walk: ChainWalk, index: number, name: string): { signed: boolean; others: string[] } {
  const mine = walk.faults.filter((f) => f.index === index && f.kind !== "validity");
  return {
    signed: !mine.some((f) => f.kind === "signature"),
    others: mine.filter((f) => f.kind !== "signature").map((f) => `${name} ${f.detail}`),
  };
}

/** The pinned ARK alone: self-signed, a CA that may sign certificates. */
function verifyRootStep({ ark, simulated }: Root, now: Date, c: Checks): void {
  const { signed, others } = linkFaults(walkChain([ark], { anchors: [ark.sha256] }, now), 0, ark.subjectCN);
  if (!signed)
    c.stop("snp.chain.ark", `ARK ${ark.subjectCN} is pinned but its self-signature does not verify`, "broken root");
  if (others.length) c.stop("snp.chain.ark", others.join("; "), "broken root");
  c.add(
    "snp.chain.ark",
    true,
    `${ark.subjectCN} matches the pinned ${simulated ? "SIMULATED " : ""}fingerprint ${ark.sha256}`,
  );
}

/** The ASK (VCEK) or ASVK (VLEK): the one that signed the VEK, else one the ARK signed, else any. */
function intermediateStep(pool: CertificatePool, vek: VekCert, ark: CaCert, product: SnpProduct, c: Checks): CaCert {
  const role = intermediateRole(vek);
  const interName = role === "asvk" ? `SEV-VLEK-${product} (ASVK)` : `SEV-${product} (ASK)`;
  const candidates = pool.cas.filter((x) => x.role === role && x.product === product);
  const inter = candidates.find((x) => issuedBy(vek, x)) ?? candidates.find((x) => issuedBy(x, ark)) ?? candidates[0];
  if (!inter)
    return c.stop(
      "snp.chain.intermediate",
      `no ${interName} is available${pool.problems.length ? ` (${pool.problems.join("; ")})` : ""}`,
      "incomplete chain",
    );
  return inter;
}

function intermediateLinkStep(walk: ChainWalk, inter: CaCert, ark: CaCert, c: Checks): void {
  const { signed, others } = linkFaults(walk, 1, inter.subjectCN);
  const faults = [...(signed ? [] : [`${inter.subjectCN} is not signed by the pinned ${ark.subjectCN}`]), ...others];
  c.add(
    "snp.chain.intermediate",
    faults.length === 0,
    faults.length === 0
      ? `${inter.subjectCN} (serial ${inter.serial}) is signed by ${ark.subjectCN}`
      : faults.join("; "),
  );
}

function chainStep(walk: ChainWalk, vek: VekCert, inter: CaCert, c: Checks): void {
  const kind = vek.kind.toUpperCase();
  const { signed, others } = linkFaults(walk, 0, kind);
  const faults = [
    ...(signed
      ? []
      : [
          `${kind} (issuer '${vek.issuerCN}') is not signed by ${inter.subjectCN}: forged or altered certificate, or wrong chain`,
        ]),
    ...others,
  ];
  c.add(
    "snp.chain.vek",
    faults.length === 0,
    faults.length === 0 ? `${kind} is signed by ${inter.subjectCN}` : faults.join("; "),
  );
}

function validityStep(walk: ChainWalk, chain: ParsedCert[], vek: VekCert, now: Date, c: Checks): void {
  const expired = walk.faults.filter((f) => f.kind === "validity").map((f) => chain[f.index]);
  c.add(
    "snp.chain.validity",
    expired.length === 0,
    expired.length === 0
      ? `all certificates valid at ${now.toISOString()} (${vek.kind.toUpperCase()} until ${vek.notAfter.toISOString()})`
      : expired
          .map(
            (x) =>
              `${x.subjectCN} is valid only ${x.notBefore.toISOString()} .. ${x.notAfter.toISOString()}, not at ${now.toISOString()}`,
          )
          .join("; "),
  );
}

// ---- verify the report signature, then TCB and chip binding ---------------------------------------

async function signatureStep(report: SnpReport, vek: VekCert, c: Checks): Promise<void> {
  const sigOk = await reportSignatureValidAsync(report, vek);
  c.add(
    "snp.signature",
    sigOk,
    sigOk
      ? `ECDSA P-384/SHA-384 signature over bytes 0x000..0x29F verifies with the ${vek.kind.toUpperCase()}`
      : `report signature does not verify with the ${vek.kind.toUpperCase()} (wrong key or altered report)`,
  );
}

/** REPORTED_TCB must be the TCB the VEK was issued for (otherwise the key vouches for another firmware). */
function tcbStep(report: SnpReport, vek: VekCert, product: SnpProduct, reportedTcb: TcbVersion, c: Checks): void {
  const certTcb = vekTcb(vek);
  const diffs = tcbComponents(product).filter((k) => (certTcb[k] ?? 0) !== (reportedTcb[k] ?? 0));
  c.add(
    "snp.tcb",
    diffs.length === 0,
    diffs.length === 0
      ? `REPORTED_TCB (${formatTcb(reportedTcb)}) equals the ${vek.kind.toUpperCase()}'s TCB`
      : `REPORTED_TCB differs from the ${vek.kind.toUpperCase()}'s TCB in ${diffs.map((k) => `${k} (report ${reportedTcb[k]}, cert ${certTcb[k]})`).join(", ")}`,
  );
}

/** A VCEK belongs to one chip: its hwID must be the report's CHIP_ID. A VLEK belongs to the cloud provider. */
function chipStep(report: SnpReport, vek: VekCert, product: SnpProduct, c: Checks): void {
  if (vek.kind === "vlek") {
    c.add("snp.chip-id", true, `VLEK is bound to the cloud provider (${vek.cspId}), not to a chip`);
    return;
  }
  const want = hwIdOf(report.chipId, product);
  const ok = eqBytes(vek.hwId!, want);
  c.add(
    "snp.chip-id",
    ok,
    ok
      ? `VCEK hwID equals CHIP_ID${product === "Turin" ? "[0:8]" : ""}`
      : `VCEK hwID ${hex(vek.hwId!).slice(0, 16)}… belongs to another chip than CHIP_ID ${hex(want).slice(0, 16)}…`,
  );
}

async function crlCheck(
  c: Checks,
  trust: SnpTrustConfig,
  kds: KdsClient | undefined,
  product: SnpProduct,
  role: "vcek" | "vlek",
  ark: CaCert,
  inter: CaCert,
  now: Date,
): Promise<void> {
  const mode = trust.crl ?? "if-available";
  if (mode === "off") {
    c.add("snp.chain.crl", true, "CRL checking is off in the trust configuration");
    return;
  }
  const candidates: Uint8Array[] = [...(trust.crls ?? [])];
  if (trust.certDir) {
    try {
      candidates.push(...readCertDir(trust.certDir).crls);
    } catch {
      // reported by the chain checks already
    }
  }
  let kdsNote = "";
  if (kds) {
    try {
      let crl = await kds.crl(product, role);
      const r = checkCrl(crl, ark, inter, now);
      if (!r.ok && /stale/.test(r.detail) && !kds.offline) crl = await kds.crl(product, role, true);
      candidates.push(crl);
    } catch (e) {
      kdsNote = ` (${(e as Error).message})`;
    }
  }
  // A CRL from another issuer (e.g. another product's ARK) is simply not applicable.
  const results = candidates.map((b) => checkCrl(b, ark, inter, now));
  const applicable = results.filter((r) => r.fault !== "issuer" && r.fault !== "parse");
  const failed = applicable.find((r) => !r.ok);
  if (failed) {
    c.add("snp.chain.crl", false, failed.detail);
  } else if (applicable.length > 0) {
    c.add("snp.chain.crl", true, applicable[0].detail);
  } else if (mode === "require") {
    c.add(
      "snp.chain.crl",
      false,
      `no CRL for ${product} is available and the trust configuration requires one${kdsNote}`,
    );
  } else {
    c.add("snp.chain.crl", true, `no CRL available for ${product}; revocation not checked${kdsNote}`);
  }
}
