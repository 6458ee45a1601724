// What binds an Azure confidential VM's OS. The launch measurement is Microsoft's paravisor and firmware (not
// predictable); the HCL report binds the paravisor's vTPM attestation key to the hardware report, so the OS is bound
// through that vTPM's quote — by boot EVENTS (azure.measuredBoot: the guest's event log replayed to the quote, then
// the UKI's Authenticode digest in PCR 4, its command line with the verity root hash, Secure Boot and the db
// certificate that verified the boot in PCR 7), predicted from the kit's Azure disk (`bootChain`) or given as
// `measuredBoot`; or by raw PCR values (`pcrs`, for images the kit cannot predict). Preview refuses a registration
// that binds none of them (PCR 11 alone binds nothing) unless the program sets the loud opt-out, and a kit image
// whose user-data is not measured (azureUserDataBinding).
import { ConfigError } from "../common/errors.js";
import { readInputFile } from "../common/input-file.js";
import {
  azureUserDataBinding,
  measuredBootArgs,
  measuredBootPolicy,
  type MeasuredBootArgs,
} from "../common/os-binding.js";
import { manifestUserDataSource, requireSignedKitDisk, type BootChainArgs } from "../common/boot-chain.js";
import { bindsOs, type MeasuredBootPolicy } from "../../runtime/attestation/tpm/boot-policy.js";
import { BootPredictionError, certificateSha256 } from "../../images/vtpm/index.js";

export interface AzureOsBindingArgs {
  pcrs?: Record<string, string[]>;
  measuredBoot?: MeasuredBootArgs;
  bootChain?: BootChainArgs;
  allowUnboundOs?: boolean;
  agentInImage?: boolean;
  allowUnboundUserData?: boolean;
  dbCertificates?: string[];
  /** The image the VM boots (a kit image's gallery version with agentInImage). */
  image?: unknown;
}

export interface AzureOsBinding {
  /** The user-data is measured by the agent in the kit image. */
  measured: boolean;
  /** The measured-boot policy to register (azure.measuredBoot), predicted from bootChain or given. */
  boot?: MeasuredBootPolicy;
  /** SHA-256 of the top-level dbCertificates (kit image registered by PCR values: enforced by the firmware only). */
  firmwareDbCertificates: string[];
  /** Whether the registration binds the OS (a required boot application / PCR 4 by event, or a PCR 4 value). */
  bound: boolean;
}

const SECURE_BOOT_ON =
  "the VM runs with Secure Boot on (securityProfile.uefiSettings.secureBootEnabled) and its firmware refuses the kit's UKI unless it is signed by a certificate in db — build the image with `buckypaper image build --cloud azure --sign-key KEY --sign-cert CERT`, enroll CERT in the gallery image version's securityProfile.uefiSettings.additionalSignatures.db, and name CERT here";

/** The kit image's user-data source must be Azure's; agentInImage defaults to true with such a manifest. */
function agentInImageDefault(who: string, args: AzureOsBindingArgs): boolean | undefined {
  const manifest = args.bootChain?.manifest;
  if (manifest === undefined) return args.agentInImage;
  const built = manifestUserDataSource(who, manifest);
  if (built !== "azure")
    throw new ConfigError(
      who,
      "bootChain.manifest",
      `is a kit image whose enclaivelet reads ${built ? `the '${built}'` : "no recorded"} user-data source (enclaivelet.userDataSource); an Azure VM needs one built with \`buckypaper image build --cloud azure\``,
      ["azure"],
    );
  return args.agentInImage ?? (args.allowUnboundUserData === true ? undefined : true);
}

/** The top-level dbCertificates: the kit image registered by PCR values (the firmware enforces them, no event). */
function firmwareDbCertificates(who: string, measured: boolean, args: AzureOsBindingArgs): string[] {
  const files = args.dbCertificates;
  if (files !== undefined && args.bootChain)
    throw new ConfigError(
      who,
      "dbCertificates",
      "goes into bootChain.dbCertificates with bootChain: there the db certificate is registered as the boot's Secure Boot authority (PCR 7 event) and the disk's UKI is checked to be signed by it",
    );
  if (files !== undefined && !measured)
    throw new ConfigError(who, "dbCertificates", "applies to the kit image (agentInImage: true)");
  if (!measured || args.bootChain) return [];
  if (!files?.length) throw new ConfigError(who, "dbCertificates", `is required with agentInImage: ${SECURE_BOOT_ON}`);
  return files.map((f, i) => {
    try {
      return certificateSha256(readInputFile(who, `dbCertificates[${i}]`, f), `dbCertificates[${i}]`);
    } catch (e) {
      if (e instanceof BootPredictionError) throw new ConfigError(who, e.field, e.message.slice(e.field.length + 2));
      throw e;
    }
  });
}

const UNBOUND =
  "without it any CVM running the same paravisor attests as this workload. Set allowUnboundOs: true to register it anyway";

/** The refusal for a registration by PCR values only (or nothing at all) that does not pin PCR 4. */
function pcrBindingError(who: string, pcrs: Record<string, string[]> | undefined): ConfigError {
  if (pcrs)
    return new ConfigError(
      who,
      "pcrs",
      ((pcrs["11"]?.length ?? 0) > 0 ? "pins PCR 11 without PCR 4; it " : "") +
        `must pin PCR 4 (the boot applications the firmware ran; PCR 11 of a UKI counts only beside it, since any OS can extend PCR 11 to the registered value) — or set bootChain / measuredBoot to bind the OS by boot events: ${UNBOUND}`,
    );
  return new ConfigError(
    who,
    "bootChain",
    `is required to bind the OS: the kit's Azure disk manifest (\`buckypaper image build --cloud azure\`, with bootChain.dbCertificates) from which the UKI's boot events are predicted — or measuredBoot, or pcrs with a PCR 4 value for an image the kit cannot predict; ${UNBOUND}`,
  );
}

export function azureOsBinding(who: string, args: AzureOsBindingArgs): AzureOsBinding {
  if (args.agentInImage !== undefined && typeof args.agentInImage !== "boolean")
    throw new ConfigError(who, "agentInImage", `is '${String(args.agentInImage)}'`, ["true", "false"]);
  const pcrs = args.pcrs;
  // PCR 4 (what the firmware ran); PCR 11 only beside it — software extends PCR 11, so any OS can reach a value.
  const pcr4 = !!pcrs && (pcrs["4"]?.length ?? 0) > 0;
  // Registered by PCR values alone (or by nothing): the OS question comes first, as it did before events.
  if (!args.bootChain && !args.measuredBoot && !pcr4 && args.allowUnboundOs !== true) throw pcrBindingError(who, pcrs);
  const measured = azureUserDataBinding(who, agentInImageDefault(who, args), args.allowUnboundUserData);
  if (measured && args.image === undefined)
    throw new ConfigError(
      who,
      "image",
      "must name the kit image built with `buckypaper image build --cloud azure` when agentInImage is true: the default (Canonical's CVM image) has no enclaivelet, so the guest would never attest",
    );
  const firmwareDb = firmwareDbCertificates(who, measured, args);
  // Azure CVMs always run with Secure Boot on: a kit disk's UKI must be signed by a db certificate the image enrolls,
  // and the kit image's prediction must name it, so that the authority is appraised by event.
  requireSignedKitDisk(
    who,
    args.bootChain,
    "the VM runs with Secure Boot on (securityProfile.uefiSettings.secureBootEnabled; enroll the certificate in the gallery image version's securityProfile.uefiSettings.additionalSignatures.db)",
  );
  if (measured && args.bootChain && !args.bootChain.dbCertificates?.length)
    throw new ConfigError(who, "bootChain.dbCertificates", `is required with agentInImage: ${SECURE_BOOT_ON}`);
  if (args.bootChain?.secureBoot === false)
    throw new ConfigError(who, "bootChain.secureBoot", "cannot be false on Azure: the component turns Secure Boot on");
  if (args.measuredBoot?.bank !== undefined && args.measuredBoot.bank !== "sha256")
    throw new ConfigError(
      who,
      "measuredBoot.bank",
      `is '${args.measuredBoot.bank}': the Azure vTPM quote carries the SHA-256 bank only`,
      ["sha256"],
    );
  const predicted = measuredBootArgs(who, { bootChain: args.bootChain, measuredBoot: args.measuredBoot }, "sha256");
  const boot = measuredBootPolicy(who, predicted);
  // A predicted policy without an explicit Secure Boot rule still states what the component turns on.
  if (boot && args.bootChain && !boot.secureBoot) boot.secureBoot = { enabled: true };
  const bound = bindsOs(boot) || pcr4;
  if (!bound && args.allowUnboundOs !== true)
    throw new ConfigError(
      who,
      args.bootChain ? "bootChain" : "measuredBoot",
      `does not bind the OS: it needs a required boot application (bootApplications.required, the UKI's Authenticode digest) or an exact PCR 4 value (PCR 11 only beside it); ${UNBOUND}`,
    );
  return { measured, ...(boot ? { boot } : {}), firmwareDbCertificates: firmwareDb, bound };
}

/** The attestationChain sentence on what this workload's boot events bind (only what its policy asks). */
export function bootEventsSummary(boot: MeasuredBootPolicy): string {
  const parts: string[] = [];
  if (boot.bootApplications?.required?.length)
    parts.push(
      `the boot application(s) ${boot.bootApplications.required.map((d) => d.slice(0, 16) + "…").join(", ")} required in PCR 4 (Authenticode) and no other than the ${boot.bootApplications.allowed.length} allowed`,
    );
  else if (boot.bootApplications) parts.push("only the allowed boot applications in PCR 4");
  if (boot.kernelCmdline)
    parts.push(
      `the kernel command line${boot.kernelCmdline.boundByUki ? " (inside the UKI)" : ""}${boot.kernelCmdline.mustContain?.some((w) => w.startsWith("bk.roothash=")) ? " with the verity root hash" : ""}`,
    );
  if (boot.initrd) parts.push("the initrd (PCR 9)");
  const exact = Object.keys(boot.pcrs ?? {});
  if (exact.length) parts.push(`exact PCR ${exact.join(", ")}`);
  if (boot.secureBoot?.enabled) parts.push("Secure Boot on (PCR 7)");
  return ` OS: bound by boot events (azure.measuredBoot: the guest's event log must replay to the HCL-bound AK's quote; ${parts.join("; ")}).`;
}
