// TPM 2.0 quotes: TPMS_ATTEST (TPM2_Quote output) parsing, RSASSA signature by the AK, the PCR digest
// over the reported PCR values, and the verifier nonce in extraData. Big-endian per TPM 2.0 Part 2.
import { createHash, timingSafeEqual, verify as cryptoVerify, type KeyObject } from "node:crypto";
import { EvidenceFormatError, type Check, type TpmQuote } from "../types.js";

export const TPM_GENERATED_VALUE = 0xff544347;
export const TPM_ST_ATTEST_QUOTE = 0x8018;
const TPM_ALG_RSASSA = 0x0014;
const HASH_ALGS: Record<number, { name: string; bytes: number }> = {
  0x0004: { name: "sha1", bytes: 20 },
  0x000b: { name: "sha256", bytes: 32 },
  0x000c: { name: "sha384", bytes: 48 },
  0x000d: { name: "sha512", bytes: 64 },
};

export interface PcrSelection {
  hashAlg: number;
  pcrs: number[];
}

export interface TpmsAttest {
  qualifiedSigner: Uint8Array;
  extraData: Uint8Array;
  clock: bigint;
  resetCount: number;
  restartCount: number;
  safe: boolean;
  firmwareVersion: bigint;
  pcrSelections: PcrSelection[];
  pcrDigest: Uint8Array;
}

export function parseTpmsAttest(b: Uint8Array): TpmsAttest {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  let p = 0;
  const need = (n: number, field: string) => {
    if (p + n > buf.length)
      throw new EvidenceFormatError(
        `tpm_quote.message.${field}: truncated at offset ${p}`,
        `tpm_quote.message.${field}`,
        p,
      );
  };
  const u8 = (f: string) => (need(1, f), buf.readUInt8(p++));
  const u16 = (f: string) => (need(2, f), (p += 2), buf.readUInt16BE(p - 2));
  const u32 = (f: string) => (need(4, f), (p += 4), buf.readUInt32BE(p - 4));
  const u64 = (f: string) => (need(8, f), (p += 8), buf.readBigUInt64BE(p - 8));
  const tpm2b = (f: string) => {
    const n = u16(f);
    need(n, f);
    p += n;
    return b.subarray(p - n, p);
  };
  if (u32("magic") !== TPM_GENERATED_VALUE)
    throw new EvidenceFormatError(
      "tpm_quote.message.magic: not TPM_GENERATED_VALUE (ff544347)",
      "tpm_quote.message.magic",
      0,
    );
  const type = u16("type");
  if (type !== TPM_ST_ATTEST_QUOTE)
    throw new EvidenceFormatError(
      `tpm_quote.message.type: 0x${type.toString(16)} is not TPM_ST_ATTEST_QUOTE (0x8018)`,
      "tpm_quote.message.type",
      4,
    );
  const qualifiedSigner = tpm2b("qualified_signer");
  const extraData = tpm2b("extra_data");
  const clock = u64("clock");
  const resetCount = u32("reset_count");
  const restartCount = u32("restart_count");
  const safe = u8("safe") === 1;
  const firmwareVersion = u64("firmware_version");
  const count = u32("pcr_select.count");
  if (count > 16)
    throw new EvidenceFormatError(
      `tpm_quote.message.pcr_select.count: ${count} banks`,
      "tpm_quote.message.pcr_select.count",
      p - 4,
    );
  const pcrSelections: PcrSelection[] = [];
  for (let i = 0; i < count; i++) {
    const hashAlg = u16("pcr_select.hash");
    const size = u8("pcr_select.size");
    need(size, "pcr_select.bitmap");
    const pcrs: number[] = [];
    for (let j = 0; j < size * 8; j++) if (buf[p + (j >> 3)] & (1 << (j & 7))) pcrs.push(j);
    p += size;
    pcrSelections.push({ hashAlg, pcrs });
  }
  const pcrDigest = tpm2b("pcr_digest");
  if (p !== buf.length)
    throw new EvidenceFormatError(
      `tpm_quote.message: ${buf.length - p} bytes after TPMS_QUOTE_INFO`,
      "tpm_quote.message",
      p,
    );
  return {
    qualifiedSigner,
    extraData,
    clock,
    resetCount,
    restartCount,
    safe,
    firmwareVersion,
    pcrSelections,
    pcrDigest,
  };
}

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
