// Boot-chain prediction for the kit's cloud disk (`image build --format disk`, images/guest/disk.ts): the UKI is
// read out of the disk file's EFI system partition — the bytes the VM's firmware will load from
// \EFI\BOOT\BOOTX64.EFI — and checked against the manifest's record before anything is predicted from it.
// What the firmware and systemd-stub then measure: the UKI's Authenticode digest (PCR 4; it covers .linux,
// .initrd, .cmdline), and systemd-stub's section measurements (PCR 11); the command line is the UKI's .cmdline,
// which must carry the image's dm-verity root hash.
import { createHash } from "node:crypto";
import path from "node:path";
import type { MeasuredBootPolicy } from "../../runtime/attestation/tpm/boot-policy.js";
import { ukiFromDiskFile } from "../guest/disk.js";
import { kitCmdlineMustContain, type ImageManifest } from "../guest/manifest.js";
import { BootPredictionError } from "./errors.js";
import { predictMeasuredBoot, type BootChainInputs } from "./predict.js";
import { certificateDer, certificateSha256, type SecureBootVariables } from "./secure-boot.js";
import { parsePe } from "../pe.js";

/**
 * Secure Boot for a disk's prediction: `true` (only "Secure Boot on"), or the db authority — the certificates the UKI
 * is signed with and enrolled in db (default: the manifest's disk.signature), optionally the enrolled variables.
 */
export type DiskSecureBoot = boolean | { dbCertificates?: (Buffer | string)[]; variables?: SecureBootVariables };

/** Whether the PE's certificate table (WIN_CERTIFICATE PKCS#7) carries this DER certificate. */
export function ukiCarriesCertificate(pe: Buffer, certDer: Buffer): boolean {
  const { optionalHeader: opt } = parsePe(pe, (why) => new BootPredictionError("uki", why));
  const dirs = opt + (pe.readUInt16LE(opt) === 0x20b ? 112 : 96);
  if (pe.readUInt32LE(dirs - 4) <= 4) return false;
  const off = pe.readUInt32LE(dirs + 4 * 8);
  const size = pe.readUInt32LE(dirs + 4 * 8 + 4);
  if (!size || off + size > pe.length) return false;
  return pe.subarray(off, off + size).includes(certDer);
}

export interface DiskPrediction {
  policy: MeasuredBootPolicy;
  /** The UKI read from the disk (its bytes, as the firmware loads them). */
  uki: Buffer;
}

/**
 * The measured-boot policy for a kit image booted from its cloud disk: `manifestPath`'s `disk` (relative to the
 * manifest), or `diskPath` when the disk was copied elsewhere (its UKI must still be the manifest's).
 */
export function predictFromDisk(
  manifestPath: string,
  m: ImageManifest,
  bank: "sha256" | "sha384",
  o: { diskPath?: string; secureBoot?: DiskSecureBoot } = {},
): DiskPrediction {
  if (!m.disk) throw new BootPredictionError("manifest.disk", "the image was built without --format disk");
  const file = o.diskPath ?? path.resolve(path.dirname(manifestPath), m.disk.path);
  let uki: Buffer;
  try {
    uki = ukiFromDiskFile(file);
  } catch (e) {
    throw new BootPredictionError("manifest.disk", `${file}: ${(e as Error).message}`);
  }
  const got = createHash("sha256").update(uki).digest("hex");
  if (got !== m.disk.uki.sha256)
    throw new BootPredictionError(
      "manifest.disk",
      `${file}: its \\EFI\\BOOT\\BOOTX64.EFI has SHA-256 ${got}, the manifest's UKI is ${m.disk.uki.sha256}`,
    );
  let secureBoot: BootChainInputs["secureBoot"];
  if (typeof o.secureBoot === "object") {
    const certs = o.secureBoot.dbCertificates ?? (m.disk.signature ? [m.disk.signature.certPem] : []);
    if (certs.length === 0)
      throw new BootPredictionError(
        "manifest.disk.signature",
        "Secure Boot with the db authority needs a signed UKI (image build --sign-key/--sign-cert) or dbCertificates",
      );
    // The UKI on the disk must carry a signature by one of them, or the firmware would refuse it.
    if (!certs.some((c) => ukiCarriesCertificate(uki, certificateDer(c, "secureBoot.dbCertificates"))))
      throw new BootPredictionError(
        "manifest.disk.signature",
        `${file}: its UKI is not signed by ${certs.length > 1 ? "any of the db certificates" : "the db certificate"} (certificate SHA-256 ${certs.map((c) => certificateSha256(c)).join(", ")})`,
      );
    secureBoot = { dbCertificates: certs, ...(o.secureBoot.variables ? { variables: o.secureBoot.variables } : {}) };
  } else secureBoot = o.secureBoot;
  const policy = predictMeasuredBoot({
    bootApplications: [{ name: "uki", image: uki }],
    uki: {},
    mustContain: kitCmdlineMustContain(m),
    ...(secureBoot !== undefined ? { secureBoot } : {}),
    bank,
  });
  return { policy, uki };
}
