// What binds the OS of an AWS SEV-SNP instance: the SNP launch digest covers only EC2's firmware and the vCPU
// count, so the OS is bound through NitroTPM — a measured-boot policy over events, with the PCRs authenticated
// either by a NitroTPM attestation document (AWS Nitro PKI, the default: runtime/attestation/aws) or by
// out-of-band AK pins. The document signs only the SHA-384 bank, so the policy is predicted/read in sha384.
import { ConfigError } from "../common/errors.js";
import type { Policy } from "../../runtime/protocol/policy.js";
import { bindsOs } from "../../runtime/attestation/tpm/boot-policy.js";
import { measuredBootArgs, measuredBootPolicy, type OsBindingArgs } from "../common/os-binding.js";
import { ekNameFromTpmt } from "../../runtime/attestation/aws/ek.js";
import { credentialEk } from "../../runtime/attestation/tpm/credential.js";

export interface AwsOsBindingArgs extends OsBindingArgs {
  /**
   * Require a NitroTPM attestation document with every attestation (default: true unless akPins are set). It
   * authenticates the quote's SHA-384 PCRs, so measuredBoot must use bank sha384 (bootChain predicts in it).
   */
  nitroTpmDocument?: boolean;
  /**
   * Registered EKs: the instance's NitroTPM EK as `aws ec2 get-instance-tpm-ek-pub --key-format tpmt --key-type
   * rsa-2048` returns it (base64 TPMT_PUBLIC). Each attestation must then pass EK credential activation
   * (`vtpm.ekPublics`: the AK activates a credential Nitride made for this EK, proving it lives in that TPM — AK
   * authentication, as far as the EC2 API is right about the EK), and the quote's signer must be an AK under it
   * (`vtpm.ekNames`, a consistency pin). The static form of `instanceEkPin`.
   */
  ekPublicTpmt?: string[];
  /**
   * Pin the workload to the instance this component creates (`vtpm.nitroTpm.instanceIds`: the NitroTPM document's
   * module_id must name it), so no other instance booted from the same image attests as this workload. The workload
   * is then registered right after the instance exists (the agent waits for it). Default true whenever the NitroTPM
   * document is required; `false` is the explicit opt-out (any instance of the image qualifies).
   */
  pinInstance?: boolean;
  /**
   * Read the instance's NitroTPM EK with EC2 GetInstanceTpmEkPub (deployer's credentials: ec2:GetInstanceTpmEkPub)
   * once the instance exists, and register it (`vtpm.ekPublics` + `vtpm.ekNames`): every attestation then passes EK
   * credential activation — the AK must prove it lives in this instance's NitroTPM. The automatic form of
   * `ekPublicTpmt`. Default true whenever the OS is bound through the vTPM (bootChain / measuredBoot): the cost is
   * one EC2 API call at deploy and one more round trip at boot, and it authenticates the AK itself, independently of
   * the NitroTPM document. `false` is the opt-out (e.g. a deployer without that IAM permission).
   */
  instanceEkPin?: boolean;
}

export function awsOsBinding(who: string, args: AwsOsBindingArgs): Policy["vtpm"] | undefined {
  const pins = args.akPins ?? [];
  pins.forEach((p, i) => {
    if (!/^[0-9a-fA-F]{64}$/.test(p)) throw new ConfigError(who, `akPins[${i}]`, "must be 64 hex digits (SHA-256)");
  });
  const document = args.nitroTpmDocument ?? pins.length === 0;
  const ekPublics: string[] = [];
  const ekNames = (args.ekPublicTpmt ?? []).map((b64, i) => {
    const der = Buffer.from(b64, "base64");
    let name: string;
    try {
      if (der.toString("base64") !== b64.replace(/\s+/g, "")) throw new Error("not base64");
      name = ekNameFromTpmt(der);
    } catch (e) {
      throw new ConfigError(who, `ekPublicTpmt[${i}]`, `is not a base64 TPMT_PUBLIC (${(e as Error).message})`);
    }
    try {
      credentialEk(der, `ekPublicTpmt[${i}]`);
    } catch (e) {
      throw new ConfigError(who, `ekPublicTpmt[${i}]`, `is not an endorsement key (${(e as Error).message})`);
    }
    ekPublics.push(der.toString("base64"));
    return name;
  });
  if (args.pinInstance !== undefined && typeof args.pinInstance !== "boolean")
    throw new ConfigError(who, "pinInstance", `is '${String(args.pinInstance)}'`, ["true", "false"]);
  if (args.pinInstance === true && !document)
    throw new ConfigError(
      who,
      "pinInstance",
      "needs nitroTpmDocument: the instance is named only by the NitroTPM document's module_id",
    );
  if (args.instanceEkPin !== undefined && typeof args.instanceEkPin !== "boolean")
    throw new ConfigError(who, "instanceEkPin", `is '${String(args.instanceEkPin)}'`, ["true", "false"]);
  const boot = measuredBootPolicy(who, measuredBootArgs(who, args, document ? "sha384" : "sha256"));
  if (args.instanceEkPin && !boot)
    throw new ConfigError(
      who,
      "instanceEkPin",
      "needs a vTPM OS binding (bootChain or measuredBoot): the EK pin is a vTPM check",
    );
  // Registered EKs authenticate the AK by credential activation (the instance's, read at deploy: instanceEkPin).
  const ekCredential = ekPublics.length > 0 || (args.instanceEkPin ?? true);
  const authenticated = pins.length > 0 || document || (ekCredential && !!boot);
  const bound = bindsOs(boot) && authenticated;
  if (!bound && args.allowUnboundOs !== true) {
    const why = !bindsOs(boot)
      ? "does not bind the OS: set bootChain (the image the VM boots: kit manifest or UKI) or measuredBoot with bootApplications.required / an exact PCR 4 value (PCR 11 only beside it)"
      : "binds boot events, but no vTPM attestation key is authenticated (akPins, nitroTpmDocument, or the instance's EK: instanceEkPin / ekPublicTpmt): a guest kernel at VMPL0 could bind a software TPM and replay the expected events";
    throw new ConfigError(
      who,
      bindsOs(boot) ? "akPins" : "measuredBoot",
      `${why}. The SNP/TDX launch digest covers only the provider's firmware and vCPU count, so any VM of this size that knows the workload id would attest as this workload. Set allowUnboundOs: true to register it anyway`,
    );
  }
  if (boot && document && pins.length === 0 && (boot.bank ?? "sha256") !== "sha384")
    throw new ConfigError(
      who,
      "measuredBoot.bank",
      `must be sha384 when the NitroTPM document authenticates the PCRs (it signs only the SHA-384 bank; a guest could pair real SHA-384 event digests with invented ${boot.bank ?? "sha256"} ones). Use bootChain, which predicts in sha384, or set akPins`,
    );
  if (!boot) return undefined;
  return {
    measuredBoot: boot,
    ...(pins.length ? { akPins: pins.map((p) => p.toLowerCase()) } : {}),
    ...(document ? { nitroTpm: {} } : {}),
    ...(ekNames.length ? { ekNames, ekPublics } : {}),
    ...(authenticated ? {} : { allowUnauthenticatedAk: true }),
  };
}
