// Authenticode SHA-384 of the Linux EFI-stub bzImage, as TDVF measures the kernel it loads into RTMR[1]
// (the PE/COFF reading and the digest itself are ../pe.ts, shared with the vTPM boot-chain prediction).
import { authenticodeDigest as peAuthenticodeDigest } from "../pe.js";
import { TdxInputError } from "./errors.js";

const notEfi = (field: string) => (why: string) =>
  new TdxInputError(
    field,
    `not a PE/COFF EFI image (${why}); TDX direct boot needs an EFI-stub kernel (bzImage with CONFIG_EFI_STUB)`,
  );

export function authenticodeSha384(img: Buffer, field = "kernel"): Buffer {
  return authenticodeDigest(img, "sha384", field);
}

/** The same Authenticode hash with another algorithm. */
export function authenticodeDigest(img: Buffer, hash: "sha256" | "sha384" | "sha512", field = "kernel"): Buffer {
  return peAuthenticodeDigest(img, hash, notEfi(field));
}
