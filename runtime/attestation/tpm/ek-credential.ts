// EK credential activation as an appraisal step (check `vtpm.ek-credential`): when the policy registers EK
// public keys (vtpm.ekPublics — on AWS from EC2 GetInstanceTpmEkPub), the AK bound into REPORT_DATA must prove it
// lives in the TPM of one of them. Evidence alone cannot show that (the EK public key is public: a software TPM
// can claim any parent), so the proof is a second round trip: the verifier makes a credential (credential.ts)
// for the registered EK and the AK's Name, and only a TPM that holds that EK's private key AND an object of that
// Name can activate it. Until the answer is checked, the appraisal lists the check as pending (ok: false), so
// any caller that does not run the round trip refuses; Nitride runs it (runtime/server/nitride/ek-credential.ts), and
// so does verifyRuntime for the runtime itself (runtime/client/attested-tls.ts, POST sys/attestation/activate).
//
// What a successful activation proves: the AK is a key of the TPM whose EK the registration names — on AWS, the
// NitroTPM of the instance EC2 says has that EK. It rests on the EC2 API (the cloud operator) for the EK itself:
// no certificate chains the NitroTPM EK to a hardware root.
import { timingSafeEqual } from "node:crypto";
import type { Check, Verdict } from "../types.js";
import { akQualifiedNameUnderEk } from "../aws/ek.js";
import { credentialAkProblems, credentialEk } from "./credential.js";
import type { TpmPublic } from "./abi.js";

export const EK_CREDENTIAL_CHECK = "vtpm.ek-credential";
const PENDING = "pending:";

export interface EkCredentialTarget {
  /** The registered EK the credential is made for. */
  ek: TpmPublic;
  /** The AK's TPM Name: what the credential is bound to. */
  akName: Buffer;
}

/**
 * Which registered EK to make the credential for: the one the quote's qualifiedSigner names as the AK's parent
 * when one does (the kit's AK is created under the EK), else the first registered. Any of them proves the same:
 * the AK lives in that TPM.
 */
export function ekCredentialTarget(
  ekPublics: string[],
  ak: TpmPublic,
  qualifiedSigner: Uint8Array | undefined,
): EkCredentialTarget {
  const eks = ekPublics.map((b64, i) => credentialEk(Buffer.from(b64, "base64"), `vtpm.ekPublics[${i}]`));
  const parent = qualifiedSigner
    ? eks.find((ek) => {
        try {
          const qn = akQualifiedNameUnderEk(ek.name, ak);
          return qn.length === qualifiedSigner.length && timingSafeEqual(qn, qualifiedSigner);
        } catch {
          return false;
        }
      })
    : undefined;
  return { ek: parent ?? eks[0], akName: Buffer.from(ak.name) };
}

/** The check while the round trip has not happened: pending, or refused at once when the AK cannot qualify. */
export function ekCredentialPendingCheck(ak: TpmPublic | undefined, ekPublics: string[]): Check {
  if (!ak) return { id: EK_CREDENTIAL_CHECK, ok: false, detail: "no verified AK to make an EK credential for" };
  const problems = credentialAkProblems(ak);
  if (problems.length)
    return {
      id: EK_CREDENTIAL_CHECK,
      ok: false,
      detail: `the AK cannot be proven by EK credential activation: ${problems.join("; ")}`,
    };
  return {
    id: EK_CREDENTIAL_CHECK,
    ok: false,
    detail: `${PENDING} the AK must activate a credential made for ${ekPublics.length === 1 ? "the registered EK" : "a registered EK"} (TPM2_ActivateCredential): a second round trip`,
  };
}

/** Is this verdict refused only because the EK credential round trip has not happened yet? */
export function ekCredentialPending(v: Verdict): boolean {
  const failed = v.checks.filter((c) => !c.ok);
  return failed.length === 1 && failed[0].id === EK_CREDENTIAL_CHECK && failed[0].detail.startsWith(PENDING);
}

/** The verdict once the round trip is over: the pending check replaced by its outcome, `accepted` recomputed. */
export function settleEkCredential(v: Verdict, outcome: Check): Verdict {
  const checks = v.checks.map((c) => (c.id === EK_CREDENTIAL_CHECK ? outcome : c));
  return { ...v, checks, accepted: checks.every((c) => c.ok) };
}
