// Does a cloud workload's registration bind the OS, and what does each cloud's evidence really prove? On AWS and
// GCE the SNP/TDX launch digest covers only the provider's firmware and the vCPU count — the same for every
// customer's VM of that size — so the OS must be bound through the vTPM: a measured-boot policy over events
// AND an attestation key authenticated as the cloud's vTPM. Without both, any VM of the same size that knows
// the workload id (it is in user-data and tags) could attest as this workload; preview refuses that unless the
// program sets `allowUnboundOs: true`.
import { ConfigError } from "./errors.js";
import { Platform } from "./types.js";
import type { Policy } from "../../runtime/protocol/policy.js";
import { bindsOs, type MeasuredBootPolicy } from "../../runtime/attestation/tpm/boot-policy.js";
import { manifestUserDataSource, predictBootChain, type BootChainArgs } from "./boot-chain.js";

/**
 * The measured-boot policy as component input: the same fields as the runtime's MeasuredBootPolicy, spelled as
 * plain interfaces because Pulumi's schema analyzer (which generates the other-language SDKs) accepts neither
 * string-literal unions nor mapped/intersection types. `bank` is checked at preview.
 */
export interface BootApplicationsArgs {
  /** Digests any boot application may have. */
  allowed: string[];
  /** Digests that must each appear (e.g. the kit's UKI or kernel). */
  required?: string[];
}

export interface KernelCmdlineArgs {
  /** Allowed command lines; every measured command line must be one of them. */
  allowed: string[];
  /** Substrings each measured command line must contain (e.g. "roothash=<hex>"). */
  mustContain?: string[];
  /** A UKI's PE digest (bootApplications.required) covers its .cmdline. */
  boundByUki?: boolean;
}

export interface SecureBootArgs {
  enabled?: boolean;
  /** SHA-256 (hex) of the db certificates (DER) allowed to have verified the boot (EV_EFI_VARIABLE_AUTHORITY). */
  authorities?: string[];
  PK?: string;
  KEK?: string;
  db?: string;
  dbx?: string;
}

export interface MeasuredBootArgs {
  /** PCR bank of the values: sha1, sha256 (default), sha384 or sha512. */
  bank?: string;
  /** PCR 4 boot applications, PE Authenticode digests (hex). */
  bootApplications?: BootApplicationsArgs;
  /** Allowed kernel command lines, substrings each must contain, and whether a UKI's PE digest covers it. */
  kernelCmdline?: KernelCmdlineArgs;
  /** Allowed initrd digests (hex) measured by the Linux EFI stub in PCR 9. */
  initrd?: string[];
  /** Secure Boot state and digests (hex) of the PK, KEK, db and dbx variables' data. */
  secureBoot?: SecureBootArgs;
  /** Exact PCR values (hex) for PCRs that are predictable as a whole, by PCR index. */
  pcrs?: { [index: string]: string };
}

const BANKS = ["sha1", "sha256", "sha384", "sha512"] as const;

export function measuredBootPolicy(who: string, args: MeasuredBootArgs | undefined): MeasuredBootPolicy | undefined {
  if (!args) return undefined;
  const { bank, ...rest } = args;
  if (bank !== undefined && !(BANKS as readonly string[]).includes(bank))
    throw new ConfigError(who, "measuredBoot.bank", `must be one of ${BANKS.join(", ")} (got "${bank}")`);
  (args.secureBoot?.authorities ?? []).forEach((a, i) => {
    if (!/^[0-9a-fA-F]{64}$/.test(a))
      throw new ConfigError(
        who,
        `measuredBoot.secureBoot.authorities[${i}]`,
        "must be 64 hex digits (SHA-256 of a DER certificate)",
      );
  });
  if (args.secureBoot?.authorities && args.secureBoot.enabled === false)
    throw new ConfigError(who, "measuredBoot.secureBoot.enabled", "is false, but authorities require Secure Boot on");
  return { ...rest, ...(bank !== undefined ? { bank: bank as (typeof BANKS)[number] } : {}) };
}

export interface OsBindingArgs {
  /** Expected boot-chain events (images/ prediction): boot applications (PCR 4), command line, Secure Boot. */
  measuredBoot?: MeasuredBootArgs;
  /** The image the VM boots (kit manifest, UKI or kernel): measuredBoot is predicted from it (images/vtpm). */
  bootChain?: BootChainArgs;
  /** SHA-256 of the vTPM AK(s) (TPM2B_PUBLIC) authenticated out of band (GCE AK certificate / NitroTPM document). */
  akPins?: string[];
  /** LOUD opt-out: register a workload whose evidence does not bind the OS. */
  allowUnboundOs?: boolean;
  /**
   * The VM boots an image that runs the enclaivelet from its measured root before cloud-init's user stages (the kit
   * image's `enclaivelet-measured.service` for this cloud's user-data source, `--user-data ec2|gce`): the user-data
   * then carries only the agent's config, its SHA-256 is registered with the workload and bound into REPORT_DATA
   * together with the vTPM AK (binding `buckypaper-vtpm-v2`), so a changed user-data — a runcmd injected by whoever
   * can edit the instance's metadata — is refused (`nitride.user-data`). Default: true with a `bootChain.manifest`
   * built for this cloud (`buckypaper image build --cloud ec2` for AWS, `--cloud gce` for GCP: the manifest's
   * enclaivelet.userDataSource), else false, and then the user-data is NOT bound (said in `attestationChain`).
   */
  agentInImage?: boolean;
}

/**
 * Whether the user-data is measured (agentInImage; default on when the VM boots a kit image built for this cloud's
 * user-data source). A kit manifest built for another source is refused at preview: its agent reads another
 * source (and fails, so the guest never runs cloud-init) and its cloud-init accepts only that other datasource.
 */
export function measuresUserData(who: string, args: OsBindingArgs, source: "ec2" | "gce"): boolean {
  if (args.agentInImage !== undefined && typeof args.agentInImage !== "boolean")
    throw new ConfigError(who, "agentInImage", `is '${String(args.agentInImage)}'`, ["true", "false"]);
  const manifest = args.bootChain?.manifest;
  if (manifest === undefined) return args.agentInImage ?? false;
  const built = manifestUserDataSource(who, manifest);
  if (built !== source)
    throw new ConfigError(
      who,
      "bootChain.manifest",
      `is a kit image whose enclaivelet reads ${built ? `the '${built}'` : "no recorded"} user-data source (enclaivelet.userDataSource); this cloud needs one built with \`buckypaper image build --cloud ${source}\``,
      [source],
    );
  return args.agentInImage ?? true;
}

/** The `attestationChain` sentence on the user-data of this workload. */
export function userDataSummary(measured: boolean, platform: "AWS" | "GCP" | "Azure"): string {
  if (platform === "Azure")
    return measured
      ? " User-data: bound (its SHA-256 is registered; the agent in the image reads the customData cloud-init took from the OVF and binds its hash into the vTPM quote's extraData, signed by the HCL-bound AK, before cloud-init runs it)."
      : " User-data: NOT bound (allowUnboundUserData: cloud-init runs whatever customData the platform delivers, as root, and the workload still attests).";
  return measured
    ? " User-data: bound (its SHA-256 is registered and bound into REPORT_DATA with the vTPM AK; the agent in the image reads it before cloud-init runs it)."
    : ` User-data: NOT bound (agentInImage is off: cloud-init runs whatever ${platform === "AWS" ? "the instance's user-data" : "the instance metadata's user-data"} says, as root).`;
}

/**
 * Azure: the user-data must be measured. The guest cannot choose the SNP/TDX REPORT_DATA there (the paravisor's), so
 * the user-data is bound only by the agent in the image (`buckypaper image build --cloud azure`: it reads the
 * customData cloud-init executes and binds its hash into the AK-signed quote); without it the cloud operator can add
 * a runcmd to the customData and the workload still attests. Refused at preview, naming agentInImage, unless the
 * program sets the loud opt-out. Returns whether the user-data is measured.
 */
export function azureUserDataBinding(who: string, agentInImage?: boolean, allowUnboundUserData?: boolean): boolean {
  if (agentInImage !== undefined && typeof agentInImage !== "boolean")
    throw new ConfigError(who, "agentInImage", `is '${String(agentInImage)}'`, ["true", "false"]);
  if (allowUnboundUserData !== undefined && typeof allowUnboundUserData !== "boolean")
    throw new ConfigError(who, "allowUnboundUserData", `is '${String(allowUnboundUserData)}'`, ["true", "false"]);
  if (agentInImage === true) {
    if (allowUnboundUserData === true)
      throw new ConfigError(
        who,
        "allowUnboundUserData",
        "contradicts agentInImage: true (the user-data is bound); drop one",
      );
    return true;
  }
  if (allowUnboundUserData !== true)
    throw new ConfigError(
      who,
      "agentInImage",
      "must be true (the VM boots a kit image built with `buckypaper image build --cloud azure`, whose agent measures the customData before cloud-init runs it): otherwise the cloud operator can change the customData — cloud-init runs it as root — and the workload still attests. Set allowUnboundUserData: true to register it anyway",
    );
  return false;
}

/** The `attestationChain` sentence on Secure Boot (PCR 7) of a measured-boot policy, or "" when it asks nothing. */
export function secureBootSummary(boot: MeasuredBootPolicy | undefined): string {
  const sb = boot?.secureBoot;
  if (!sb) return "";
  if (sb.authorities?.length)
    return ` Secure Boot: on, and the boot verified by db certificate ${sb.authorities.join(" or ")} (PCR 7 authority event; the image enrolls the keys).`;
  return sb.enabled ? " Secure Boot: on (PCR 7), by whichever keys the image enrolls." : "";
}

/** Per-cloud honesty summary, carried in every component's outputs (docs/attestation-chain.md). */
export const ATTESTATION_CHAIN: Record<Platform.Aws | Platform.Gcp | Platform.Azure, string> = {
  [Platform.Aws]:
    "CPU vendor key (AMD VLEK): memory encryption, EC2 firmware + vCPU count, REPORT_DATA (nonce, key, vTPM AK). " +
    "AWS Nitro PKI (NitroTPM attestation document, pinned AWS Nitro root G1; NitroTPM is AWS's, outside the SNP TCB): " +
    "the NitroTPM's SHA-384 PCRs for this attestation's nonce → boot events (UKI/kernel Authenticode, PCR 11, command line " +
    "with the verity root hash), or an out-of-band akPins pin; with the document, the instance (module_id) unless " +
    "pinInstance is false. Without measuredBoot: kernel, initrd, command line, root fs. The per-workload sentences " +
    "below say what this workload binds.",
  [Platform.Gcp]:
    "CPU vendor key (AMD VCEK / Intel PCK): memory encryption, Google firmware + vCPU count (launch digest / MRTD), " +
    "REPORT_DATA (nonce, key, vTPM AK). Google's TCB signing key (launch endorsement, verified by the runtime against its " +
    "configured GCE-cc-tcb-root): that the digest is Google's firmware for this shape, its SVN. Google's EK/AK CA (pinned " +
    "roots; the vTPM is Google's, outside the SNP/TDX TCB): the AK certificate → the quote's PCRs → boot events (UKI/kernel " +
    "Authenticode, command line with the verity root hash) and the certificate's instance identity (production, project, " +
    "zone, and the instance unless pinInstance is false). Without measuredBoot: kernel, initrd, command line, root fs. " +
    "The per-workload sentences below say what this workload binds.",
  [Platform.Azure]:
    "CPU vendor key (AMD VCEK / Intel PCK): memory encryption, Microsoft paravisor (HCL) + UEFI; the HCL binds the vTPM AK. " +
    "Microsoft paravisor + vTPM (trusted, inside Azure's TCB, not verified by the CPU): the AK-signed quote whose extraData " +
    "binds Nitride's nonce, the workload key and (with agentInImage) the user-data hash → with bootChain/measuredBoot the " +
    "guest's event log replayed to the quoted PCRs → boot events (UKI Authenticode digest in PCR 4, command line with the " +
    "verity root hash, PCR 11, Secure Boot and the db certificate that verified the boot in PCR 7); or PCR values " +
    "(policy.azure.pcrs). The launch measurement is not predictable. The per-workload sentences below say what this " +
    "workload binds.",
};

/**
 * The vTPM policy to register for an AWS/GCE workload, or a ConfigError (at preview) naming what is missing.
 * Returns undefined when neither a measured-boot policy nor an opt-out asks for vTPM evidence.
 */
export function awsGcpOsBinding(who: string, args: OsBindingArgs): Policy["vtpm"] | undefined {
  const boot = measuredBootPolicy(who, measuredBootArgs(who, args, "sha256"));
  const pins = args.akPins ?? [];
  pins.forEach((p, i) => {
    if (!/^[0-9a-fA-F]{64}$/.test(p)) throw new ConfigError(who, `akPins[${i}]`, "must be 64 hex digits (SHA-256)");
  });
  const bound = bindsOs(boot) && pins.length > 0;
  if (!bound && args.allowUnboundOs !== true) {
    const why = !bindsOs(boot)
      ? "does not bind the OS: set measuredBoot with bootApplications.required (the kernel/UKI Authenticode digests from images/) or an exact PCR 4 value (PCR 11 only beside it)"
      : "binds boot events, but no vTPM attestation key is authenticated (akPins): a guest kernel at VMPL0 could bind a software TPM and replay the expected events";
    throw new ConfigError(
      who,
      bindsOs(boot) ? "akPins" : "measuredBoot",
      `${why}. The SNP/TDX launch digest covers only the provider's firmware and vCPU count, so any VM of this size that knows the workload id would attest as this workload. Set allowUnboundOs: true to register it anyway`,
    );
  }
  if (!boot) return undefined;
  return {
    measuredBoot: boot,
    ...(pins.length ? { akPins: pins.map((p) => p.toLowerCase()) } : {}),
    ...(pins.length ? {} : { allowUnauthenticatedAk: true }),
  };
}

/** measuredBoot as given, or predicted from bootChain in `bank` (not both). */
export function measuredBootArgs(
  who: string,
  args: OsBindingArgs,
  bank: "sha256" | "sha384",
): MeasuredBootArgs | undefined {
  if (args.bootChain && args.measuredBoot)
    throw new ConfigError(
      who,
      "bootChain",
      "and measuredBoot are exclusive: set the image to predict from, or the events",
    );
  return args.bootChain ? predictBootChain(who, args.bootChain, bank) : args.measuredBoot;
}
