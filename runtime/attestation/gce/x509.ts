// Certificate-chain checks for Google's two hierarchies (the launch-endorsement signer under GCE-cc-tcb-root,
// the vTPM AK certificate under the EK/AK CA): leaf → intermediates → a root trusted by SHA-256 fingerprint,
// every signature, validity at the verification time, CA bits and key usage. node:crypto checks signatures;
// @peculiar/x509 reads the extensions.
import "reflect-metadata";
import { createHash, X509Certificate } from "node:crypto";
import * as x509 from "@peculiar/x509";

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
/** One-line subject; TCG EK/AK certificates may have an empty subject (identity in subjectAltName). */
const nameOf = (c: X509Certificate) =>
  (c.subject ?? "").replace(/\n/g, ", ") || `(empty subject, serial ${c.serialNumber})`;

/** Certificates from PEM text or DER bytes (a PEM bundle may hold several). */
export function certsFrom(input: Uint8Array | string): Uint8Array[] {
  const text = typeof input === "string" ? input : Buffer.from(input).toString("latin1");
  if (text.includes("-----BEGIN CERTIFICATE-----")) {
    const out: Uint8Array[] = [];
    for (const m of text.matchAll(/-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/g))
      out.push(new Uint8Array(Buffer.from(m[1].replace(/\s+/g, ""), "base64")));
    return out;
  }
  return typeof input === "string" ? [] : [input];
}

export interface ChainResult {
  ok: boolean;
  detail: string;
  /** Subjects from the leaf to the root, when the chain was built. */
  path?: string[];
  leaf?: X509Certificate;
}

const DIGITAL_SIGNATURE = x509.KeyUsageFlags.digitalSignature;
const KEY_CERT_SIGN = x509.KeyUsageFlags.keyCertSign;
/** Extensions a critical flag is acceptable on (everything else critical is refused, as RFC 5280 requires). */
const KNOWN_CRITICAL = new Set(["2.5.29.15", "2.5.29.19", "2.5.29.37", "2.5.29.17", "2.5.29.14", "2.5.29.35"]);

function extensionProblems(der: Uint8Array, role: "leaf" | "ca", usage: number): string[] {
  const c = new x509.X509Certificate(der);
  const out: string[] = [];
  const bc = c.getExtension(x509.BasicConstraintsExtension);
  if (role === "ca" && !bc?.ca) out.push("is not a CA (basicConstraints)");
  if (role === "leaf" && bc?.ca) out.push("is a CA certificate, not an end-entity");
  const ku = c.getExtension(x509.KeyUsagesExtension);
  if (ku && (ku.usages & usage) === 0)
    out.push(`key usage lacks ${usage === KEY_CERT_SIGN ? "keyCertSign" : "digitalSignature"}`);
  for (const e of c.extensions)
    if (e.critical && !KNOWN_CRITICAL.has(e.type)) out.push(`unknown critical extension ${e.type}`);
  return out;
}

/**
 * Builds leaf → … → root using `intermediates` and `roots`; only a root whose SHA-256 (DER) is in
 * `rootFingerprints` ends the chain. Never throws.
 */
export function verifyChain(
  leafDer: Uint8Array,
  intermediates: Uint8Array[],
  roots: Uint8Array[],
  rootFingerprints: readonly string[],
  now: Date,
  leafUsage: "digitalSignature" = "digitalSignature",
): ChainResult {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(leafDer);
  } catch (e) {
    return { ok: false, detail: `certificate does not parse: ${(e as Error).message}` };
  }
  const parse = (d: Uint8Array) => {
    try {
      return { der: d, cert: new X509Certificate(d) };
    } catch {
      return undefined;
    }
  };
  const pool = [...intermediates, ...roots].map(parse).filter((x) => x !== undefined);
  const trusted = new Set(rootFingerprints.map((f) => f.toLowerCase()));
  const inTime = (c: X509Certificate) => c.validFromDate <= now && now <= c.validToDate;
  try {
    const leafProblems = extensionProblems(leafDer, "leaf", leafUsage === "digitalSignature" ? DIGITAL_SIGNATURE : 0);
    if (leafProblems.length) return { ok: false, detail: `${nameOf(leaf)}: ${leafProblems.join("; ")}`, leaf };
  } catch (e) {
    return { ok: false, detail: `certificate extensions do not parse: ${(e as Error).message}`, leaf };
  }
  if (!inTime(leaf))
    return {
      ok: false,
      detail: `certificate not valid at ${now.toISOString()} (${leaf.validFrom} – ${leaf.validTo})`,
      leaf,
    };
  const path = [nameOf(leaf)];
  let cur = leaf;
  for (let depth = 0; depth < 5; depth++) {
    const issuer = pool.find(
      (p) => p.cert.subject === cur.issuer && cur.checkIssued(p.cert) && cur.verify(p.cert.publicKey),
    );
    if (!issuer)
      return {
        ok: false,
        detail: `no trusted issuer verifies "${(cur.issuer ?? "").replace(/\n/g, ", ")}" (signature or name mismatch)`,
        path,
        leaf,
      };
    const name = nameOf(issuer.cert);
    const problems = extensionProblems(issuer.der, "ca", KEY_CERT_SIGN);
    if (problems.length) return { ok: false, detail: `${name}: ${problems.join("; ")}`, path, leaf };
    if (!inTime(issuer.cert)) return { ok: false, detail: `${name} not valid at ${now.toISOString()}`, path, leaf };
    path.push(name);
    if (trusted.has(sha256(issuer.der))) return { ok: true, detail: `chains to ${name}`, path, leaf };
    if (issuer.cert.subject === issuer.cert.issuer)
      return {
        ok: false,
        detail: `ends at a self-signed certificate that is not a trusted root: ${name} (SHA-256 ${sha256(issuer.der)})`,
        path,
        leaf,
      };
    cur = issuer.cert;
  }
  return { ok: false, detail: "certificate chain too long", path, leaf };
}

export { sha256 as certFingerprint };
