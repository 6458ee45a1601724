// vTPM evidence riding on SNP/TDX evidence (AWS NitroTPM, GCE Shielded VM vTPM). Chain of trust:
//   hardware report (CPU vendor's key) → REPORT_DATA = reportDataForVtpm(nonce, workload key, AK[, user-data]) → AK
//   → AK authenticated as the cloud's vTPM (a registered pin) → TPM quote (nonce = SHA-256(REPORT_DATA))
//   → PCRs → event log replay → measured-boot policy over events.
// On AWS the PCRs can instead be authenticated by a NitroTPM attestation document (AWS Nitro PKI) requested
// with the same nonce: its AWS-signed SHA-384 PCRs must equal the quote's, and the boot policy is then read in
// the sha384 bank only (a guest could pair real SHA-384 digests with invented SHA-256 ones in its log).
// Wraps the TEE folder's appraiser: it is given the AK-bound REPORT_DATA as the expected value, then the vTPM
// checks are appended, every one listed.
import { createHash } from "node:crypto";
import type { Check, Evidence, Verdict } from "../types.js";
import type { Policy } from "../policy.js";
import type { AppraiseOptions, Appraiser } from "../options.js";
import { reportDataForVtpm } from "../binding.js";
import { appraiseMeasuredBoot } from "./boot-policy.js";
import { verifyTpmEvidence, type TpmEvidence, type TpmVerification } from "./verify.js";
import { ekPinCheck, validateNitroDocument, verifyNitroDocument } from "../aws/index.js";
import type { VtpmPolicy } from "./policy.js";
import { appraiseGceAkCertificate } from "../gce/ak-cert.js";
import { credentialAkProblems } from "./credential.js";
import { EK_CREDENTIAL_CHECK, ekCredentialPending, ekCredentialPendingCheck } from "./ek-credential.js";

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest();

/** The vTPM evidence carried by SNP/TDX evidence, if any. */
export function vtpmOf(e: Evidence): TpmEvidence | undefined {
  return e && (e.kind === "snp" || e.kind === "tdx") ? e.vtpm : undefined;
}

/** Does this appraisal involve a vTPM (evidence carries one, or the policy asks for one)? */
export function involvesVtpm(e: Evidence, policy: Policy): boolean {
  return !!vtpmOf(e) || (!!policy?.vtpm && (e?.kind === "snp" || e?.kind === "tdx"));
}

export async function appraiseWithVtpm(
  evidence: Evidence,
  policy: Policy,
  opts: AppraiseOptions,
  inner: Appraiser,
): Promise<Verdict> {
  const ev = vtpmOf(evidence);
  if (!ev) {
    const v = await inner(evidence, policy, opts);
    const checks = [
      ...v.checks,
      {
        id: "vtpm.evidence",
        ok: false,
        detail: "the policy has a vtpm section but the evidence carries no vTPM quote and event log",
      },
    ];
    return { ...v, accepted: false, checks };
  }
  // The hardware report must carry the AK-bound REPORT_DATA.
  let expected: Uint8Array | undefined;
  let innerOpts = opts;
  if (opts.binding) {
    // With a registered user-data hash the binding is v2: the REGISTERED hash, whatever the guest claims.
    expected = reportDataForVtpm(
      opts.binding.nonce,
      opts.binding.publicKeySpki,
      ev.akPublic,
      opts.binding.userDataSha256,
    );
    innerOpts = { ...opts, binding: undefined, expectedReportData: expected };
  } else if (opts.vtpmReportData) {
    // The caller's own AK-binding format (the runtime's attested TLS), computed over the AK that signed the quote.
    expected = opts.vtpmReportData(ev.akPublic);
    innerOpts = { ...opts, vtpmReportData: undefined, expectedReportData: expected };
  }
  const v = await inner(evidence, policy, innerOpts);
  const checks: Check[] = [...v.checks];
  const reportDataOk = v.checks.find((c) => c.id === "policy.report-data")?.ok === true;
  checks.push({
    id: "vtpm.ak-binding",
    ok: !!expected && reportDataOk,
    detail: !expected
      ? "the AK is not bound: no nonce/key binding was given to check REPORT_DATA against"
      : reportDataOk
        ? `REPORT_DATA binds the nonce, the ${opts.binding ? "workload" : "TLS"} key${opts.binding?.userDataSha256 ? ", the registered user-data" : ""} and this attestation key`
        : `REPORT_DATA does not bind this attestation key (or the nonce/key${opts.binding?.userDataSha256 ? "/registered user-data" : ""}): quote and report are not tied`,
  });
  const t = verifyTpmEvidence(ev, { nonce: expected ? sha256(expected) : undefined });
  checks.push(...t.checks);
  const akDigest = sha256(ev.akPublic).toString("hex");
  const vp = policy.vtpm ?? {};
  const pinned = (vp.akPins ?? []).includes(akDigest);
  // EK credential activation (vtpm.ekPublics) authenticates the AK as the registered EK's TPM's key — once the
  // round trip succeeds: until then vtpm.ek-credential is pending (ok: false), so nothing is accepted without it.
  const ekCredential = !!vp.ekPublics?.length && !!t.ak && credentialAkProblems(t.ak).length === 0;
  const nitro = nitroChecks(ev, vp, t, expected, opts, pinned || ekCredential);
  checks.push(...nitro.checks);
  // GCE: Google's EK/AK CA certifies the AK (gce/ak-cert.ts); the certified key must be the quoting key.
  const gce = appraiseGceAkCertificate(ev.akCertificate, ev.akIntermediates, t.ak?.key, vp.gceAkCertificate, {
    now: opts.now,
    simulatedRoots: opts.trust.gce?.simulatedAkRoots,
  });
  checks.push(...gce.checks);
  if (vp.ekNames?.length) checks.push(ekPinCheck(vp.ekNames, t.ak, t.attest?.qualifiedSigner));
  if (vp.ekPublics?.length) checks.push(ekCredentialPendingCheck(t.ak, vp.ekPublics));
  checks.push({
    id: "vtpm.ak-authenticated",
    ok: pinned || nitro.authenticated || gce.authenticated || ekCredential || vp.allowUnauthenticatedAk === true,
    detail: pinned
      ? `AK ${akDigest.slice(0, 16)}… is a registered key of this workload's vTPM`
      : ekCredential && !nitro.authenticated && !gce.authenticated
        ? `AK ${akDigest.slice(0, 16)}… is authenticated by EK credential activation (${EK_CREDENTIAL_CHECK}): it must prove it lives in the TPM of the registered EK`
        : gce.authenticated
          ? `AK ${akDigest.slice(0, 16)}… is certified by Google's EK/AK CA as this VM's vTPM key`
          : nitro.authenticated
            ? "the quote's SHA-384 PCRs are the NitroTPM's, as signed by the AWS Nitro PKI for this attestation's nonce (boot events read in sha384 only)"
            : vp.allowUnauthenticatedAk
              ? `AK ${akDigest.slice(0, 16)}… is NOT authenticated as the cloud's vTPM (allowUnauthenticatedAk): a guest kernel could have bound a software TPM, so the OS is not bound`
              : `AK ${akDigest.slice(0, 16)}… is not a registered vTPM key of this workload${vp.nitroTpm ? " and no valid NitroTPM document vouches for the quote" : ""}: binding alone does not prove the PCRs are the cloud vTPM's`,
  });
  if (vp.measuredBoot) checks.push(...appraiseMeasuredBoot(t, vp.measuredBoot));
  else
    checks.push({
      id: "boot.policy",
      ok: !policy.vtpm,
      detail: policy.vtpm
        ? "the vtpm policy has no measuredBoot section: nothing about the OS would be checked"
        : "vTPM quote verified; no measured-boot policy, the OS is not constrained",
    });
  // Claims survive a verdict refused only for the pending EK credential round trip (Nitride completes it).
  const okSoFar = checks.every((c) => c.ok) || ekCredentialPending({ ...v, checks });
  const claims =
    v.claims && (okSoFar || opts.explain)
      ? {
          ...v.claims,
          extra: {
            ...v.claims.extra,
            vtpm: {
              akSha256: akDigest,
              pcrs: t.quotedPcrs.sha256 ?? {},
              ...(gce.instance ? { gceInstance: gce.instance } : {}),
            },
          },
        }
      : v.claims && opts.explain
        ? v.claims
        : okSoFar
          ? v.claims
          : undefined;
  return { ...v, checks, claims, simulated: v.simulated || nitro.testRoot, accepted: checks.every((c) => c.ok) };
}

/**
 * The NitroTPM document's checks when the policy asks for one (vtpm.nitroTpm) or the evidence carries one.
 * `authenticated`: every document check passed, the policy asked for it, and the boot policy reads sha384 —
 * the only bank AWS signs (with pins, every quoted bank is the real TPM's and any bank may be used).
 */
function nitroChecks(
  ev: TpmEvidence,
  vp: VtpmPolicy,
  t: TpmVerification,
  expected: Uint8Array | undefined,
  opts: AppraiseOptions,
  akPinned: boolean,
): { checks: Check[]; authenticated: boolean; testRoot: boolean } {
  if (!vp.nitroTpm && !ev.nitroDocument) return { checks: [], authenticated: false, testRoot: false };
  if (!ev.nitroDocument)
    return {
      checks: [
        {
          id: "aws.document",
          ok: false,
          detail: "the policy requires a NitroTPM attestation document (vtpm.nitroTpm) and the evidence carries none",
        },
      ],
      authenticated: false,
      testRoot: false,
    };
  const trust = opts.trust?.aws ?? {};
  const v = verifyNitroDocument(ev.nitroDocument, {
    now: opts.now,
    testRoots: trust.testRoots,
    maxAgeMs: trust.maxDocumentAgeMs,
  });
  const checks = [...v.checks];
  if (v.doc && v.checks.every((c) => c.ok))
    checks.push(
      ...validateNitroDocument(v.doc, {
        nonce: expected ? sha256(expected) : undefined,
        ak: t.ak ? { tpm2bPublic: ev.akPublic, key: t.ak.key } : undefined,
        quotedSha384: t.quotedPcrs.sha384,
        instanceIds: vp.nitroTpm?.instanceIds,
      }),
    );
  const bank = vp.measuredBoot?.bank ?? "sha256";
  // Whether *this* AK is pinned matters, not whether the policy lists pins: an unpinned (software) AK
  // authenticated by the document alone must be read in the bank the document signs.
  if (vp.nitroTpm && vp.measuredBoot && !akPinned)
    checks.push({
      id: "aws.document-bank",
      ok: bank === "sha384",
      detail:
        bank === "sha384"
          ? "boot events are read in the sha384 bank, whose PCRs AWS signs"
          : `measuredBoot.bank is ${bank}, but the NitroTPM document signs only SHA-384 PCRs: a guest could pair real SHA-384 event digests with invented ${bank} ones. Use bank sha384`,
    });
  const ok = checks.every((c) => c.ok) && !!vp.nitroTpm && checks.some((c) => c.id === "aws.document-pcrs");
  return { checks, authenticated: ok, testRoot: v.testRoot };
}
