// Cryptographic verification of a parsed TDX quote, following go-tdx-guest verifyQuote:
//   PCK chain → pinned Intel SGX Root CA, QE report signed by the PCK key, QE REPORTDATA binds the
//   attestation key (SHA-256(key ‖ QE auth data) ‖ 0^32), quote signed by the attestation key.
// Every step runs and yields a Check, so a rejected quote lists all of its faults.
import { createHash, createPublicKey, verify as cryptoVerify, type KeyObject, type X509Certificate } from "node:crypto";
import type { Check } from "../types.js";
import { INTEL_QE_VENDOR_ID, type TdxQuote } from "./abi.js";
import { EvidenceFormatError } from "../types.js";
import { chainCert, walkChain, type ChainCert } from "../x509.js";
import { commonName, parsePckExtension, pemCertificates, type PckExtension } from "./pck.js";

/**
 * SHA-256 of the DER of the Intel SGX Root CA (CN=Intel SGX Root CA, serial 22650CD6…, 2018-05-21..2049-12-31).
 * The certificate itself arrives inside every quote; only its fingerprint is pinned here.
 */
export const INTEL_SGX_ROOT_CA_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3";

/**
 * MRSIGNER of Intel's TD Quoting Enclave (the QE identity's mrsigner; ISVPRODID 2). Checked even without
 * collateral: a PCK-signed report from an enclave Intel did not sign must not vouch for attestation keys.
 */
export const INTEL_TD_QE_MRSIGNER = "dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5";
export const TD_QE_ISVPRODID = 2;

export interface TdxTrustOptions {
  /** Verification time (certificate validity, collateral freshness). Default: now. */
  now?: Date;
  /**
   * SHA-256 fingerprints (hex) of simulated roots to accept in addition to Intel's. Evidence chaining
   * to one of them verifies, but the verdict says simulated. Never set this in production.
   */
  simulatedRoots?: string[];
}

export interface PckChain {
  leaf: X509Certificate;
  intermediate: X509Certificate;
  root: X509Certificate;
  leafDer: Uint8Array;
  extension?: PckExtension;
  /** "platform" or "processor", from the intermediate's CN (selects the PCK CRL). */
  caType: "platform" | "processor";
}

export interface QuoteVerification {
  checks: Check[];
  ok: boolean;
  simulated: boolean;
  chain?: PckChain;
}

const PCK_LEAF_CN = "Intel SGX PCK Certificate";
const PCK_CA_CN: Record<string, "platform" | "processor"> = {
  "Intel SGX PCK Platform CA": "platform",
  "Intel SGX PCK Processor CA": "processor",
};
const ROOT_CN = "Intel SGX Root CA";

/** Verifies an ECDSA P-256 / SHA-256 signature given as r‖s (64 bytes). Never throws. */
export function verifyP256(data: Uint8Array, key: KeyObject, rs: Uint8Array): boolean {
  try {
    return cryptoVerify("sha256", data, { key, dsaEncoding: "ieee-p1363" }, rs);
  } catch {
    return false;
  }
}

/** A P-256 public key from its raw X‖Y coordinates; throws for a point not on the curve. */
export function p256KeyFromXY(xy: Uint8Array): KeyObject {
  if (xy.length !== 64) throw new Error(`expected 64 bytes, got ${xy.length}`);
  return createPublicKey({
    key: {
      kty: "EC",
      crv: "P-256",
      x: Buffer.from(xy.subarray(0, 32)).toString("base64url"),
      y: Buffer.from(xy.subarray(32)).toString("base64url"),
    },
    format: "jwk",
  });
}

/** The certificate's key, or undefined when its SubjectPublicKeyInfo does not decode (node throws). */
export function publicKeyOf(cert: X509Certificate): KeyObject | undefined {
  try {
    return cert.publicKey;
  } catch {
    return undefined;
  }
}

function isP256(cert: X509Certificate): boolean {
  const k = publicKeyOf(cert);
  return k !== undefined && k.asymmetricKeyType === "ec" && k.asymmetricKeyDetails?.namedCurve === "prime256v1";
}

/** Checks the three-certificate PCK chain. Returns the chain when it is structurally usable. */
export function verifyPckChain(
  pem: string,
  opts: TdxTrustOptions,
  checks: Check[],
): { chain?: PckChain; simulated: boolean } {
  const now = opts.now ?? new Date();
  const simulatedRoots = new Set((opts.simulatedRoots ?? []).map((f) => f.toLowerCase().replace(/[^0-9a-f]/g, "")));
  let ders: Uint8Array[];
  let chain: ChainCert[];
  try {
    ders = pemCertificates(pem);
    chain = ders.map((d, i) => {
      try {
        return chainCert(d);
      } catch (e) {
        const field = `pck_cert_chain[${i}]`;
        throw new EvidenceFormatError(`${field}: not an X.509 certificate (${(e as Error).message})`, field);
      }
    });
  } catch (e) {
    checks.push({
      id: "tdx.pck-chain",
      ok: false,
      detail: `PCK certificate chain unreadable: ${(e as Error).message}`,
    });
    return { simulated: false };
  }
  if (chain.length !== 3) {
    checks.push({
      id: "tdx.pck-chain",
      ok: false,
      detail: `PCK certificate chain has ${chain.length} certificates, expected 3 (PCK, PCK CA, root)`,
    });
    return { simulated: false };
  }
  const certs = chain.map((c) => c.node);
  const [leaf, intermediate, root] = certs;
  const fp = chain[2].sha256;
  const simulated = simulatedRoots.has(fp);
  // Signatures, issuer names, CA bits, keyCertSign, path lengths and the pinned root: the shared walker.
  const walk = walkChain(chain, { anchors: [INTEL_SGX_ROOT_CA_SHA256, ...simulatedRoots] }, now);
  const roles = ["PCK certificate", "PCK CA", "root"];
  const faults: string[] = [];
  if (walk.faults.some((f) => f.kind === "anchor"))
    faults.push(`root ${fp} is not the pinned Intel SGX Root CA (${INTEL_SGX_ROOT_CA_SHA256})`);
  if (commonName(root.subject) !== ROOT_CN) faults.push(`root CN '${commonName(root.subject)}' is not '${ROOT_CN}'`);
  const caType = PCK_CA_CN[commonName(intermediate.subject)];
  if (!caType)
    faults.push(
      `intermediate CN '${commonName(intermediate.subject)}' is neither PCK Platform CA nor PCK Processor CA`,
    );
  if (commonName(leaf.subject) !== PCK_LEAF_CN)
    faults.push(`leaf CN '${commonName(leaf.subject)}' is not '${PCK_LEAF_CN}'`);
  if (!certs.every(isP256)) faults.push("every certificate of the chain must carry an ECDSA P-256 key");
  for (const f of walk.faults)
    if (f.kind !== "anchor" && f.kind !== "validity") faults.push(`${roles[f.index]} ${f.detail}`);
  checks.push({
    id: "tdx.pck-chain",
    ok: faults.length === 0,
    detail:
      faults.length === 0
        ? `PCK chain verifies to the ${simulated ? "SIMULATED root " + fp : "pinned Intel SGX Root CA"}`
        : faults.join("; "),
  });
  const expired = walk.faults
    .filter((f) => f.kind === "validity")
    .map((f) => certs[f.index])
    .map((c) => `'${commonName(c.subject)}' (${c.validFrom} .. ${c.validTo})`);
  checks.push({
    id: "tdx.pck-validity",
    ok: expired.length === 0,
    detail:
      expired.length === 0
        ? `all certificates valid at ${now.toISOString()}`
        : `not valid at ${now.toISOString()}: ${expired.join(", ")}`,
  });
  let extension: PckExtension | undefined;
  try {
    extension = parsePckExtension(ders[0]);
    checks.push({
      id: "tdx.pck-extension",
      ok: true,
      detail: `FMSPC ${extension.fmspc}, PCEID ${extension.pceId}, PCESVN ${extension.pceSvn}`,
    });
  } catch (e) {
    checks.push({ id: "tdx.pck-extension", ok: false, detail: (e as Error).message });
  }
  return { chain: { leaf, intermediate, root, leafDer: ders[0], extension, caType: caType ?? "platform" }, simulated };
}

/** Runs every cryptographic check of a quote. */
export function verifyQuote(quote: TdxQuote, opts: TdxTrustOptions = {}): QuoteVerification {
  const checks: Check[] = [];
  const vendor = Buffer.from(quote.header.qeVendorId).toString("hex");
  checks.push({
    id: "tdx.header",
    ok: vendor === INTEL_QE_VENDOR_ID,
    detail:
      vendor === INTEL_QE_VENDOR_ID
        ? `quote v${quote.header.version}, TD report ${quote.bodyType === 3 ? "1.5" : "1.0"}, ECDSA P-256, Intel QE`
        : `QE vendor id ${vendor} is not Intel's (${INTEL_QE_VENDOR_ID})`,
  });

  const { chain, simulated } = verifyPckChain(quote.pckChainPem, opts, checks);

  // QE report signed by the PCK key.
  const pckKey = chain && publicKeyOf(chain.leaf);
  const qeSigOk = pckKey !== undefined && verifyP256(quote.qeReport.raw, pckKey, quote.qeReportSignature);
  checks.push({
    id: "tdx.qe-report-signature",
    ok: qeSigOk,
    detail:
      pckKey === undefined
        ? "no usable PCK certificate to check the QE report signature"
        : qeSigOk
          ? "QE report signed by the PCK key"
          : "QE report signature does not verify with the PCK key",
  });

  // The enclave that vouches for the attestation key is Intel's TD QE, not in debug mode.
  const qe = quote.qeReport;
  const qeSigner = Buffer.from(qe.mrSigner).toString("hex");
  const qeFaults: string[] = [];
  if (qeSigner !== INTEL_TD_QE_MRSIGNER) qeFaults.push(`QE MRSIGNER ${qeSigner} is not Intel's TD QE signer`);
  if (qe.isvProdId !== TD_QE_ISVPRODID) qeFaults.push(`QE ISVPRODID ${qe.isvProdId} is not the TD QE (2)`);
  if (qe.attributes[0] & 0x02) qeFaults.push("QE runs in debug mode (ATTRIBUTES.DEBUG)");
  checks.push({
    id: "tdx.qe-identity",
    ok: qeFaults.length === 0,
    detail: qeFaults.length ? qeFaults.join("; ") : `Intel TD QE, ISVSVN ${qe.isvSvn}`,
  });

  // QE REPORTDATA = SHA-256(attestation key ‖ QE auth data) ‖ 32 zero bytes.
  const want = Buffer.concat([
    createHash("sha256").update(quote.attestationKey).update(quote.qeAuthData).digest(),
    Buffer.alloc(32),
  ]);
  const bindOk = Buffer.from(quote.qeReport.reportData).equals(want);
  checks.push({
    id: "tdx.qe-binding",
    ok: bindOk,
    detail: bindOk
      ? "QE report binds the attestation key and QE auth data"
      : "QE REPORTDATA is not SHA-256(attestation key ‖ QE auth data) ‖ 0^32",
  });

  // Quote signed by the attestation key.
  let quoteSigOk = false;
  let quoteDetail: string;
  try {
    const key = p256KeyFromXY(quote.attestationKey);
    quoteSigOk = verifyP256(quote.signedBytes, key, quote.signature);
    quoteDetail = quoteSigOk
      ? "quote header and TD report signed by the attestation key"
      : "quote signature does not verify with the attestation key";
  } catch {
    quoteDetail = "attestation key is not a valid P-256 point";
  }
  checks.push({ id: "tdx.quote-signature", ok: quoteSigOk, detail: quoteDetail });

  return { checks, ok: checks.every((c) => c.ok), simulated, chain };
}
