// Deploy-time prediction of a cloud VM's boot-chain events from the image the program deploys (the kit's UKI,
// or its kernel + initrd + command line from an image manifest), through images/vtpm: the measured-boot policy
// the workload is registered with, so nobody pastes digests. Files are read on the machine running `pulumi up`;
// they must be the very bytes the VM boots (the AMI/disk built from the same image).
import { BootPredictionError, certificateDer, predictFromDisk, predictMeasuredBoot } from "../../images/vtpm/index.js";
import { kitCmdlineMustContain, parseManifest, readManifestFile, ManifestError } from "../../images/guest/manifest.js";
import { IMPORT_CREDENTIALS_OFF } from "../../images/guest/credentials.js";
import { ConfigError } from "./errors.js";
import { readInputFile } from "./input-file.js";
import type { MeasuredBootPolicy } from "../../runtime/attestation/tpm/boot-policy.js";

export interface BootChainArgs {
  /**
   * The kit image's manifest.json (`buckypaper image build`). Built with a cloud disk (`--cloud ec2|gce`, or
   * `--format disk`): the UKI read from that disk's EFI system partition (what the VM's firmware boots); otherwise
   * its kernel, initrd and command line (with the verity root hash).
   */
  manifest?: string;
  /** With `manifest`: the disk file the VM boots, when it is not at the manifest's `disk.path` (e.g. a copy). */
  disk?: string;
  /** A UKI (PE file): the boot application firmware (or a loader) runs; its Authenticode digest, .cmdline and PCR 11 are predicted. */
  uki?: string;
  /** An EFI-stub kernel booted without a UKI (with `initrd` and `cmdline`). */
  kernel?: string;
  initrd?: string;
  cmdline?: string;
  /** Boot applications that run before the kernel/UKI (shim, systemd-boot, grub), PE files in boot order. */
  loaders?: string[];
  /**
   * Substrings the command line must contain. With a kit manifest these come on top of what every kit boot needs
   * (its `bk.roothash=<root hash>`, `systemd.import_credentials=no`, `module_blacklist=qemu_fw_cfg`).
   */
  mustContain?: string[];
  /** Require Secure Boot on (PCR 7). */
  secureBoot?: boolean;
  /**
   * Secure Boot under your own keys: the db certificate(s) (PEM or DER files) the UKI is signed with
   * (`buckypaper image build --sign-key/--sign-cert`) and that the VM's firmware has enrolled in db. Registers
   * "Secure Boot on AND the boot verified by one of these certificates" (PCR 7 EV_EFI_VARIABLE_AUTHORITY,
   * measuredBoot.secureBoot.authorities); with a kit cloud disk, its UKI must carry a signature by one of them.
   * The enrollment itself is the image's: AWS `register-image --uefi-data`, GCE image `shieldedInstanceInitialState`,
   * an Azure Compute Gallery image version's `securityProfile.uefiSettings.additionalSignatures` (docs/images.md).
   */
  dbCertificates?: string[];
  /**
   * A UKI or kernel that is not the kit's must carry `systemd.import_credentials=no` on its command line (registered
   * in `kernelCmdline.mustContain`): systemd's PID 1 otherwise imports credentials the VMM hands it — SMBIOS type 11
   * strings the cloud or host sets, QEMU fw_cfg — which units act on as root (`ssh.authorized_keys.root`,
   * `passwd.*.root`, `tmpfiles.extra`), and no launch measurement or boot event covers them. Set this only for an
   * image whose init imports no credentials (not systemd, or systemd built without it): the host then decides.
   */
  allowHostCredentials?: boolean;
}

/**
 * The user-data source the kit image of `bootChain.manifest` was built for (`image build --cloud`, the manifest's
 * enclaivelet.userDataSource), or undefined when it records none (a runtime image, or one built before the field).
 */
export function manifestUserDataSource(who: string, manifest: string): string | undefined {
  try {
    return parseManifest(readInputFile(who, "bootChain.manifest", manifest).toString("utf8"), manifest).enclaivelet
      ?.userDataSource;
  } catch (e) {
    if (e instanceof ManifestError) throw new ConfigError(who, `bootChain.manifest (${e.field})`, e.message);
    throw e;
  }
}

/**
 * A kit cloud disk booted with Secure Boot on (GCE Shielded VM, Azure Trusted Launch/CVM turn it on) must carry a
 * UKI signed by a db certificate the image enrolls: the firmware refuses an unsigned one, so the VM would never boot.
 * Refused at preview, naming bootChain.dbCertificates, unless the program names the certificate (then the prediction
 * checks the disk's UKI carries its signature).
 */
export function requireSignedKitDisk(who: string, args: BootChainArgs | undefined, why: string): void {
  if (!args?.manifest || args.dbCertificates?.length) return;
  let m;
  try {
    m = parseManifest(readInputFile(who, "bootChain.manifest", args.manifest).toString("utf8"), args.manifest);
  } catch (e) {
    if (e instanceof ManifestError) throw new ConfigError(who, `bootChain.manifest (${e.field})`, e.message);
    throw e;
  }
  if (!m.disk) return;
  throw new ConfigError(
    who,
    "bootChain.dbCertificates",
    `is required: ${why}, and the firmware verifies the disk's UKI against db — ${m.disk.signature ? `this disk's UKI is signed by ${m.disk.signature.subject}; name that certificate here and enroll it in the image's db` : "this disk's UKI is unsigned, so the VM would not boot. Build it with `buckypaper image build --sign-key KEY --sign-cert CERT`, enroll CERT in the image's db and name it here"}`,
  );
}

/** The measured-boot policy (component input form) predicted for `args`, in `bank`. ConfigError names the field. */
export function predictBootChain(who: string, args: BootChainArgs, bank: "sha256" | "sha384"): MeasuredBootPolicy {
  const sources = [args.manifest, args.uki, args.kernel].filter((x) => x !== undefined).length;
  if (sources !== 1) throw new ConfigError(who, "bootChain", "needs exactly one of manifest, uki or kernel");
  if (args.dbCertificates !== undefined && args.secureBoot === false)
    throw new ConfigError(who, "bootChain.secureBoot", "is false, but dbCertificates require Secure Boot on");
  const dbCertificates = args.dbCertificates?.map((p, i) => {
    const f = `bootChain.dbCertificates[${i}]`;
    try {
      return certificateDer(readInputFile(who, f, p), f);
    } catch (e) {
      if (e instanceof BootPredictionError) throw new ConfigError(who, f, e.message.slice(e.field.length + 2));
      throw e;
    }
  });
  if (dbCertificates && dbCertificates.length === 0)
    throw new ConfigError(who, "bootChain.dbCertificates", "is empty (name the certificate the UKI is signed with)");
  const secureBoot = dbCertificates ? { dbCertificates } : args.secureBoot;
  const loaders = (args.loaders ?? []).map((p, i) => ({
    name: `loader ${i}`,
    image: readInputFile(who, `bootChain.loaders[${i}]`, p),
  }));
  try {
    if (args.manifest) {
      let m;
      try {
        m = parseManifest(readInputFile(who, "bootChain.manifest", args.manifest).toString("utf8"), args.manifest);
      } catch (e) {
        if (e instanceof ManifestError) throw new ConfigError(who, `bootChain.manifest (${e.field})`, e.message);
        throw e;
      }
      if (m.disk) {
        if (loaders.length)
          throw new ConfigError(who, "bootChain.loaders", "the kit's cloud disk boots its UKI directly (no loaders)");
        if (args.cmdline !== undefined || args.mustContain !== undefined)
          throw new ConfigError(who, "bootChain.cmdline", "the cloud disk's command line is its UKI's .cmdline");
        return predictFromDisk(args.manifest, m, bank, {
          ...(args.disk ? { diskPath: args.disk } : {}),
          ...(secureBoot !== undefined ? { secureBoot } : {}),
        }).policy;
      }
      if (args.disk) throw new ConfigError(who, "bootChain.disk", "the manifest records no cloud disk (--format disk)");
      const kernel = readManifestFile(args.manifest, m, "kernel");
      const initrd = readManifestFile(args.manifest, m, "initrd");
      return predictMeasuredBoot({
        bootApplications: [...loaders, { name: "kernel", image: kernel }],
        cmdline: args.cmdline ?? m.cmdline,
        initrd,
        // Added to, never replaced: a program's own mustContain cannot drop the root hash or the credential words.
        mustContain: [...new Set([...kitCmdlineMustContain(m), ...(args.mustContain ?? [])])],
        ...(secureBoot !== undefined ? { secureBoot } : {}),
        bank,
      });
    }
    // Not the kit's image: the credential word is required unless the program says its init imports none.
    const mustContain = [
      ...new Set([
        ...(args.allowHostCredentials === true ? [] : [IMPORT_CREDENTIALS_OFF]),
        ...(args.mustContain ?? []),
      ]),
    ];
    if (args.uki)
      return predictMeasuredBoot({
        bootApplications: [...loaders, { name: "uki", image: readInputFile(who, "bootChain.uki", args.uki) }],
        uki: args.cmdline !== undefined ? { cmdline: args.cmdline } : {},
        ...(mustContain.length ? { mustContain } : {}),
        ...(secureBoot !== undefined ? { secureBoot } : {}),
        bank,
      });
    return predictMeasuredBoot({
      bootApplications: [...loaders, { name: "kernel", image: readInputFile(who, "bootChain.kernel", args.kernel!) }],
      cmdline: args.cmdline,
      ...(args.initrd ? { initrd: readInputFile(who, "bootChain.initrd", args.initrd) } : {}),
      ...(mustContain.length ? { mustContain } : {}),
      ...(args.secureBoot !== undefined ? { secureBoot: args.secureBoot } : {}),
      bank,
    });
  } catch (e) {
    if (e instanceof BootPredictionError && !args.manifest && e.message.includes(`'${IMPORT_CREDENTIALS_OFF}'`))
      throw new ConfigError(
        who,
        "bootChain.cmdline",
        `must contain '${IMPORT_CREDENTIALS_OFF}' (the ${args.uki ? "UKI's .cmdline or bootChain.cmdline" : "kernel command line"}): ` +
          "otherwise systemd imports credentials the host or cloud passes through SMBIOS or fw_cfg, which act as root " +
          "(e.g. ssh.authorized_keys.root) before any secret arrives, and no measurement covers them. " +
          "Set bootChain.allowHostCredentials: true only if the image's init imports no credentials",
      );
    if (
      e instanceof BootPredictionError &&
      (e.field.startsWith("secureBoot.") || e.field === "manifest.disk.signature")
    )
      throw new ConfigError(
        who,
        e.field.startsWith("secureBoot.")
          ? `bootChain.${e.field.slice("secureBoot.".length)}`
          : "bootChain.dbCertificates",
        e.message.slice(e.field.length + 2),
      );
    if (e instanceof BootPredictionError) throw new ConfigError(who, `bootChain (${e.field})`, e.message);
    if (e instanceof ManifestError) throw new ConfigError(who, `bootChain.manifest (${e.field})`, e.message);
    if (e instanceof Error && e.name === "TdxInputError") throw new ConfigError(who, "bootChain", e.message);
    throw e;
  }
}
