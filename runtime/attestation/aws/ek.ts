// EK pin (AWS `GetInstanceTpmEkPub`): the instance's NitroTPM endorsement key, registered at deploy time, and
// the check that the quote's signer claims to be an AK created directly under it.
//
// The check: TPMS_ATTEST.qualifiedSigner must equal the AK's Qualified Name under that EK (TPM 2.0 Part 1,
// "Qualified Name": QN(child) = nameAlg ‖ H(QN(parent) ‖ Name(child)); QN of the endorsement hierarchy is its
// handle 0x4000000B; the EK is a primary, the enclaivelet's AK its child).
//
// What the pin proves, and what it does not. It proves consistency: a genuine TPM writes qualifiedSigner itself,
// so a quote from the real NitroTPM with a matching value comes from that instance's TPM. It does NOT authenticate
// the AK: the EK public key is public (any root user on the instance reads it), so a software TPM can compute and
// sign the same qualifiedSigner. Proving that the AK lives next to that EK needs TPM2_ActivateCredential — a
// challenge the verifier encrypts to the EK for the AK's name, which only that TPM can open — i.e. a round trip
// (or a response only the TPM can unwrap), not a check on evidence after the fact. So an EK pin never counts as
// AK authentication here (`vtpm.ak-authenticated`); it is listed as its own check and narrows which instance's
// genuine quotes are accepted. The NitroTPM document (its module_id names the instance) is what pins an instance
// with a signature.
import { createHash, timingSafeEqual } from "node:crypto";
import type { Check } from "../types.js";
import { parseTpmPublic, type TpmPublic } from "../tpm/abi.js";

const TPM_RH_ENDORSEMENT = Buffer.from([0x40, 0x00, 0x00, 0x0b]);

/** The TPM Name (hex) of an EK given as TPMT_PUBLIC (GetInstanceTpmEkPub --key-format tpmt, base64-decoded). */
export function ekNameFromTpmt(tpmt: Uint8Array): string {
  return Buffer.from(parseTpmPublic(tpmt, { sized: false, where: "ek_public" }).name).toString("hex");
}

function qualify(parentQn: Buffer, child: { nameAlg: string; name: Uint8Array }): Buffer {
  const alg = Buffer.from(child.name.subarray(0, 2));
  return Buffer.concat([alg, createHash(child.nameAlg).update(parentQn).update(child.name).digest()]);
}

const HASH_BY_ALG: Record<number, string> = { 0x0004: "sha1", 0x000b: "sha256", 0x000c: "sha384", 0x000d: "sha512" };

/** The Qualified Name of `ak` created directly under the EK with TPM Name `ekName`. */
export function akQualifiedNameUnderEk(ekName: Uint8Array, ak: TpmPublic): Buffer {
  const ekAlg = HASH_BY_ALG[(ekName[0] << 8) | ekName[1]];
  if (!ekAlg) throw new Error("EK name: unknown name algorithm");
  const ekQn = qualify(TPM_RH_ENDORSEMENT, { nameAlg: ekAlg, name: ekName });
  return qualify(ekQn, ak);
}

export function ekPinCheck(
  ekNames: string[],
  ak: TpmPublic | undefined,
  qualifiedSigner: Uint8Array | undefined,
): Check {
  if (!ak || !qualifiedSigner)
    return { id: "aws.ek-pin", ok: false, detail: "no verified quote to compare with the registered EK" };
  const match = ekNames.find((n) => {
    try {
      const want = akQualifiedNameUnderEk(Buffer.from(n, "hex"), ak);
      return want.length === qualifiedSigner.length && timingSafeEqual(want, qualifiedSigner);
    } catch {
      return false;
    }
  });
  return {
    id: "aws.ek-pin",
    ok: !!match,
    detail: match
      ? `the quote's signer is an AK under the registered EK ${match.slice(0, 16)}… (consistency only: an EK pin does not authenticate the AK)`
      : "the quote's qualifiedSigner is not an AK under any registered EK: another instance's TPM, or another key hierarchy",
  };
}
