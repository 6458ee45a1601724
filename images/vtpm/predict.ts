// Deploy-time prediction of the boot-chain EVENTS a cloud vTPM will log for the kit's image, as a measured-boot
// policy (runtime/attestation/tpm/boot-policy.ts): the PE Authenticode digests of the boot applications firmware
// runs (PCR 4: shim, grub and the kernel, or one UKI), the kernel command line (with the dm-verity root hash) and
// the initrd the Linux EFI stub measures (PCR 9), and for a UKI the PCR 11 value systemd-stub produces (uki.ts).
// Cloud firmware events are not predicted: the policy is over events, so it does not need them.
import { createHash } from "node:crypto";
import { efiImageDigest } from "../pe.js";
import type { MeasuredBootPolicy } from "../../runtime/attestation/tpm/boot-policy.js";
import { BootPredictionError } from "./errors.js";
import { peSections, predictUkiPcr11, sectionContents, ukiCmdline } from "./uki.js";
import { secureBootPolicy, type SecureBootVariables } from "./secure-boot.js";

/** What firmware extends into PCR 4 for a PE boot application (efiImageDigest: exact bytes, no padding). */
export function bootApplicationDigest(image: Buffer, bank: "sha256" | "sha384", field = "bootApplication"): string {
  return efiImageDigest(
    image,
    bank,
    (why) => new BootPredictionError(field, `not a PE/COFF EFI image (${why})`),
  ).toString("hex");
}

/**
 * The kernel inside a UKI, when it is an EFI-stub PE: systemd-stub (seen with Debian's 252) starts it with the
 * firmware's LoadImage, so the firmware measures it into PCR 4 as a second boot application after the UKI.
 */
export function ukiKernelDigest(uki: Buffer, bank: "sha256" | "sha384"): string | undefined {
  const linux = peSections(uki).find((s) => s.name === ".linux");
  if (!linux) return undefined;
  try {
    return bootApplicationDigest(sectionContents(uki, linux), bank, "uki.linux");
  } catch {
    return undefined; // not a PE (test UKIs with placeholder contents): the stub could not LoadImage it
  }
}

export interface BootChainInputs {
  /** PE images firmware (or shim) executes, in boot order; the last one is the kernel or the UKI. */
  bootApplications: { name: string; image: Buffer }[];
  /** The command line the kernel gets (grub's / the Linux stub's), when not inside a UKI. */
  cmdline?: string;
  /** The initrd the Linux EFI stub loads (not with a UKI, whose .initrd is covered by its PE digest). */
  initrd?: Buffer;
  /**
   * The last boot application is a UKI: its Authenticode digest covers .linux, .initrd and .cmdline. The command
   * line defaults to its .cmdline section; `pcr11` (default true) also predicts systemd-stub's PCR 11 (uki.ts) —
   * exact only while nothing after the stub extends PCR 11 (the kit's init does not; systemd-pcrphase would).
   */
  uki?: { cmdline?: string; pcr11?: boolean };
  /** PCR bank of the predicted digests (default sha256; AWS NitroTPM documents sign sha384). */
  bank?: "sha256" | "sha384";
  /** Strings the command line must carry (e.g. `roothash=<hex>` of the dm-verity root). */
  mustContain?: string[];
  /**
   * Require Secure Boot enabled (PCR 7). With `dbCertificates` (PEM or DER, what the program enrolls in db and signs
   * the UKI with): also that the boot was verified by one of them (EV_EFI_VARIABLE_AUTHORITY, secure-boot.ts);
   * `variables` adds the enrolled PK/KEK/db/dbx values' digests.
   */
  secureBoot?: boolean | { dbCertificates: (Buffer | string)[]; variables?: SecureBootVariables };
}

export { BootPredictionError };

/** The SHA-256 measured-boot policy for a boot chain: what Nitride checks the vTPM's event log against. */
export function predictMeasuredBoot(i: BootChainInputs): MeasuredBootPolicy {
  if (i.bootApplications.length === 0)
    throw new BootPredictionError("bootApplications", "at least the kernel or UKI is needed");
  const bank = i.bank ?? "sha256";
  const digests = i.bootApplications.map((a, n) =>
    bootApplicationDigest(a.image, bank, `bootApplications[${n}] (${a.name})`),
  );
  const last = i.bootApplications[i.bootApplications.length - 1].image;
  const cmdline = i.uki ? (i.uki.cmdline ?? ukiCmdline(last)) : i.cmdline;
  if (cmdline === undefined)
    throw new BootPredictionError("cmdline", "the kernel command line is needed (or uki.cmdline)");
  for (const want of i.mustContain ?? [])
    if (!cmdline.includes(want)) throw new BootPredictionError("cmdline", `does not contain '${want}'`);
  // A UKI's embedded kernel is started by systemd-stub through LoadImage: measured too, and required.
  const kernel = i.uki ? ukiKernelDigest(last, bank) : undefined;
  const required = [digests[digests.length - 1], ...(kernel ? [kernel] : [])];
  const policy: MeasuredBootPolicy = {
    bank,
    // Only the kit's own applications are allowed in PCR 4, and the kernel/UKI must have run.
    bootApplications: { allowed: [...digests, ...(kernel ? [kernel] : [])], required },
    kernelCmdline: {
      allowed: [cmdline],
      ...(i.mustContain ? { mustContain: i.mustContain } : {}),
      ...(i.uki ? { boundByUki: true } : {}),
    },
  };
  if (i.initrd && !i.uki) policy.initrd = [createHash(bank).update(i.initrd).digest("hex")];
  if (i.uki && i.uki.pcr11 !== false) policy.pcrs = { "11": predictUkiPcr11(last, bank).toString("hex") };
  if (typeof i.secureBoot === "boolean") policy.secureBoot = { enabled: i.secureBoot };
  else if (i.secureBoot)
    policy.secureBoot = secureBootPolicy(i.secureBoot.dbCertificates, bank, i.secureBoot.variables);
  // Under Secure Boot systemd-stub starts its embedded kernel through a security override (the UKI that carries it
  // was verified already), which also skips the firmware's PCR 4 measurement of it (seen with OVMF and stub 252,
  // test/images/guest/secure-boot-disk.test.ts): the UKI alone is required — its digest covers .linux anyway.
  if (i.secureBoot && kernel) policy.bootApplications!.required = [digests[digests.length - 1]];
  return policy;
}
