// The one X.509 chain walker of the evidence library (SNP VCEK/VLEK, TDX PCK, Google's endorsement and AK
// chains, AWS Nitro documents). A chain is given leaf first, anchor last; every link is checked and every
// fault is returned, so each caller can report them in its own verdict style:
//   - each certificate names the next one as its issuer and is signed by its key (node:crypto, RSA-PSS
//     aware), the anchor by itself unless the profile trusts it as a bare pinned CA;
//   - each certificate is valid at the verification time;
//   - every issuer is a CA (basicConstraints), may sign certificates (keyUsage keyCertSign when keyUsage is
//     present, or always when the profile requires keyUsage) and keeps its pathLenConstraint;
//   - the leaf is an end-entity, and may sign (keyUsage digitalSignature) where the profile asks for it;
//   - no certificate carries a critical extension the walker does not know (RFC 5280 §4.2);
//   - the anchor is pinned: its exact DER, or the SHA-256 of its DER, is on the profile's list.
// checkCrl judges an issuer's CRL for one certificate of the chain (signature, currency, revocation).
// Parsed certificates and verified signatures are memoised by DER digest (bounded, FIFO), so a warm verifier
// redoes no RSA work for a chain it has already checked; the cache key holds both certificates' digests.
import "reflect-metadata"; // @peculiar/x509 needs it loaded first
import { constants, createHash, timingSafeEqual, verify as cryptoVerify, X509Certificate } from "node:crypto";
import * as x509 from "@peculiar/x509";

/** SHA-256 (lowercase hex) of bytes, e.g. of a certificate's DER (its fingerprint). */
export function sha256Hex(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/** A parsed certificate as the walker sees it. */
export interface ChainCert {
  der: Uint8Array;
  /** SHA-256 of the DER. */
  sha256: string;
  node: X509Certificate;
  /** One-line subject; TCG EK/AK certificates may have an empty subject (identity in subjectAltName). */
  name: string;
  selfIssued: boolean;
  ca: boolean;
  /** basicConstraints pathLenConstraint, when present. */
  pathLength?: number;
  /** keyUsage bits (x509.KeyUsageFlags), undefined when the extension is absent. */
  keyUsage?: number;
  /** OIDs of critical extensions the walker does not know. */
  unknownCritical: string[];
}

/** Extensions a critical flag is acceptable on: keyUsage, basicConstraints, extKeyUsage, SAN, SKI, AKI. */
const KNOWN_CRITICAL = new Set(["2.5.29.15", "2.5.29.19", "2.5.29.37", "2.5.29.17", "2.5.29.14", "2.5.29.35"]);
const MAX_CACHE = 2048;
const parsed = new Map<string, ChainCert>();
const signatures = new Map<string, boolean>();

function remember<V>(m: Map<string, V>, k: string, v: V): V {
  if (m.size >= MAX_CACHE) m.delete(m.keys().next().value as string);
  m.set(k, v);
  return v;
}

/** Parses a DER certificate (memoised by digest); throws with the parser's message when it is not X.509. */
export function chainCert(der: Uint8Array): ChainCert {
  const sha256 = sha256Hex(der);
  const hit = parsed.get(sha256);
  if (hit) return hit;
  const node = new X509Certificate(der);
  // @peculiar/x509 decodes lazily: every extension is read here, inside the caller's guard.
  const pc = new x509.X509Certificate(der);
  const bc = pc.getExtension(x509.BasicConstraintsExtension);
  const ku = pc.getExtension(x509.KeyUsagesExtension);
  const cert: ChainCert = {
    der: new Uint8Array(der),
    sha256,
    node,
    name: (node.subject ?? "").replace(/\n/g, ", ") || `(empty subject, serial ${node.serialNumber})`,
    selfIssued: node.subject === node.issuer,
    ca: bc?.ca === true,
    pathLength: bc?.ca ? bc.pathLength : undefined,
    keyUsage: ku?.usages,
    unknownCritical: pc.extensions.filter((e) => e.critical && !KNOWN_CRITICAL.has(e.type)).map((e) => e.type),
  };
  return remember(parsed, sha256, cert);
}

/** True when `issuer` names and signed `cert` (memoised; never throws). */
export function signedBy(cert: ChainCert, issuer: ChainCert): boolean {
  const key = `${cert.sha256}:${issuer.sha256}`;
  const hit = signatures.get(key);
  if (hit !== undefined) return hit;
  let ok: boolean;
  try {
    // Names, then the signature; the issuer's keyUsage is judged by the walk on its own (a clearer fault).
    ok = cert.node.issuer === issuer.node.subject && cert.node.verify(issuer.node.publicKey);
  } catch {
    ok = false;
  }
  return remember(signatures, key, ok);
}

export function validAt(c: ChainCert, at: Date): boolean {
  const t = at.getTime();
  return c.node.validFromDate.getTime() <= t && t <= c.node.validToDate.getTime();
}

export interface ChainProfile {
  /**
   * The pinned anchors: DER bytes (compared byte for byte) or SHA-256 fingerprints of the DER (hex). The
   * chain's last certificate must be one of them.
   */
  anchors: readonly (Uint8Array | string)[];
  /** The leaf must carry keyUsage digitalSignature (it signs evidence, not certificates). */
  leafDigitalSignature?: boolean;
  /** keyUsage must be present wherever it is checked (otherwise an absent keyUsage allows every use). */
  requireKeyUsage?: boolean;
  /** Trust the anchor by its pin alone: do not require it to be self-signed (an operator-pinned CA). */
  anchorNeedNotSelfSign?: boolean;
}

export type ChainFaultKind =
  "signature" | "validity" | "ca" | "key-usage" | "path-length" | "critical-extension" | "anchor";

export interface ChainFault {
  /** Position in the chain: 0 is the leaf, the last index the anchor. */
  index: number;
  kind: ChainFaultKind;
  /** What is wrong, without the certificate's name (callers name certificates in their own terms). */
  detail: string;
}

export interface ChainWalk {
  ok: boolean;
  faults: ChainFault[];
  /** The anchor's entry in `profile.anchors` (undefined when the anchor is not pinned). */
  anchorIndex?: number;
}

const usageNames: [number, string][] = [
  [x509.KeyUsageFlags.digitalSignature, "digitalSignature"],
  [x509.KeyUsageFlags.keyCertSign, "keyCertSign"],
];

function usageFault(c: ChainCert, flag: number, required: boolean | undefined): string | undefined {
  const name = usageNames.find(([f]) => f === flag)![1];
  if (c.keyUsage === undefined) return required ? `has no keyUsage extension (needs ${name})` : undefined;
  return (c.keyUsage & flag) === 0 ? `keyUsage lacks ${name}` : undefined;
}

function anchorIndex(c: ChainCert, anchors: readonly (Uint8Array | string)[]): number | undefined {
  const i = anchors.findIndex((a) =>
    typeof a === "string"
      ? a.toLowerCase() === c.sha256
      : a.length === c.der.length && timingSafeEqual(Buffer.from(a), Buffer.from(c.der)),
  );
  return i < 0 ? undefined : i;
}

/**
 * Walks `chain` (leaf first, anchor last) at time `at` and returns every fault. A chain of one certificate is
 * an anchor alone (checked as an issuer). Never throws.
 */
export function walkChain(chain: readonly ChainCert[], profile: ChainProfile, at: Date): ChainWalk {
  const faults: ChainFault[] = [];
  const add = (index: number, kind: ChainFaultKind, detail: string) => faults.push({ index, kind, detail });
  const last = chain.length - 1;
  if (last < 0) return { ok: false, faults: [{ index: 0, kind: "anchor", detail: "the chain is empty" }] };
  // CA certificates that follow a certificate on the way to the leaf (pathLenConstraint counts these).
  let casBelow = 0;
  chain.forEach((c, i) => {
    const issuer = chain[Math.min(i + 1, last)];
    const isLeaf = i === 0 && last > 0;
    if (i < last || !profile.anchorNeedNotSelfSign)
      if (!signedBy(c, issuer)) add(i, "signature", i === last ? "is not self-signed" : "is not signed by its issuer");
    if (!validAt(c, at))
      add(i, "validity", `is not valid at ${at.toISOString()} (${c.node.validFrom} … ${c.node.validTo})`);
    if (isLeaf) {
      if (c.ca) add(i, "ca", "is a CA certificate, not an end-entity");
      const u = profile.leafDigitalSignature
        ? usageFault(c, x509.KeyUsageFlags.digitalSignature, profile.requireKeyUsage)
        : undefined;
      if (u) add(i, "key-usage", u);
    } else {
      if (!c.ca) add(i, "ca", "is not a CA certificate (basicConstraints)");
      const u = usageFault(c, x509.KeyUsageFlags.keyCertSign, profile.requireKeyUsage);
      if (u) add(i, "key-usage", u);
      if (c.pathLength !== undefined && casBelow > c.pathLength)
        add(i, "path-length", `allows ${c.pathLength} CA certificate(s) below it, the chain has ${casBelow}`);
      if (i > 0 && !c.selfIssued) casBelow++;
    }
    for (const oid of c.unknownCritical) add(i, "critical-extension", `has an unknown critical extension ${oid}`);
  });
  const pin = anchorIndex(chain[last], profile.anchors);
  if (pin === undefined) add(last, "anchor", `is not a pinned root (SHA-256 ${chain[last].sha256})`);
  return { ok: faults.length === 0, faults, anchorIndex: pin };
}

export type PathResult = { ok: true; chain: ChainCert[] } | { ok: false; chain: ChainCert[]; detail: string };

/**
 * Builds leaf → … → anchor from a pool of certificates: at each step the certificate whose key signed the
 * current one; the path ends at the first pinned anchor. Used where the evidence carries an unordered bundle.
 */
export function buildPath(
  leaf: ChainCert,
  pool: readonly ChainCert[],
  anchors: readonly (Uint8Array | string)[],
  maxLength = 6,
): PathResult {
  const chain = [leaf];
  let cur = leaf;
  while (chain.length < maxLength) {
    const issuer = pool.find((p) => signedBy(cur, p));
    if (!issuer)
      return {
        ok: false,
        chain,
        detail: `no trusted issuer verifies "${(cur.node.issuer ?? "").replace(/\n/g, ", ")}" (signature or name mismatch)`,
      };
    chain.push(issuer);
    if (anchorIndex(issuer, anchors) !== undefined) return { ok: true, chain };
    if (issuer.selfIssued)
      return {
        ok: false,
        chain,
        detail: `ends at a self-signed certificate that is not a trusted root: ${issuer.name} (SHA-256 ${issuer.sha256})`,
      };
    cur = issuer;
  }
  return { ok: false, chain, detail: "certificate chain too long" };
}

// ---- CRLs -------------------------------------------------------------------------------------------

export type CrlFaultKind = "parse" | "issuer" | "signature" | "not-yet-valid" | "stale" | "revoked";

export interface CrlCheck {
  ok: boolean;
  faults: { kind: CrlFaultKind; detail: string }[];
  /** Entries on the CRL and its thisUpdate, once it verified. */
  entries?: number;
  thisUpdate?: Date;
  /** Set when the CRL lists `subject`. */
  revokedAt?: Date;
}

interface VerifiedCrl {
  error?: { kind: CrlFaultKind; detail: string };
  thisUpdate?: Date;
  nextUpdate?: Date;
  /** Revoked serial (lowercase hex, no leading zeros) → revocation date. */
  revoked?: Map<string, Date>;
}

const crls = new Map<string, VerifiedCrl>();
const serialKey = (s: string) => s.toLowerCase().replace(/^0+/, "");

/** Parses a DER CRL and verifies that `issuer` issued and signed it (memoised by both digests). */
function verifiedCrl(der: Uint8Array, issuer: ChainCert): VerifiedCrl {
  const key = `${sha256Hex(der)}:${issuer.sha256}`;
  const hit = crls.get(key);
  if (hit) return hit;
  let out: VerifiedCrl;
  try {
    const crl = new x509.X509Crl(der);
    const issuerName = new x509.X509Certificate(issuer.der).subject;
    if (crl.issuer !== issuerName)
      out = { error: { kind: "issuer", detail: `CRL issuer '${crl.issuer}' is not '${issuerName}'` } };
    else {
      const alg = crl.signatureAlgorithm as { name: string; hash?: { name: string }; saltLength?: number };
      const hash = (alg.hash?.name ?? "SHA-384").replace("-", "").toLowerCase();
      const k =
        alg.name === "RSA-PSS"
          ? { key: issuer.node.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: alg.saltLength ?? 48 }
          : issuer.node.publicKey;
      let signed: boolean;
      try {
        // @peculiar/x509 keeps the signed TBSCertList bytes; node:crypto verifies (RSA-PSS and ECDSA DER).
        const tbs = new Uint8Array((crl as unknown as { tbs: ArrayBuffer }).tbs);
        signed = cryptoVerify(hash, tbs, k, new Uint8Array(crl.signature));
      } catch {
        signed = false;
      }
      out = signed
        ? {
            thisUpdate: crl.thisUpdate,
            nextUpdate: crl.nextUpdate,
            revoked: new Map(crl.entries.map((e) => [serialKey(e.serialNumber), e.revocationDate])),
          }
        : { error: { kind: "signature", detail: "CRL signature does not verify with its issuer's key" } };
    }
  } catch (e) {
    // @peculiar/x509 decodes lazily: malformed inner structures surface here, not in the constructor.
    out = { error: { kind: "parse", detail: `CRL does not parse: ${(e as Error)?.message ?? "malformed"}` } };
  }
  return remember(crls, key, out);
}

/**
 * Checks that `issuer`'s CRL is authentic, current at `at` (thisUpdate not in the future, nextUpdate not past;
 * `requireNextUpdate`: a CRL without nextUpdate is refused) and does not list `subject`. Never throws.
 */
export function checkCrl(
  der: Uint8Array,
  issuer: ChainCert,
  subject: ChainCert,
  at: Date,
  opts: { requireNextUpdate?: boolean } = {},
): CrlCheck {
  const crl = verifiedCrl(der, issuer);
  if (crl.error) return { ok: false, faults: [crl.error] };
  const faults: CrlCheck["faults"] = [];
  if (crl.thisUpdate!.getTime() > at.getTime())
    faults.push({ kind: "not-yet-valid", detail: `CRL thisUpdate ${crl.thisUpdate!.toISOString()} is in the future` });
  if (crl.nextUpdate ? crl.nextUpdate.getTime() < at.getTime() : opts.requireNextUpdate)
    faults.push({ kind: "stale", detail: `CRL is stale (nextUpdate ${crl.nextUpdate?.toISOString() ?? "absent"})` });
  const revokedAt = crl.revoked!.get(serialKey(subject.node.serialNumber));
  if (revokedAt) faults.push({ kind: "revoked", detail: `revoked since ${revokedAt.toISOString()}` });
  return { ok: faults.length === 0, faults, entries: crl.revoked!.size, thisUpdate: crl.thisUpdate, revokedAt };
}
