// The Vhsm component's `confidential-vm` mode on Azure: the runtime's Azure disk (the kit's runtime role, `image build
// --role runtime --format disk --cloud azure`, its fixed VHD made by the program into a Compute Gallery image version
// with the ConfidentialVM security type and the db certificate enrolled in uefiSettings.additionalSignatures) on a
// DCasv5/ECasv5 SEV-SNP confidential VM with the workload component's settings (ConfidentialVM, Secure Boot and vTPM
// on, OS disk encrypted with the VM guest state). The guest has no /dev/sev-guest: the runtime attests with the
// paravisor's HCL report and the HCL AK's quote (runtime `attestation "azure"`). What the deployer requires of it
// (the `attestation` every client verifies before sending anything):
//   - the SNP launch digest of Microsoft's paravisor (`paravisorMeasurements`, the program's: Azure publishes no
//     endorsement the kit can verify) — the same for every CVM of the size, so it alone names no OS;
//   - the OS by events (`policy.azure.measuredBoot`): the TCG event log replayed to the HCL AK's quote must show the
//     runtime disk's UKI (its Authenticode digest covers kernel, initrd and the command line with the dm-verity root)
//     verified by Secure Boot under the dbCertificates authority — predicted here from the very disk file;
//   - the vm-configuration the HCL report carries: Secure Boot on, the serial console off (unless
//     allowSerialConsole: the image masks every getty, so the console gives no login), and the VM id (vmUniqueId) of
//     THIS VM as the Azure API reports it — a VM another party launched from the same image is refused.
// The image is specialized: no osProfile, so no customData and no provisioning agent (the runtime image runs neither
// cloud-init nor waagent, and its config is part of its measured image); nothing secret reaches the VM's definition.
// Unseal: no derived key exists under the paravisor; the runtime unseals with the operators' recovery shares (or its
// peers), and `pulumi up` unseals it with the shares this machine can open.
import * as pulumi from "@pulumi/pulumi";
import * as network from "@pulumi/azure-native/network/index.js";
import * as compute from "@pulumi/azure-native/compute/index.js";
import { ConfigError } from "../common/errors.js";
import { catalogVcpus } from "../common/catalog.js";
import { cloudRuntimeImage } from "../common/cloud-runtime-image.js";
import { Platform, Tee } from "../common/types.js";
import { RUNTIME_GUEST_PORT } from "../../images/guest/runtime-role.js";
import type { Policy } from "../../runtime/protocol/policy.js";
import type { RuntimeAttestation } from "../../runtime/client/connection.js";
import type { CloudVhsmGuest } from "../aws/vhsm-guest.js";
import { azureVmArgs } from "./settings.js";

export interface AzureVhsmGuestArgs {
  who: string;
  name: string;
  /** The runtime image's manifest.json (field `image`). */
  image: string;
  /** The Compute Gallery image version the program created from the manifest's disk.vhd (field `cloudImageId`). */
  cloudImageId: pulumi.Input<string>;
  vmSize: string;
  resourceGroupName: pulumi.Input<string>;
  location?: pulumi.Input<string>;
  subnetId: pulumi.Input<string>;
  publicHost?: pulumi.Input<string>;
  /** SNP launch digests (96 hex) of Microsoft's paravisor the runtime's VM may run under (field `paravisorMeasurements`). */
  paravisorMeasurements: string[];
  /** db certificates the UKI is signed with and the gallery image version enrolls (required: Secure Boot is on). */
  dbCertificates?: string[];
  /** Accept vm-configuration "console-enabled": true (Azure's default unless the serial console is disabled). */
  allowSerialConsole?: boolean;
  osDiskSizeGb: number;
  /** GiB of the runtime's data disk (Premium SSD; the runtime's barrier encrypts inside it). */
  dataDiskGb: number;
  tags?: Record<string, pulumi.Input<string>>;
}

const GALLERY_VERSION =
  /^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.Compute\/galleries\/[^/]+\/images\/[^/]+\/versions\/[^/]+$/i;

export function azureVhsmGuest(parent: pulumi.Resource, a: AzureVhsmGuestArgs): CloudVhsmGuest {
  const vcpus = catalogVcpus(a.who, "size", Platform.Azure, a.vmSize, Tee.SevSnp);
  const measurements = a.paravisorMeasurements.map((m, i) => {
    if (!/^[0-9a-fA-F]{96}$/.test(m))
      throw new ConfigError(a.who, `paravisorMeasurements[${i}]`, "must be 96 hex digits (48 bytes)");
    return m.toLowerCase();
  });
  if (measurements.length === 0)
    throw new ConfigError(
      a.who,
      "paravisorMeasurements",
      "is empty: give the SNP launch digest of the Azure paravisor the runtime's VM runs under",
    );
  const image = cloudRuntimeImage(a.who, "image", a.image, {
    bank: "sha256",
    cloud: "azure",
    ...(a.dbCertificates !== undefined ? { dbCertificates: a.dbCertificates } : {}),
    secureBootOn:
      "an Azure confidential VM runs with Secure Boot on (securityProfile.uefiSettings.secureBootEnabled; the gallery image version's securityProfile.uefiSettings.additionalSignatures.db must hold the certificate)",
  });
  if (typeof a.cloudImageId === "string" && !GALLERY_VERSION.test(a.cloudImageId))
    throw new ConfigError(
      a.who,
      "cloudImageId",
      `is '${a.cloudImageId}'; must be the resource id of the Compute Gallery image version (/subscriptions/…/galleries/…/images/…/versions/…) the program created from the runtime disk's VHD (${image.manifest.disk!.vhd?.path ?? "disk.vhd"}), security type ConfidentialVM, with the db certificate enrolled`,
    );
  const tags = { "buckypaper-vhsm": a.name, ...a.tags };
  // The deployer reaches the runtime at a static public address unless the program names the one it uses.
  const pip =
    a.publicHost === undefined
      ? new network.PublicIPAddress(
          `${a.name}-ip`,
          {
            resourceGroupName: a.resourceGroupName,
            location: a.location,
            publicIPAllocationMethod: "Static",
            sku: { name: "Standard" },
            tags,
          },
          { parent },
        )
      : undefined;
  const nic = new network.NetworkInterface(
    `${a.name}-nic`,
    {
      resourceGroupName: a.resourceGroupName,
      location: a.location,
      ipConfigurations: [
        {
          name: "primary",
          subnet: { id: a.subnetId },
          privateIPAllocationMethod: "Dynamic",
          ...(pip ? { publicIPAddress: { id: pip.id } } : {}),
        },
      ],
      tags,
    },
    { parent },
  );
  // The runtime's storage: a blank disk at LUN 0 the runtime image formats with the label bkdata on first boot
  // (images/guest/runtime-role.ts RUNTIME_CLOUD_DATA_SCRIPT); it holds the barrier's ciphertext.
  const disk = new compute.Disk(
    `${a.name}-data`,
    {
      resourceGroupName: a.resourceGroupName,
      location: a.location,
      creationData: { createOption: "Empty" },
      diskSizeGB: a.dataDiskGb,
      sku: { name: "Premium_LRS" },
      tags,
    },
    { parent },
  );
  // The workload component's settings (ConfidentialVM, Secure Boot, vTPM, DiskWithVMGuestState), but from the
  // gallery image by id and without osProfile: a specialized image needs no provisioning, and none may run here.
  const { osProfile: _noProvisioning, ...settings } = azureVmArgs({
    resourceGroupName: a.resourceGroupName,
    location: a.location,
    vmSize: a.vmSize,
    image: { publisher: "", offer: "", sku: "", version: "" },
    computerName: a.name,
    adminUsername: "unused",
    customDataBase64: "",
    networkInterfaceId: nic.id,
    osDiskSizeGb: a.osDiskSizeGb,
    dataDiskId: disk.id,
    tags,
  });
  const vm = new compute.VirtualMachine(
    `${a.name}-vm`,
    { ...settings, storageProfile: { ...settings.storageProfile, imageReference: { id: a.cloudImageId } } },
    { parent },
  );
  const host = a.publicHost !== undefined ? pulumi.output(a.publicHost) : pip!.ipAddress.apply((x) => x ?? "");
  const url = host.apply((h) => {
    if (!h)
      throw new ConfigError(
        a.who,
        "publicHost",
        "is not set and the public IP address has none: give the address the deployer reaches the runtime at",
      );
    return `https://${h.includes(":") ? `[${h}]` : h}:${RUNTIME_GUEST_PORT}`;
  });
  const attestation = vm.vmId.apply((vmId): RuntimeAttestation => {
    if (!vmId) throw new ConfigError(a.who, "cloudImageId", "Azure returned no vmId for the runtime's VM");
    const policy: Policy = {
      // Azure CVMs: policy 0x3001f (SMT allowed, debug and migration agent off); the HCL report is the paravisor's,
      // requested at VMPL0.
      snp: { allowDebug: false, allowMigrationAgent: false, vmpl: 0 },
      azure: {
        measuredBoot: image.measuredBoot,
        requireSecureBoot: true,
        forbidConsole: a.allowSerialConsole !== true,
        vmUniqueIds: [vmId],
      },
    };
    return {
      snpMeasurements: measurements,
      // No customer HOST_DATA on Azure: the instance is named by its vmUniqueId and, once bootstrapped, by the runtime
      // instance id.
      allowAnyInstance: true,
      policy: JSON.stringify(policy),
      kds: "online",
    };
  });
  const launch = vm.vmId.apply((id) => `azure:${id}:${image.ukiSha256}:${measurements.join(",")}`);
  return {
    expectedMeasurements: measurements,
    image,
    url,
    attestation,
    launch,
    vm,
    vcpus,
    where: vm.name.apply(
      (n) => `Azure VM ${n} (az vm boot-diagnostics get-boot-log: the guest's console, where boot diagnostics are on)`,
    ),
  };
}
