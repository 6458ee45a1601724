// Cryptographic verification of an SEV-SNP report: which product, which endorsement key (VCEK/VLEK), its
// chain to a pinned ARK, validity, CRL, the report signature, and the binding of the key to the report
// (TCB and chip). Policy lives in validate.ts. Never throws for bad evidence: every problem is a failed check.
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { verify as cryptoVerify } from "node:crypto";
import type { Check } from "../types.js";
import { EvidenceFormatError } from "../types.js";
import type { SimulatedSnpAnchor, SnpTrustConfig } from "../policy.js";
import {
  CERT_GUID,
  SIGNED_LENGTH,
  decodeTcb,
  formatTcb,
  hwIdOf,
  parseCertTable,
  parseReport,
  productFromCpuid,
  tcbComponents,
  type SnpProduct,
  type SnpReport,
  type TcbVersion,
} from "./abi.js";
import {
  PINNED_ARK_SHA256,
  asCaCert,
  checkCrl,
  issuedBy,
  parseCert,
  parseVek,
  splitCertificates,
  validAt,
  vekTcb,
  type CaCert,
  type VekCert,
} from "./certs.js";
import { KdsClient, KdsUnavailableError, type KdsOptions } from "./kds.js";

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

// ---- certificate sources --------------------------------------------------------------------------

interface DirContents {
  certs: Uint8Array[];
  crls: Uint8Array[];
}
const dirCache = new Map<string, { mtimeMs: number; checkedAt: number; contents: DirContents }>();
/** How long a directory listing is reused before its mtime is looked at again. */
const DIR_RECHECK_MS = 1000;

/** Reads an operator certificate directory (memoised until the directory changes). */
export function readCertDir(dir: string): DirContents {
  const hit = dirCache.get(dir);
  const t = Date.now();
  if (hit && t - hit.checkedAt < DIR_RECHECK_MS) return hit.contents;
  const mtimeMs = statSync(dir).mtimeMs;
  if (hit && hit.mtimeMs === mtimeMs) {
    hit.checkedAt = t;
    return hit.contents;
  }
  const contents: DirContents = { certs: [], crls: [] };
  for (const name of readdirSync(dir).sort()) {
    const file = path.join(dir, name);
    if (!statSync(file).isFile()) continue;
    const data = new Uint8Array(readFileSync(file));
    if (/\.crl$/i.test(name)) contents.crls.push(data);
    else if (/\.(pem|crt|cer|der)$/i.test(name)) {
      try {
        contents.certs.push(...splitCertificates(data));
      } catch {
        // not a certificate file: ignored, the directory may hold other material
      }
    }
  }
  dirCache.set(dir, { mtimeMs, checkedAt: t, contents });
  return contents;
}

const kdsClients = new WeakMap<KdsOptions, KdsClient>();
function kdsOf(trust: SnpTrustConfig): KdsClient | undefined {
  const k = trust.kds;
  if (!k) return undefined;
  if (k instanceof KdsClient) return k;
  let c = kdsClients.get(k);
  if (!c) kdsClients.set(k, (c = new KdsClient(k)));
  return c;
}

function caCertsFrom(blobs: Uint8Array[], sink: CaCert[], problems: string[], origin: string): void {
  for (const blob of blobs) {
    let ders: Uint8Array[];
    try {
      ders = splitCertificates(blob);
    } catch (e) {
      problems.push(`${origin}: ${(e as Error).message}`);
      continue;
    }
    for (const der of ders) {
      try {
        const ca = asCaCert(parseCert(der));
        if (ca) sink.push(ca);
      } catch (e) {
        problems.push(`${origin}: ${(e as Error).message}`);
      }
    }
  }
}

/**
 * Configured CA sources (certificate lists, simulated anchors) do not change between verifications:
 * their parsed form is kept per list object, so a warm verifier does no certificate work for them.
 */
const configuredCas = new WeakMap<object, { cas: CaCert[]; problems: string[] }>();
function configuredCasOf(key: object, blobs: Uint8Array[], origin: string): { cas: CaCert[]; problems: string[] } {
  let hit = configuredCas.get(key);
  if (!hit) {
    hit = { cas: [], problems: [] };
    caCertsFrom(blobs, hit.cas, hit.problems, origin);
    configuredCas.set(key, hit);
  }
  return hit;
}

/** Splits a certificate blob holding a VCEK/VLEK (possibly with others) into the VEK and the rest. */
function bundleParts(blob: Uint8Array): { vek: Uint8Array; rest: Uint8Array[] } | undefined {
  let ders: Uint8Array[];
  try {
    ders = splitCertificates(blob);
  } catch {
    return undefined;
  }
  if (ders.length === 1 && ders[0] === blob) return undefined; // plain DER: parsed as the VEK later
  const idx = ders.findIndex((d) => {
    try {
      const cn = parseCert(d).subjectCN;
      return cn === "SEV-VCEK" || cn === "SEV-VLEK";
    } catch {
      return false;
    }
  });
  if (idx < 0) return undefined;
  return { vek: ders[idx], rest: ders.filter((_, i) => i !== idx) };
}

// ---- the verifier ---------------------------------------------------------------------------------

class Checks {
  readonly list: Check[] = [];
  add(id: string, ok: boolean, detail: string): boolean {
    this.list.push({ id, ok, detail });
    return ok;
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

export async function verifySnp(input: SnpVerifyInput, opts: SnpVerifyOptions): Promise<SnpVerification> {
  const trust = opts.trust;
  const now = opts.now ?? new Date();
  const c = new Checks();
  const result: SnpVerification = { ok: false, simulated: false, checks: c.list };
  const finish = (reason?: string): SnpVerification => {
    if (reason) c.skipRest(reason);
    result.ok = c.list.length > 0 && c.list.every((x) => x.ok);
    return result;
  };

  // 1. report format
  let report: SnpReport;
  try {
    report = parseReport(input.report);
  } catch (e) {
    c.add(
      "snp.report",
      false,
      e instanceof EvidenceFormatError ? e.message : `unreadable report: ${(e as Error).message}`,
    );
    return finish("the report does not parse");
  }
  result.report = report;
  if (report.signingKey === "none") {
    c.add("snp.report", false, `version ${report.version} report is unsigned (SIGNING_KEY=none)`);
    return finish("the report is unsigned");
  }

  // 2. gather certificates: explicit VEK, certificate table, CA sources
  const problems: string[] = [];
  const cas: CaCert[] = [];
  const evidenceCas: CaCert[] = [];
  let vekBytes: Uint8Array | undefined = input.vek;
  let vekOrigin = "supplied VEK";
  if (input.certTable) {
    try {
      const entries = parseCertTable(input.certTable);
      const wanted = report.signingKey === "vlek" ? CERT_GUID.vlek : CERT_GUID.vcek;
      const vekEntry = entries.find((e) => e.guid === wanted);
      if (!vekBytes && vekEntry) {
        vekBytes = vekEntry.data;
        vekOrigin = `certificate table (${report.signingKey.toUpperCase()} GUID)`;
      }
      caCertsFrom(
        entries.filter((e) => e.guid === CERT_GUID.ask || e.guid === CERT_GUID.ark).map((e) => e.data),
        evidenceCas,
        problems,
        "certificate table",
      );
    } catch (e) {
      c.add("snp.report", false, `version ${report.version} report; ${(e as Error).message}`);
      return finish("the certificate table does not parse");
    }
  }
  caCertsFrom(input.caChain ?? [], evidenceCas, problems, "supplied CA certificates");
  // A VEK file may be a whole chain (e.g. Azure's VCEK+ASK+ARK PEM): its CA certificates join the pool.
  if (vekBytes) {
    const bundle = bundleParts(vekBytes);
    if (bundle) {
      vekBytes = bundle.vek;
      caCertsFrom(bundle.rest, evidenceCas, problems, "VEK bundle");
    }
  }
  // No VEK given separately: a VCEK/VLEK may sit among the supplied CA certificates.
  if (!vekBytes) {
    for (const blob of input.caChain ?? []) {
      const bundle = bundleParts(blob);
      if (bundle) {
        vekBytes = bundle.vek;
        vekOrigin = "supplied certificates";
        break;
      }
    }
  }
  cas.push(...evidenceCas);
  const addConfigured = (x: { cas: CaCert[]; problems: string[] }) => {
    cas.push(...x.cas);
    problems.push(...x.problems);
  };
  if (trust.caCerts) addConfigured(configuredCasOf(trust.caCerts, trust.caCerts, "configured CA certificates"));
  if (trust.certDir) {
    try {
      const contents = readCertDir(trust.certDir);
      addConfigured(configuredCasOf(contents, contents.certs, `certificate directory ${trust.certDir}`));
    } catch (e) {
      problems.push(
        `certificate directory ${trust.certDir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
  }
  for (const a of trust.simulated ?? []) addConfigured(configuredCasOf(a, a.caCerts, "simulated anchor"));
  c.add(
    "snp.report",
    true,
    `version ${report.version} report, signed by the ${report.signingKey.toUpperCase()}, strict format checks passed`,
  );

  let vek: VekCert | undefined;
  let vekError: string | undefined;
  if (vekBytes) {
    try {
      vek = parseVek(vekBytes);
    } catch (e) {
      vekError = `${vekOrigin}: ${(e as Error).message}`;
    }
  }

  // 3. product: CPUID (v3+), else the VEK's productName / issuer, else the caller
  let product: SnpProduct | undefined;
  let productHow: string;
  // A v3+ report whose CPUID bytes are all zero (firmware that did not fill them) is treated like v2.
  const cpuidKnown =
    report.cpuid !== undefined && (report.cpuid.family | report.cpuid.model | report.cpuid.stepping) !== 0;
  if (report.cpuid && cpuidKnown) {
    product = productFromCpuid(report.cpuid.family, report.cpuid.model);
    productHow = `CPUID family 0x${report.cpuid.family.toString(16)} model 0x${report.cpuid.model.toString(16)}`;
    if (!product) {
      c.add("snp.product", false, `${productHow} is not a supported SEV-SNP product (Milan, Genoa, Turin)`);
      return finish("unknown product");
    }
  } else if (input.product) {
    product = input.product;
    productHow = `given by the caller (v${report.version} report without CPUID fields)`;
  } else if (vek?.product) {
    product = vek.product;
    productHow = `VEK productName '${vek.productName}' (v${report.version} report without CPUID fields)`;
  } else {
    c.add(
      "snp.product",
      false,
      `v${report.version} report without CPUID fields and no VEK names the product: pass the product (milan|genoa|turin)${vekError ? `; ${vekError}` : ""}`,
    );
    return finish("unknown product");
  }
  if (input.product && input.product !== product) {
    c.add("snp.product", false, `caller says ${input.product} but ${productHow} says ${product}`);
    return finish("product mismatch");
  }
  if (vek?.product && vek.product !== product) {
    c.add("snp.product", false, `${productHow} says ${product} but the VEK is for '${vek.productName}'`);
    return finish("product mismatch");
  }
  result.product = product;
  const reportedTcb = decodeTcb(report.reportedTcb, product);
  result.reportedTcb = reportedTcb;
  c.add("snp.product", true, `${product}, from ${productHow}`);

  // 4. fetch what is missing from KDS (VCEK by chip + REPORTED_TCB; chain; never VLEKs)
  const kds = kdsOf(trust);
  if (!vek && !vekError) {
    if (report.signingKey === "vlek")
      vekError = "no VLEK supplied (VLEKs travel with the evidence; KDS does not serve them publicly)";
    else if (!kds) vekError = "no VCEK supplied and no KDS configured";
    else {
      try {
        vek = parseVek(await kds.vcek(product, report.chipId, reportedTcb));
        vekOrigin = "AMD KDS (by CHIP_ID and REPORTED_TCB)";
      } catch (e) {
        vekError = e instanceof KdsUnavailableError ? e.message : `KDS VCEK: ${(e as Error).message}`;
      }
    }
  }
  if (!vek) {
    c.add("snp.vek", false, vekError ?? "no endorsement key");
    return finish("no usable endorsement key");
  }
  if (vek.kind !== report.signingKey) {
    c.add(
      "snp.vek",
      false,
      `the report says it is signed by the ${report.signingKey.toUpperCase()} but the supplied key is a ${vek.kind.toUpperCase()}`,
    );
    return finish("wrong kind of endorsement key");
  }
  result.vek = vek;
  c.add(
    "snp.vek",
    true,
    `${vek.kind.toUpperCase()} from ${vekOrigin}: productName '${vek.productName}', ${vek.cspId ? `cspID '${vek.cspId}'` : `hwID ${hex(vek.hwId!).slice(0, 16)}…`}`,
  );

  // 5. chain to a pinned ARK
  const role = vek.kind === "vlek" ? "asvk" : "ask";
  const simAnchors: SimulatedSnpAnchor[] = (trust.simulated ?? []).filter(
    (a) => a.simulated === true && a.product === product,
  );
  const pinned = new Map<string, boolean>([[PINNED_ARK_SHA256[product], false]]);
  for (const a of simAnchors) pinned.set(a.arkSha256.toLowerCase(), true);
  const findArk = () => cas.find((x) => x.role === "ark" && x.product === product && pinned.has(x.sha256));
  const haveIntermediate = () => cas.some((x) => x.role === role && x.product === product && issuedBy(vek, x));
  if ((!findArk() || !haveIntermediate()) && kds) {
    try {
      caCertsFrom([await kds.certChain(product, vek.kind)], cas, problems, "AMD KDS cert_chain");
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  const foreignArk = evidenceCas.find((x) => x.role === "ark" && x.product === product && !pinned.has(x.sha256));
  const ark = findArk();
  if (foreignArk) {
    c.add(
      "snp.chain.ark",
      false,
      `the evidence carries an ARK-${product} (SHA-256 ${foreignArk.sha256}) that is not the pinned root`,
    );
    return finish("untrusted root");
  }
  if (!ark) {
    const why = problems.length ? ` (${problems.join("; ")})` : "";
    c.add(
      "snp.chain.ark",
      false,
      `no ARK-${product} with a pinned fingerprint is available from the evidence, the certificate directory or KDS${why}`,
    );
    return finish("no trusted root");
  }
  result.ark = ark;
  result.simulated = pinned.get(ark.sha256) === true;
  if (!issuedBy(ark, ark)) {
    c.add("snp.chain.ark", false, `ARK ${ark.subjectCN} is pinned but its self-signature does not verify`);
    return finish("broken root");
  }
  c.add(
    "snp.chain.ark",
    true,
    `${ark.subjectCN} matches the pinned ${result.simulated ? "SIMULATED " : ""}fingerprint ${ark.sha256}`,
  );

  const interName = role === "asvk" ? `SEV-VLEK-${product} (ASVK)` : `SEV-${product} (ASK)`;
  const interCandidates = cas.filter((x) => x.role === role && x.product === product);
  const inter =
    interCandidates.find((x) => issuedBy(vek, x)) ??
    interCandidates.find((x) => issuedBy(x, ark)) ??
    interCandidates[0];
  if (!inter) {
    c.add(
      "snp.chain.intermediate",
      false,
      `no ${interName} is available${problems.length ? ` (${problems.join("; ")})` : ""}`,
    );
    return finish("incomplete chain");
  }
  result.intermediate = inter;
  const interOk = issuedBy(inter, ark);
  c.add(
    "snp.chain.intermediate",
    interOk,
    interOk
      ? `${inter.subjectCN} (serial ${inter.serial}) is signed by ${ark.subjectCN}`
      : `${inter.subjectCN} is not signed by the pinned ${ark.subjectCN}`,
  );
  const vekOk = issuedBy(vek, inter);
  c.add(
    "snp.chain.vek",
    vekOk,
    vekOk
      ? `${vek.kind.toUpperCase()} is signed by ${inter.subjectCN}`
      : `${vek.kind.toUpperCase()} (issuer '${vek.issuerCN}') is not signed by ${inter.subjectCN}: forged or altered certificate, or wrong chain`,
  );

  const expired = [vek, inter, ark].filter((x) => !validAt(x, now));
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

  // 6. CRL: ARK-signed, lists revoked ASK/ASVK serials
  await crlCheck(c, trust, kds, product, vek.kind, ark, inter, now);

  // 7. the report signature and the key ↔ report binding
  const sigOk = await reportSignatureValidAsync(report, vek);
  c.add(
    "snp.signature",
    sigOk,
    sigOk
      ? `ECDSA P-384/SHA-384 signature over bytes 0x000..0x29F verifies with the ${vek.kind.toUpperCase()}`
      : `report signature does not verify with the ${vek.kind.toUpperCase()} (wrong key or altered report)`,
  );

  const certTcb = vekTcb(vek);
  const diffs = tcbComponents(product).filter((k) => (certTcb[k] ?? 0) !== (reportedTcb[k] ?? 0));
  c.add(
    "snp.tcb",
    diffs.length === 0,
    diffs.length === 0
      ? `REPORTED_TCB (${formatTcb(reportedTcb)}) equals the ${vek.kind.toUpperCase()}'s TCB`
      : `REPORTED_TCB differs from the ${vek.kind.toUpperCase()}'s TCB in ${diffs.map((k) => `${k} (report ${reportedTcb[k]}, cert ${certTcb[k]})`).join(", ")}`,
  );

  if (vek.kind === "vlek") {
    c.add("snp.chip-id", true, `VLEK is bound to the cloud provider (${vek.cspId}), not to a chip`);
  } else {
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
  return finish();
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
  const applicable = results.filter((r) => !/issuer .* is not the ARK|does not parse/.test(r.detail));
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
