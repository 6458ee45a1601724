// Certificate-chain checks for Google's two hierarchies (the launch-endorsement signer under GCE-cc-tcb-root,
// the vTPM AK certificate under the EK/AK CA): leaf → intermediates → a root trusted by SHA-256 fingerprint,
// every signature, validity at the verification time, CA bits and key usage. Path building and the checks of
// each link are the shared walker's (../x509.ts); this module only states Google's profile.
import type { X509Certificate } from "node:crypto";
import { pemDecode } from "../pem.js";
import { buildPath, chainCert, sha256Hex, walkChain, type ChainCert } from "../x509.js";

/** Certificates from PEM text or DER bytes (a PEM bundle may hold several). */
export function certsFrom(input: Uint8Array | string): Uint8Array[] {
  const text = typeof input === "string" ? input : Buffer.from(input).toString("latin1");
  if (text.includes("-----BEGIN CERTIFICATE-----")) {
    try {
      return pemDecode(text);
    } catch {
      return []; // a block that is not base64: no certificate to offer (the chain then fails, naming what is missing)
    }
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

/**
 * Builds leaf → … → root using `intermediates` and `roots`; only a root whose SHA-256 (DER) is in
 * `rootFingerprints` ends the chain, which is then walked (runtime/attestation/x509.ts): signatures, validity
 * at `now`, CA bits and keyUsage (digitalSignature on the leaf, keyCertSign on issuers), path lengths. The
 * pinned root is trusted by its fingerprint and need not be self-signed. Never throws.
 */
export function verifyChain(
  leafDer: Uint8Array,
  intermediates: Uint8Array[],
  roots: Uint8Array[],
  rootFingerprints: readonly string[],
  now: Date,
): ChainResult {
  let leaf: ChainCert;
  try {
    leaf = chainCert(leafDer);
  } catch (e) {
    return { ok: false, detail: `certificate does not parse: ${(e as Error).message}` };
  }
  const pool = [...intermediates, ...roots].flatMap((d) => {
    try {
      return [chainCert(d)];
    } catch {
      return [];
    }
  });
  const anchors = rootFingerprints.map((f) => f.toLowerCase());
  const built = buildPath(leaf, pool, anchors);
  const path = built.chain.map((c) => c.name);
  if (!built.ok) return { ok: false, detail: built.detail, path, leaf: leaf.node };
  const walk = walkChain(built.chain, { anchors, leafDigitalSignature: true, anchorNeedNotSelfSign: true }, now);
  if (!walk.ok) {
    const names = [...new Set(walk.faults.map((f) => f.index))].map(
      (i) =>
        `${built.chain[i].name}: ${walk.faults
          .filter((f) => f.index === i)
          .map((f) => f.detail)
          .join("; ")}`,
    );
    return { ok: false, detail: names.join("; "), path, leaf: leaf.node };
  }
  return { ok: true, detail: `chains to ${path[path.length - 1]}`, path, leaf: leaf.node };
}

export { sha256Hex as certFingerprint };
