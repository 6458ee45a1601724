// The vTPM part of evidence as plain data (all raw TPM wire bytes). Kept free of imports so the shared
// vocabulary (../types.ts) can name it without a cycle through the parsers and the verifier.

/** TPM hash algorithms a bank or signature may use. */
export type HashName = "sha1" | "sha256" | "sha384" | "sha512";

/** PCR values per bank: bank → PCR index → digest. */
export type PcrValues = Partial<Record<HashName, Record<number, Uint8Array>>>;

/** What the enclaivelet sends for the vTPM part of its evidence (all raw TPM wire bytes). */
export interface TpmEvidence {
  /** TPM2B_PUBLIC of the attestation key. */
  akPublic: Uint8Array;
  /** TPMS_ATTEST from TPM2_Quote. */
  quote: Uint8Array;
  /** TPMT_SIGNATURE from TPM2_Quote. */
  signature: Uint8Array;
  /** The quoted PCR values per bank (TPM2_PCR_Read); absent → taken from the event-log replay. */
  pcrs?: PcrValues;
  /** binary_bios_measurements (crypto-agile TCG event log). */
  eventLog?: Uint8Array;
  /** AWS: the NitroTPM attestation document (COSE_Sign1, runtime/attestation/aws) requested with the same nonce. */
  nitroDocument?: Uint8Array;
  /** GCE: the AK certificate (DER) from NV index 0x01c10000 (RSA) / 0x01c10002 (ECC), issued by Google's EK/AK CA. */
  akCertificate?: Uint8Array;
  /** GCE: intermediates for the AK certificate (DER), when the guest has them; Google's are bundled anyway. */
  akIntermediates?: Uint8Array[];
}
