// The vHSM runtime's image for a cloud confidential VM (AWS, GCE, Azure): the kit's runtime role built as a cloud disk
// (`buckypaper image build --role runtime --format disk --cloud ec2|gce|azure`), uploaded by the program as an AMI /
// GCE image / Azure Compute Gallery image version (from the fixed VHD). On Azure the launch digest is Microsoft's
// paravisor's, the same kind of firmware-only value. On these clouds the SEV-SNP launch digest covers only the provider's firmware and the vCPU count — the same
// for every customer's VM of that size — so what names THIS runtime is the boot chain the cloud's vTPM measures: the
// disk's UKI (its Authenticode digest covers kernel, initrd and the command line with the dm-verity root hash) and
// systemd-stub's PCR 11. That measured-boot policy is predicted here, at deploy time, from the very disk file
// (images/vtpm predictFromDisk: the UKI read out of the disk's EFI system partition and checked against the manifest).
// Checked at preview: a workload image, a runtime for the local stack's simulated PSP, an image without a cloud disk,
// or a disk whose UKI is not the manifest's is refused naming the field.
import path from "node:path";
import { BootPredictionError, certificateDer, predictFromDisk, type DiskPrediction } from "../../images/vtpm/index.js";
import { ManifestError, parseManifest, type ImageManifest } from "../../images/guest/manifest.js";
import type { MeasuredBootPolicy } from "../../runtime/attestation/tpm/boot-policy.js";
import { ConfigError } from "./errors.js";
import { readInputFile } from "./input-file.js";

export interface CloudRuntimeImage {
  manifestPath: string;
  manifest: ImageManifest;
  /** The measured-boot policy the runtime's vTPM evidence must meet (predicted from the disk's UKI). */
  measuredBoot: MeasuredBootPolicy;
  /** SHA-256 of the UKI on the disk (what the summary names). */
  ukiSha256: string;
  /** Whose AK the runtime quotes with, as the manifest records it (runtime.vtpm.ak; absent in older manifests). */
  ak?: "runtime-ak" | "google-ak" | "hcl-ak";
}

/** The runtime-role cloud disk at `manifestPath`; ConfigError names `field` and what is wrong. */
export function cloudRuntimeImage(
  who: string,
  field: string,
  manifestPath: string,
  o: {
    /** The bank the policy is predicted in; a function chooses it by the AK the manifest records (before predicting). */
    bank: "sha256" | "sha384" | ((ak: string | undefined) => "sha256" | "sha384");
    cloud: "ec2" | "gce" | "azure";
    diskPath?: string;
    /** Files of the db certificates the UKI is signed with (field `dbCertificates`): Secure Boot under that authority. */
    dbCertificates?: string[];
    /** Why Secure Boot is on (GCE Shielded VM): then dbCertificates are required, since an unsigned UKI never boots. */
    secureBootOn?: string;
  },
): CloudRuntimeImage {
  if (!path.isAbsolute(manifestPath))
    throw new ConfigError(who, field, `is '${manifestPath}'; must be the absolute path of a manifest.json`);
  let m: ImageManifest;
  try {
    m = parseManifest(readInputFile(who, field, manifestPath).toString("utf8"), manifestPath);
  } catch (e) {
    if (e instanceof ManifestError) throw new ConfigError(who, `${field} (${e.field})`, e.message);
    throw e;
  }
  // Azure: no /dev/sev-guest; the runtime attests with the paravisor's HCL report through the vTPM.
  const wantPsp = o.cloud === "azure" ? "azure-hcl" : "sev-guest";
  const build = `buckypaper image build --role runtime --runtime-psp ${wantPsp} --format disk --cloud ${o.cloud}`;
  if (m.role !== "runtime" || !m.runtime)
    throw new ConfigError(
      who,
      field,
      `'${manifestPath}' is a workload image (role ${m.role ?? "workload"}); the vHSM boots the runtime role: ${build}`,
      ["runtime"],
    );
  const psp = m.runtime.psp ?? "virtio-psp";
  if (psp !== wantPsp)
    throw new ConfigError(
      who,
      `${field} (runtime.psp)`,
      psp === "virtio-psp"
        ? `is '${psp}': that runtime gets its evidence from the local stack's simulated PSP, which a cloud VM does not have; build it with ${build}`
        : `is '${psp}': that runtime asks for evidence where ${o.cloud === "azure" ? "an Azure CVM has none (/dev/sev-guest: the paravisor owns the PSP)" : "this cloud has none (the Azure paravisor's HCL report)"}; build it with ${build}`,
      [wantPsp],
    );
  // Recorded by `image build --role runtime --cloud` (absent in manifests from before the fields: not checked then).
  const rt = m.runtime;
  if (rt.cloud !== undefined && rt.cloud !== o.cloud)
    throw new ConfigError(
      who,
      `${field} (runtime.cloud)`,
      `is '${rt.cloud}': that disk's runtime reads another cloud's vTPM and metadata; build it with ${build}`,
      [o.cloud],
    );
  if (rt.unseal !== undefined && rt.unseal !== "shares")
    throw new ConfigError(
      who,
      `${field} (runtime.unseal)`,
      `is '${rt.unseal}': on a cloud the SNP measurement is the firmware's only, so a key derived from it would open the barrier on any VM of that size; the runtime must unseal by the operators' shares`,
      ["shares"],
    );
  const ak = o.cloud === "gce" ? "google-ak" : o.cloud === "azure" ? "hcl-ak" : "runtime-ak";
  if (rt.vtpm !== undefined && rt.vtpm.ak !== ak)
    throw new ConfigError(who, `${field} (runtime.vtpm.ak)`, `is '${rt.vtpm.ak}'`, [ak]);
  if (!m.disk)
    throw new ConfigError(
      who,
      `${field} (disk)`,
      `'${manifestPath}' records no cloud disk: a cloud VM boots the disk's UKI from its EFI system partition (the cloud's firmware, not a direct kernel boot); build it with ${build}`,
    );
  const certs = o.dbCertificates?.map((f, i) => {
    try {
      return certificateDer(readInputFile(who, `dbCertificates[${i}]`, f), `dbCertificates[${i}]`);
    } catch (e) {
      if (e instanceof BootPredictionError) throw new ConfigError(who, `dbCertificates[${i}]`, e.message);
      throw e;
    }
  });
  if (certs && certs.length === 0)
    throw new ConfigError(who, "dbCertificates", "is empty (name the certificate the runtime's UKI is signed with)");
  if (!certs && o.secureBootOn)
    throw new ConfigError(
      who,
      "dbCertificates",
      `is required: ${o.secureBootOn}, and the firmware verifies the disk's UKI against db — ${m.disk.signature ? `this disk's UKI is signed by ${m.disk.signature.subject}; name that certificate here and enroll it in the image's db` : "this disk's UKI is unsigned, so the VM would not boot. Build it with `buckypaper image build --sign-key KEY --sign-cert CERT`, enroll CERT in the image's db and name it here"}`,
    );
  let p: DiskPrediction;
  try {
    // Without dbCertificates Secure Boot is not in the policy (AWS boots an unsigned UKI): what binds the OS is the
    // UKI's Authenticode digest in PCR 4 and PCR 11. With them: Secure Boot on, the boot verified by that authority.
    const bank = typeof o.bank === "function" ? o.bank(rt.vtpm?.ak) : o.bank;
    p = predictFromDisk(manifestPath, m, bank, {
      ...(o.diskPath ? { diskPath: o.diskPath } : {}),
      ...(certs ? { secureBoot: { dbCertificates: certs } } : {}),
    });
  } catch (e) {
    if (e instanceof BootPredictionError && e.field === "manifest.disk.signature")
      throw new ConfigError(who, "dbCertificates", e.message.slice(e.field.length + 2));
    if (e instanceof BootPredictionError) throw new ConfigError(who, `${field} (${e.field})`, e.message);
    throw e;
  }
  return {
    manifestPath,
    manifest: m,
    measuredBoot: p.policy,
    ukiSha256: m.disk.uki.sha256,
    ...(rt.vtpm ? { ak: rt.vtpm.ak } : {}),
  };
}
