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
import { predictMeasuredBoot } from "./predict.js";

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
  o: { diskPath?: string; secureBoot?: boolean } = {},
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
  const policy = predictMeasuredBoot({
    bootApplications: [{ name: "uki", image: uki }],
    uki: {},
    mustContain: kitCmdlineMustContain(m),
    ...(o.secureBoot !== undefined ? { secureBoot: o.secureBoot } : {}),
    bank,
  });
  return { policy, uki };
}
