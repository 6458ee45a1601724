// Where the certificates of an SEV-SNP verification come from (go-sev-guest's "fill in the attestation"
// step): the evidence (explicit VEK, extended-report certificate table, supplied CA certificates, bundles),
// the trust configuration (CA lists, an operator directory, simulated anchors) and AMD KDS. A source never
// grants trust: verify.ts checks the chain to a pinned ARK and the VEK ↔ report binding whatever the origin.
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import type { SnpTrustConfig } from "../policy.js";
import { CERT_GUID, parseCertTable, type SnpProduct, type SnpReport, type TcbVersion } from "./abi.js";
import { asCaCert, parseCert, parseVek, splitCertificates, type CaCert, type VekCert } from "./certs.js";
import { KdsClient, KdsUnavailableError, type KdsOptions } from "./kds.js";

/** The evidence part of a verification input (see SnpVerifyInput). */
export interface SnpCertificateInput {
  vek?: Uint8Array;
  caChain?: Uint8Array[];
  certTable?: Uint8Array;
}

/** Every certificate found before anything is fetched, and why some could not be used. */
export interface CertificatePool {
  /** The VCEK/VLEK bytes, when the evidence carries one. */
  vekBytes?: Uint8Array;
  /** Where vekBytes came from, for messages. */
  vekOrigin: string;
  /** CA certificates carried by the evidence itself (an unpinned ARK among them is refused). */
  evidenceCas: CaCert[];
  /** Every CA certificate available: evidence, configuration and later KDS. */
  cas: CaCert[];
  /** Unreadable sources, reported when the chain turns out incomplete. */
  problems: string[];
}

// ---- operator directory ---------------------------------------------------------------------------

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

// ---- KDS --------------------------------------------------------------------------------------------

const kdsClients = new WeakMap<KdsOptions, KdsClient>();
/** The KDS client of a trust configuration (one per options object, so its memory cache is shared). */
export function kdsOf(trust: SnpTrustConfig): KdsClient | undefined {
  const k = trust.kds;
  if (!k) return undefined;
  if (k instanceof KdsClient) return k;
  let c = kdsClients.get(k);
  if (!c) kdsClients.set(k, (c = new KdsClient(k)));
  return c;
}

// ---- parsing certificate blobs ----------------------------------------------------------------------

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

// ---- the lookup steps -----------------------------------------------------------------------------

/**
 * Collects what the evidence and the trust configuration offer: the VEK (explicit, from the certificate
 * table, from a bundle or among the CA certificates) and every CA certificate. Throws (EvidenceFormatError
 * or Error) only when the certificate table itself does not parse.
 */
export function gatherCertificates(
  input: SnpCertificateInput,
  report: SnpReport,
  trust: SnpTrustConfig,
): CertificatePool {
  const pool: CertificatePool = {
    vekBytes: input.vek,
    vekOrigin: "supplied VEK",
    evidenceCas: [],
    cas: [],
    problems: [],
  };
  if (input.certTable) {
    const entries = parseCertTable(input.certTable);
    const wanted = report.signingKey === "vlek" ? CERT_GUID.vlek : CERT_GUID.vcek;
    const vekEntry = entries.find((e) => e.guid === wanted);
    if (!pool.vekBytes && vekEntry) {
      pool.vekBytes = vekEntry.data;
      pool.vekOrigin = `certificate table (${report.signingKey.toUpperCase()} GUID)`;
    }
    caCertsFrom(
      entries.filter((e) => e.guid === CERT_GUID.ask || e.guid === CERT_GUID.ark).map((e) => e.data),
      pool.evidenceCas,
      pool.problems,
      "certificate table",
    );
  }
  caCertsFrom(input.caChain ?? [], pool.evidenceCas, pool.problems, "supplied CA certificates");
  // A VEK file may be a whole chain (e.g. Azure's VCEK+ASK+ARK PEM): its CA certificates join the pool.
  if (pool.vekBytes) {
    const bundle = bundleParts(pool.vekBytes);
    if (bundle) {
      pool.vekBytes = bundle.vek;
      caCertsFrom(bundle.rest, pool.evidenceCas, pool.problems, "VEK bundle");
    }
  }
  // No VEK given separately: a VCEK/VLEK may sit among the supplied CA certificates.
  if (!pool.vekBytes) {
    for (const blob of input.caChain ?? []) {
      const bundle = bundleParts(blob);
      if (bundle) {
        pool.vekBytes = bundle.vek;
        pool.vekOrigin = "supplied certificates";
        break;
      }
    }
  }
  pool.cas.push(...pool.evidenceCas);
  addConfiguredCas(pool, trust);
  return pool;
}

function addConfiguredCas(pool: CertificatePool, trust: SnpTrustConfig): void {
  const add = (x: { cas: CaCert[]; problems: string[] }) => {
    pool.cas.push(...x.cas);
    pool.problems.push(...x.problems);
  };
  if (trust.caCerts) add(configuredCasOf(trust.caCerts, trust.caCerts, "configured CA certificates"));
  if (trust.certDir) {
    try {
      const contents = readCertDir(trust.certDir);
      add(configuredCasOf(contents, contents.certs, `certificate directory ${trust.certDir}`));
    } catch (e) {
      pool.problems.push(
        `certificate directory ${trust.certDir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
  }
  for (const a of trust.simulated ?? []) add(configuredCasOf(a, a.caCerts, "simulated anchor"));
}

/** The endorsement key found so far, or why there is none (a parse error names its origin). */
export interface VekLookup {
  vek?: VekCert;
  origin: string;
  error?: string;
}

/** Parses the VEK the evidence carries, if any. */
export function suppliedVek(pool: CertificatePool): VekLookup {
  if (!pool.vekBytes) return { origin: pool.vekOrigin };
  try {
    return { vek: parseVek(pool.vekBytes), origin: pool.vekOrigin };
  } catch (e) {
    return { origin: pool.vekOrigin, error: `${pool.vekOrigin}: ${(e as Error).message}` };
  }
}

/** Fetches the VCEK from KDS (by CHIP_ID and REPORTED_TCB) when the evidence carried none; never VLEKs. */
export async function fetchMissingVek(
  found: VekLookup,
  report: SnpReport,
  product: SnpProduct,
  reportedTcb: TcbVersion,
  kds: KdsClient | undefined,
): Promise<VekLookup> {
  if (found.vek || found.error) return found;
  if (report.signingKey === "vlek")
    return { ...found, error: "no VLEK supplied (VLEKs travel with the evidence; KDS does not serve them publicly)" };
  if (!kds) return { ...found, error: "no VCEK supplied and no KDS configured" };
  try {
    return {
      vek: parseVek(await kds.vcek(product, report.chipId, reportedTcb)),
      origin: "AMD KDS (by CHIP_ID and REPORTED_TCB)",
    };
  } catch (e) {
    return {
      ...found,
      error: e instanceof KdsUnavailableError ? e.message : `KDS VCEK: ${(e as Error).message}`,
    };
  }
}

/** Adds KDS's ASK/ASVK + ARK chain to the pool (problems are recorded, never thrown). */
export async function fetchChain(
  pool: CertificatePool,
  kds: KdsClient,
  product: SnpProduct,
  kind: "vcek" | "vlek",
): Promise<void> {
  try {
    caCertsFrom([await kds.certChain(product, kind)], pool.cas, pool.problems, "AMD KDS cert_chain");
  } catch (e) {
    pool.problems.push((e as Error).message);
  }
}
