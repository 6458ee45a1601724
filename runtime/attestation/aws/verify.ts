// Verifies a NitroTPM attestation document, every check listed: the COSE_Sign1 ES384 signature by the leaf
// certificate, the certificate chain from the pinned AWS Nitro root (cabundle[0] must BE that root, byte for
// byte) down to the leaf, every certificate valid at the document's time, and the document fresh at `now`.
// Only after this is any field of the document believed (validate.ts).
import { createHash, timingSafeEqual, verify as cryptoVerify, X509Certificate } from "node:crypto";
import { chainCert, walkChain, type ChainCert } from "../x509.js";
import type { Check } from "../types.js";
import { parseNitroDocument, type NitroDocument } from "./abi.js";
import { encodeCbor } from "./cbor.js";
import { AWS_NITRO_ROOT_G1_PEM } from "./roots.js";

export interface NitroVerifyOptions {
  /** The verifier's clock (freshness). Default: now. */
  now?: Date;
  /** How old the document may be at `now` (ms). Default 10 minutes; AWS's leaf certificates live ~3 hours. */
  maxAgeMs?: number;
  /** Roots (DER) trusted besides AWS's — tests only; every check that relies on one says so. */
  testRoots?: Uint8Array[];
}

export interface NitroVerification {
  checks: Check[];
  /** Present once the document parsed (its fields are trustworthy only if every check passed). */
  doc?: NitroDocument;
  /** The chain ends at a test root, not AWS's. */
  testRoot: boolean;
}

const AWS_ROOT_DER = new X509Certificate(AWS_NITRO_ROOT_G1_PEM).raw;
const CLOCK_SKEW_MS = 5 * 60 * 1000;
const eq = (a: Uint8Array, b: Uint8Array) => a.length === b.length && timingSafeEqual(a, b);
const fp = (b: Uint8Array) => createHash("sha256").update(b).digest("hex").slice(0, 16);

/**
 * The chain leaf ← cabundle[n-1] ← … ← cabundle[0], walked by ../x509.ts with AWS's profile: cabundle[0] is a
 * pinned root byte for byte, every link signed and valid at the document's time, every issuer a CA with
 * keyUsage keyCertSign, the leaf an end-entity with keyUsage digitalSignature (AWS's certificates all carry
 * keyUsage, so its absence is a fault), path lengths kept, and the leaf key ECDSA P-384.
 */
function chainProblem(doc: NitroDocument, roots: Uint8Array[], at: Date): string | undefined {
  const root = doc.cabundle[0];
  if (!roots.some((r) => eq(r, root))) return `cabundle[0] (sha256 ${fp(root)}…) is not a pinned root`;
  let chain: ChainCert[];
  try {
    chain = [doc.certificate, ...[...doc.cabundle].reverse()].map(chainCert);
  } catch (e) {
    return `a certificate does not parse: ${(e as Error).message}`;
  }
  const walk = walkChain(chain, { anchors: roots, leafDigitalSignature: true, requireKeyUsage: true }, at);
  // Named as AWS numbers them: index i of the walk (leaf first) is cabundle[n - i] of n.
  const what = (i: number) =>
    i === 0 ? "the leaf" : i === chain.length - 1 ? "the root" : `cabundle[${chain.length - 1 - i}]`;
  const faults = [...walk.faults].sort((a, b) => b.index - a.index).map((f) => `${what(f.index)} ${f.detail}`);
  if (faults.length) return faults.join("; ");
  if (chain[0].node.publicKey.asymmetricKeyDetails?.namedCurve !== "secp384r1")
    return "the leaf key is not ECDSA P-384";
  return undefined;
}

/** Parses and verifies a NitroTPM attestation document. Never throws for bad evidence. */
export function verifyNitroDocument(b: Uint8Array, opts: NitroVerifyOptions = {}): NitroVerification {
  const checks: Check[] = [];
  let doc: NitroDocument;
  try {
    doc = parseNitroDocument(b);
  } catch (e) {
    checks.push({ id: "aws.document-format", ok: false, detail: (e as Error).message });
    return { checks, testRoot: false };
  }
  checks.push({
    id: "aws.document-format",
    ok: true,
    detail: `NitroTPM attestation document of ${doc.moduleId}, ${doc.pcrs.size} SHA-384 PCRs`,
  });

  // COSE_Sign1: ES384 over Sig_structure ["Signature1", protected, external_aad = h'', payload].
  let sigOk: boolean;
  try {
    const tbs = encodeCbor(["Signature1", doc.protectedHeader, new Uint8Array(0), doc.payload]);
    const leaf = new X509Certificate(doc.certificate);
    sigOk = cryptoVerify("sha384", tbs, { key: leaf.publicKey, dsaEncoding: "ieee-p1363" }, doc.signature);
  } catch {
    sigOk = false;
  }
  checks.push({
    id: "aws.document-signature",
    ok: sigOk,
    detail: sigOk
      ? "COSE_Sign1 ES384 signature by the document's leaf certificate"
      : "the COSE_Sign1 signature does not verify with the document's leaf certificate",
  });

  const testRoots = opts.testRoots ?? [];
  const at = new Date(doc.timestamp);
  const problem = chainProblem(doc, [AWS_ROOT_DER, ...testRoots], at);
  const testRoot = !problem && !eq(doc.cabundle[0], AWS_ROOT_DER);
  checks.push({
    id: "aws.document-chain",
    ok: !problem,
    detail: problem
      ? `certificate chain: ${problem}`
      : testRoot
        ? `chains to a TEST root (sha256 ${fp(doc.cabundle[0])}…), not AWS's: trusted only because trust.aws.testRoots lists it`
        : `chains to the pinned AWS Nitro root G1 through ${doc.cabundle.length - 1} intermediate(s), all valid at ${at.toISOString()}`,
  });

  const now = opts.now ?? new Date();
  const maxAge = opts.maxAgeMs ?? 10 * 60 * 1000;
  const age = now.getTime() - doc.timestamp;
  const fresh = age <= maxAge && age >= -CLOCK_SKEW_MS;
  checks.push({
    id: "aws.document-time",
    ok: fresh,
    detail: fresh
      ? `document issued ${Math.round(age / 1000)} s before verification`
      : age < 0
        ? `document timestamp ${at.toISOString()} is in the future of ${now.toISOString()}`
        : `document issued ${Math.round(age / 1000)} s ago, more than the ${Math.round(maxAge / 1000)} s allowed`,
  });
  return { checks, doc, testRoot };
}
