// What a verified NitroTPM document must say for a vTPM quote: the verifier's nonce (SHA-256 of the
// AK-bound REPORT_DATA, the quote's qualifying data too), the quote's attestation key as `public_key`, the
// same SHA-384 PCR values the quote covers, and — when the workload is pinned to instances — an instance id
// the workload registered.
//
// What the document proves, and what it does not: AWS signs the NitroTPM's own SHA-384 PCRs and echoes the
// requester's public_key/user_data/nonce. The requester is the guest kernel, so `public_key` is NOT proof that
// the AK lives in the NitroTPM — a guest could name a software TPM's key. What makes the quote trustworthy is
// that its SHA-384 PCR values equal the AWS-signed ones for a document carrying this attestation's nonce; the
// measured-boot policy must therefore be evaluated on the sha384 bank (appraise.ts enforces it).
import { timingSafeEqual } from "node:crypto";
import type { KeyObject } from "node:crypto";
import type { Check } from "../types.js";
import { instanceIdOf, type NitroDocument } from "./abi.js";

export interface NitroExpectations {
  /** Expected `nonce` (absent → listed as not checked, and failed). */
  nonce?: Uint8Array;
  /** The quote's AK: TPM2B_PUBLIC bytes and its key. */
  ak?: { tpm2bPublic: Uint8Array; key: KeyObject };
  /** SHA-384 PCR values (hex) the verified quote covers. */
  quotedSha384?: Record<number, string>;
  /** Registered EC2 instance ids; absent/empty → any instance. */
  instanceIds?: string[];
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const eq = (a: Uint8Array, b: Uint8Array) => a.length === b.length && timingSafeEqual(a, b);

/** The encodings of the AK a document's public_key may carry: TPM2B_PUBLIC, SPKI DER, or an uncompressed EC point. */
export function akEncodings(ak: { tpm2bPublic: Uint8Array; key: KeyObject }): Uint8Array[] {
  const out: Uint8Array[] = [ak.tpm2bPublic, ak.key.export({ type: "spki", format: "der" })];
  if (ak.key.asymmetricKeyType === "ec") {
    const jwk = ak.key.export({ format: "jwk" });
    out.push(Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, "base64url"), Buffer.from(jwk.y!, "base64url")]));
  }
  return out;
}

export function validateNitroDocument(doc: NitroDocument, want: NitroExpectations): Check[] {
  const checks: Check[] = [];
  const nonceOk = !!want.nonce && !!doc.nonce && eq(doc.nonce, want.nonce);
  checks.push({
    id: "aws.document-nonce",
    ok: nonceOk,
    detail: !want.nonce
      ? "no expected nonce: the document cannot be tied to this attestation"
      : nonceOk
        ? "the document's nonce is SHA-256 of this attestation's REPORT_DATA"
        : `the document's nonce ${doc.nonce ? hex(doc.nonce).slice(0, 32) : "(none)"} is not this attestation's (replayed or foreign document)`,
  });
  const akOk = !!want.ak && !!doc.publicKey && akEncodings(want.ak).some((e) => eq(e, doc.publicKey!));
  checks.push({
    id: "aws.document-ak",
    ok: akOk,
    detail: !want.ak
      ? "no attestation key to compare"
      : akOk
        ? "the document's public_key is the quote's attestation key"
        : "the document's public_key is not the quote's attestation key",
  });
  const quoted = Object.entries(want.quotedSha384 ?? {});
  const diffs = quoted.filter(([i, v]) => {
    const d = doc.pcrs.get(Number(i));
    return !d || hex(d) !== v;
  });
  checks.push({
    id: "aws.document-pcrs",
    ok: quoted.length > 0 && diffs.length === 0,
    detail:
      quoted.length === 0
        ? "the quote covers no SHA-384 PCRs (or did not verify): the AWS-signed PCRs cannot vouch for it"
        : diffs.length
          ? `quoted SHA-384 PCR(s) ${diffs.map(([i]) => i).join(",")} differ from the AWS-signed NitroTPM values: the quote is not this NitroTPM's`
          : `every quoted SHA-384 PCR (${quoted.map(([i]) => i).join(",")}) equals the AWS-signed NitroTPM value`,
  });
  if (want.instanceIds?.length) {
    const id = instanceIdOf(doc);
    const ok = !!id && want.instanceIds.includes(id);
    checks.push({
      id: "aws.document-instance",
      ok,
      detail: ok
        ? `the NitroTPM belongs to registered instance ${id}`
        : `module_id ${doc.moduleId} is not a registered instance of this workload (${want.instanceIds.join(", ")})`,
    });
  }
  return checks;
}
