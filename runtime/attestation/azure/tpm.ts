// TPM 2.0 quotes: TPMS_ATTEST (TPM2_Quote output) parsing, RSASSA signature by the AK, the PCR digest
// over the reported PCR values, and the verifier nonce in extraData. Big-endian per TPM 2.0 Part 2.
import { createHash, timingSafeEqual, verify as cryptoVerify, type KeyObject } from "node:crypto";
import { EvidenceFormatError, type Check, type TpmQuote } from "../types.js";

// TPMS_ATTEST is parsed by the one strict TPM parser (../tpm/abi.ts), shared with the vTPM boot-chain path.
export {
  TPM_GENERATED_VALUE,
  TPM_ST_ATTEST_QUOTE,
  parseTpmsAttest,
  type PcrSelection,
  type TpmsAttest,
} from "../tpm/abi.js";
import { HASH_ALGS, parseTpmsAttest, type TpmsAttest } from "../tpm/abi.js";
const TPM_ALG_RSASSA = 0x0014;

/** A raw RSASSA signature, or the signature inside a TPMT_SIGNATURE (sigAlg RSASSA, hash SHA-256). */
export function rsaSignatureBytes(sig: Uint8Array, modulusBytes: number): Uint8Array {
  if (sig.length === modulusBytes) return sig;
  if (sig.length >= 6 && ((sig[0] << 8) | sig[1]) === TPM_ALG_RSASSA) {
    const hash = (sig[2] << 8) | sig[3];
    const n = (sig[4] << 8) | sig[5];
    if (hash !== 0x000b)
      throw new EvidenceFormatError(
        `tpm_quote.signature: TPMT_SIGNATURE hash 0x${hash.toString(16)}, expected SHA-256`,
        "tpm_quote.signature",
      );
    if (6 + n !== sig.length)
      throw new EvidenceFormatError("tpm_quote.signature: TPMT_SIGNATURE size mismatch", "tpm_quote.signature");
    return sig.subarray(6);
  }
  throw new EvidenceFormatError(
    `tpm_quote.signature: ${sig.length} bytes is neither a ${modulusBytes}-byte RSASSA signature nor a TPMT_SIGNATURE`,
    "tpm_quote.signature",
  );
}

export interface TpmQuoteResult {
  checks: Check[];
  attest?: TpmsAttest;
}

/** Verifies a TPM quote with the AK, its PCR digest, and (when given) the expected nonce. */
export function verifyTpmQuote(q: TpmQuote, ak: KeyObject, nonce?: Uint8Array): TpmQuoteResult {
  const checks: Check[] = [];
  let attest: TpmsAttest;
  try {
    attest = parseTpmsAttest(q.message);
  } catch (e) {
    checks.push({ id: "vtpm.quote-format", ok: false, detail: (e as Error).message });
    return { checks };
  }
  let sigOk = false;
  let sigDetail: string;
  try {
    const modulus = Math.ceil((ak.asymmetricKeyDetails?.modulusLength ?? 2048) / 8);
    sigOk = cryptoVerify("sha256", q.message, ak, rsaSignatureBytes(q.signature, modulus));
    sigDetail = sigOk
      ? "TPM quote signed by the HCL attestation key (HCLAkPub)"
      : "TPM quote signature does not verify with HCLAkPub";
  } catch (e) {
    sigDetail = `TPM quote signature unusable: ${(e as Error).message}`;
  }
  checks.push({ id: "vtpm.quote-signature", ok: sigOk, detail: sigDetail });

  // PCR digest: hash (the signing hash, SHA-256) over the selected PCR values in selection order.
  const missing: string[] = [];
  const h = createHash("sha256");
  for (const sel of attest.pcrSelections) {
    const alg = HASH_ALGS[sel.hashAlg];
    for (const i of sel.pcrs) {
      const v = q.pcrs[i];
      if (!v || (alg && v.length !== alg.bytes)) missing.push(String(i));
      else h.update(v);
    }
  }
  const banks = attest.pcrSelections
    .map((s) => `${HASH_ALGS[s.hashAlg]?.name ?? "0x" + s.hashAlg.toString(16)}:${s.pcrs.join(",")}`)
    .join(" ");
  if (missing.length) {
    checks.push({
      id: "vtpm.pcr-digest",
      ok: false,
      detail: `PCR value(s) ${missing.join(", ")} missing or of the wrong size for the quoted selection ${banks}`,
    });
  } else {
    const got = h.digest();
    const ok = got.length === attest.pcrDigest.length && timingSafeEqual(got, Buffer.from(attest.pcrDigest));
    checks.push({
      id: "vtpm.pcr-digest",
      ok,
      detail: ok ? `PCR values match the quoted digest (${banks})` : "PCR values do not hash to the quoted pcrDigest",
    });
  }
  if (nonce !== undefined) {
    const ok = Buffer.from(attest.extraData).equals(Buffer.from(nonce));
    checks.push({
      id: "vtpm.nonce",
      ok,
      detail: ok
        ? "TPM quote extraData equals the verifier nonce"
        : `TPM quote extraData ${Buffer.from(attest.extraData).toString("hex")} is not the expected nonce`,
    });
  }
  return { checks, attest };
}
