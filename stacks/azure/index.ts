// The `azure` example stack: a resource group and a private network, and an Azure confidential VM in it
// registered with a vHSM runtime you already run. Microsoft's paravisor is what the launch digest
// covers, so the workload is registered with the facts that are verifiable instead (HCL report bound to
// the vTPM, secure boot on, debug off, optionally the paravisor's ID-key digests). Secure defaults come
// from the component: security type ConfidentialVM, DiskWithVMGuestState encryption, vTPM and secure
// boot, Canonical's CVM image, SSH keys only. Erasable TypeScript only: Node 22 runs this file as is.
import * as pulumi from "@pulumi/pulumi";
import * as resources from "@pulumi/azure-native/resources/index.js";
import * as network from "@pulumi/azure-native/network/index.js";
import { AzureConfidentialVm, Tee } from "buckypaper";

const cfg = new pulumi.Config();

const vhsm = {
  url: cfg.require("vhsmUrl"),
  caFingerprint: cfg.require("vhsmCaFingerprint"),
  token: cfg.requireSecret("vhsmToken"),
};

const group = new resources.ResourceGroup("buckypaper");
const vnet = new network.VirtualNetwork("buckypaper", {
  resourceGroupName: group.name,
  addressSpace: { addressPrefixes: [cfg.get("addressSpace") ?? "10.42.0.0/16"] },
});
const subnet = new network.Subnet("vms", {
  resourceGroupName: group.name,
  virtualNetworkName: vnet.name,
  addressPrefix: (cfg.get("addressSpace") ?? "10.42.0.0/16").replace(/\.0\.0\/16$/, ".1.0/24"),
  // No default outbound access: the VM reaches the runtime through routes you add, nothing else.
  defaultOutboundAccess: false,
});

const app = new AzureConfidentialVm("app", {
  vhsm,
  resourceGroupName: group.name,
  subnetId: subnet.id,
  tee: cfg.get("tee") === "tdx" ? Tee.Tdx : Tee.SevSnp,
  vmSize: cfg.get("vmSize"),
  sshPublicKey: cfg.require("sshPublicKey"),
  idKeyDigests: cfg.getObject<string[]>("idKeyDigests"),
  secrets: { "db-password": cfg.requireSecret("dbPassword") },
  dataVolume: { sizeGb: 16 },
  // The kit image (a Compute Gallery image version of `buckypaper image build --cloud azure --sign-key K --sign-cert C`):
  // `image` names it, `bootChain` ({manifest, dbCertificates: [C]}) predicts its boot events — the UKI in PCR 4, the
  // command line with the verity root hash, the db certificate that verified the boot — and turns agentInImage on.
  image: cfg.getObject<{ publisher: string; offer: string; sku: string; version: string }>("image"),
  bootChain: cfg.getObject<{ manifest: string; dbCertificates: string[] }>("bootChain"),
  // Or, for an image the kit cannot predict, vTPM PCR values (PCR 4: your boot chain's applications; PCR 11 adds to it).
  pcrs: cfg.getObject<Record<string, string[]>>("pcrs"),
  allowUnboundOs: cfg.getBoolean("allowUnboundOs"),
  // Canonical's image has no enclaivelet: the customData is not measured. Boot a kit image built with
  // `buckypaper image build --cloud azure` (image + agentInImage: true) to bind it, see the config file.
  allowUnboundUserData: cfg.getBoolean("allowUnboundUserData"),
});

export const resourceGroup = group.name;
export const vmId = app.vmId;
export const privateIp = app.privateIp;
export const workloadId = app.workloadId;
export const attestationChain = app.attestationChain;
