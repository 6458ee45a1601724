// Verifies a GCE launch endorsement the way google/gce-tcb-verifier verify/verify.go does, every step a check:
// the strict parse, provenance (after 2024-08-02 an endorsement must name its changelist or commit), the signer
// certificate chaining (through the endorsement's own ca_bundle) to a configured GCE-cc-tcb-root by SHA-256,
// and the RSA-PSS/SHA-256 signature over serialized_uefi_golden. What the endorsement then says about a report
// is judged by validate.ts.
import { constants, createHash, verify as cryptoVerify, X509Certificate } from "node:crypto";
import type { Check } from "../types.js";
import { parseLaunchEndorsement, type LaunchEndorsement } from "./abi.js";
import { certsFrom, verifyChain, certFingerprint } from "./x509.js";

/** Google's published TCB signing root (pki.goog/cloud_integrity/GCE-cc-tcb-root_1.crt). */
export const GCE_TCB_ROOT_URL = "https://pki.goog/cloud_integrity/GCE-cc-tcb-root_1.crt";
/** Endorsements without provenance were signed before this date only (gce-tcb-verifier uefiReleaseChangeDate). */
export const PROVENANCE_REQUIRED_AFTER = new Date("2024-08-02T00:00:00Z");

export interface GceTrustConfig {
  /**
   * GCE-cc-tcb-root certificate(s), PEM or DER, obtained by the operator from GCE_TCB_ROOT_URL. The kit pins
   * none of its own: no copy of Google's root could be read where this was written (only third parties' statement
   * of its SHA-256, which docs/attestation-chain.md gives as a cross-check, not as trust).
   */
  tcbRoots?: Uint8Array[];
}

export interface EndorsementVerification {
  checks: Check[];
  endorsement?: LaunchEndorsement;
  /** True when the signature and the signer chain verified. */
  ok: boolean;
  /** SHA-384 of the endorsement bytes (hex), for audit records. */
  digest: string;
}

export function verifyGceEndorsement(
  bytes: Uint8Array,
  trust: GceTrustConfig,
  now: Date = new Date(),
): EndorsementVerification {
  const digest = createHash("sha384").update(bytes).digest("hex");
  const checks: Check[] = [];
  let e: LaunchEndorsement;
  try {
    e = parseLaunchEndorsement(bytes);
  } catch (err) {
    checks.push({ id: "gce.endorsement-format", ok: false, detail: (err as Error).message });
    return { checks, ok: false, digest };
  }
  const g = e.golden;
  checks.push({
    id: "gce.endorsement-format",
    ok: true,
    detail: `VMLaunchEndorsement ${digest.slice(0, 16)}…: ${g.sevSnp ? `SEV-SNP (${g.sevSnp.measurements.size} vCPU counts, SVN ${g.sevSnp.svn})` : "no SEV-SNP"}, ${g.tdx ? `TDX (${g.tdx.measurements.length} MRTDs, SVN ${g.tdx.svn})` : "no TDX"}${g.unknownFields.length ? `; unknown signed fields ${g.unknownFields.join(",")}` : ""}`,
  });
  const needsProvenance = !!g.timestamp && g.timestamp > PROVENANCE_REQUIRED_AFTER;
  const hasProvenance = g.clSpec !== 0n || g.commit.length > 0;
  checks.push({
    id: "gce.endorsement-provenance",
    ok: !needsProvenance || hasProvenance,
    detail: hasProvenance
      ? `built from ${g.clSpec !== 0n ? `changelist ${g.clSpec}` : `commit ${Buffer.from(g.commit).toString("hex")}`}${g.timestamp ? `, signed ${g.timestamp.toISOString()}` : ""}`
      : needsProvenance
        ? `signed ${g.timestamp!.toISOString()} without changelist or commit (required after ${PROVENANCE_REQUIRED_AFTER.toISOString().slice(0, 10)})`
        : "no provenance (allowed for endorsements signed before 2024-08-02)",
  });
  const roots = (trust.tcbRoots ?? []).flatMap((r) => certsFrom(r));
  let chainOk = false;
  if (roots.length === 0) {
    checks.push({
      id: "gce.endorsement-signer",
      ok: false,
      detail: `no GCE TCB root is configured (trust.gce.tcbRoots): obtain ${GCE_TCB_ROOT_URL} and configure it; an endorsement cannot be trusted without it`,
    });
  } else {
    const chain = verifyChain(g.cert, certsFrom(g.caBundle), roots, roots.map(certFingerprint), now);
    chainOk = chain.ok;
    checks.push({
      id: "gce.endorsement-signer",
      ok: chain.ok,
      detail: chain.ok ? `signer certificate ${chain.path!.join(" ← ")}` : `signer certificate: ${chain.detail}`,
    });
  }
  let sigOk = false;
  try {
    const key = new X509Certificate(g.cert).publicKey;
    if (key.asymmetricKeyType !== "rsa" && key.asymmetricKeyType !== "rsa-pss")
      throw new Error(`signer key is ${key.asymmetricKeyType}, Google signs endorsements with RSA`);
    sigOk = cryptoVerify(
      "sha256",
      e.serializedGolden,
      { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO },
      Buffer.from(e.signature),
    );
    checks.push({
      id: "gce.endorsement-signature",
      ok: sigOk,
      detail: sigOk
        ? "RSA-PSS/SHA-256 signature over the golden measurement verifies with the signer certificate"
        : "the signature does not verify: the golden measurement or the signature was altered",
    });
  } catch (err) {
    checks.push({ id: "gce.endorsement-signature", ok: false, detail: (err as Error).message });
  }
  return { checks, endorsement: e, ok: chainOk && sigOk, digest };
}
