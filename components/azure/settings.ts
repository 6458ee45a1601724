// Azure confidential VM settings: security type ConfidentialVM with the OS disk and the VM guest state
// encrypted together (DiskWithVMGuestState), vTPM and secure boot on, a confidential image, and the
// user-data as customData (cloud-init reads it; it cannot change after creation).
import type * as pulumi from "@pulumi/pulumi";
import type * as compute from "@pulumi/azure-native/compute/index.js";

export interface AzureImageReference {
  publisher: string;
  offer: string;
  sku: string;
  version: string;
}

export interface AzureVmInputs {
  resourceGroupName: pulumi.Input<string>;
  location?: pulumi.Input<string>;
  vmSize: string;
  /** A marketplace image, or a gallery image version by resource id (AzureKitImage). */
  image: AzureImageReference | { id: pulumi.Input<string> };
  computerName: string;
  adminUsername: string;
  sshPublicKey?: pulumi.Input<string>;
  customDataBase64: pulumi.Input<string>;
  networkInterfaceId: pulumi.Input<string>;
  osDiskSizeGb: number;
  /** Managed disk attached as LUN 0 (the encrypted data volume). */
  dataDiskId?: pulumi.Input<string>;
  tags: Record<string, pulumi.Input<string>>;
}

export function azureVmArgs(i: AzureVmInputs): compute.VirtualMachineArgs {
  return {
    resourceGroupName: i.resourceGroupName,
    location: i.location,
    hardwareProfile: { vmSize: i.vmSize },
    securityProfile: {
      securityType: "ConfidentialVM",
      uefiSettings: { secureBootEnabled: true, vTpmEnabled: true },
    },
    storageProfile: {
      imageReference: i.image,
      osDisk: {
        createOption: "FromImage",
        deleteOption: "Delete",
        diskSizeGB: i.osDiskSizeGb,
        managedDisk: {
          storageAccountType: "Premium_LRS",
          securityProfile: { securityEncryptionType: "DiskWithVMGuestState" },
        },
      },
      dataDisks: i.dataDiskId
        ? [{ lun: 0, createOption: "Attach", deleteOption: "Detach", managedDisk: { id: i.dataDiskId } }]
        : undefined,
    },
    osProfile: {
      computerName: i.computerName,
      adminUsername: i.adminUsername,
      customData: i.customDataBase64,
      linuxConfiguration: {
        disablePasswordAuthentication: true,
        ssh: i.sshPublicKey
          ? { publicKeys: [{ path: `/home/${i.adminUsername}/.ssh/authorized_keys`, keyData: i.sshPublicKey }] }
          : undefined,
        provisionVMAgent: true,
      },
    },
    networkProfile: { networkInterfaces: [{ id: i.networkInterfaceId, primary: true, deleteOption: "Delete" }] },
    tags: i.tags,
  };
}
