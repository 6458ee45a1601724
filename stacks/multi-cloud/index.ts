// The `multi-cloud` example stack: one vHSM runtime (on a host of yours, over SSH) and one confidential
// VM per platform, declared with the cloud-neutral ConfidentialVm: AWS (SEV-SNP), GCP (SEV-SNP),
// Azure (SEV-SNP CVM) and Proxmox VE (SEV-SNP). Each VM's expected launch state is registered with the
// same runtime; the same database password reaches each of them only after it attests.
// Erasable TypeScript only: Node 22 runs this file as is.
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import * as resources from "@pulumi/azure-native/resources/index.js";
import * as network from "@pulumi/azure-native/network/index.js";
import { ConfidentialVm, Platform, Tee, Vhsm, VhsmMode } from "buckypaper";

const cfg = new pulumi.Config();

const vhsm = new Vhsm("vhsm", {
  mode: VhsmMode.Ssh,
  ssh: {
    host: cfg.require("vhsmHost"),
    user: cfg.get("vhsmUser") ?? "buckypaper",
    privateKey: cfg.requireSecret("vhsmSshKey"),
    hostKey: cfg.require("vhsmHostKey"), // pinned: no trust on first use
  },
});
const connection = { url: vhsm.url, caFingerprint: vhsm.caFingerprint, deployer: vhsm.deployer, caPem: vhsm.caPem };
const secrets = { "db-password": cfg.requireSecret("dbPassword") };

// Azure needs a resource group and a subnet to put its VM in.
const group = new resources.ResourceGroup("buckypaper");
const vnet = new network.VirtualNetwork("buckypaper", {
  resourceGroupName: group.name,
  addressSpace: { addressPrefixes: ["10.42.0.0/16"] },
});
const subnet = new network.Subnet("vms", {
  resourceGroupName: group.name,
  virtualNetworkName: vnet.name,
  addressPrefix: "10.42.1.0/24",
  defaultOutboundAccess: false,
});

const vms = [
  new ConfidentialVm("aws-web", {
    platform: Platform.Aws,
    tee: Tee.SevSnp,
    vhsm: connection,
    size: "m6a.large",
    secrets,
    allowUnboundOs: cfg.getBoolean("allowUnboundOs"),
  }),
  new ConfidentialVm("gcp-web", {
    platform: Platform.Gcp,
    tee: Tee.SevSnp,
    vhsm: connection,
    size: "n2d-standard-2",
    zone: new pulumi.Config("gcp").require("zone"),
    expectedMeasurements: cfg.requireObject<string[]>("gcpExpectedMeasurements"),
    secrets,
    allowUnboundOs: cfg.getBoolean("allowUnboundOs"),
  }),
  new ConfidentialVm("azure-web", {
    platform: Platform.Azure,
    tee: Tee.SevSnp,
    vhsm: connection,
    size: "Standard_DC2as_v5",
    resourceGroupName: group.name,
    subnetId: subnet.id,
    secrets,
    allowUnboundOs: cfg.getBoolean("allowUnboundOs"),
    allowUnboundUserData: cfg.getBoolean("allowUnboundUserData"),
  }),
  new ConfidentialVm("pve-db", {
    platform: Platform.Proxmox,
    tee: Tee.SevSnp,
    vhsm: connection,
    vcpus: 4,
    memoryMb: 8192,
    ssh: { host: cfg.require("pveHost"), user: "root", privateKey: cfg.requireSecret("pveSshKey") },
    node: cfg.require("pveNode"),
    vmid: cfg.requireNumber("pveVmid"),
    boot: { firmware: path.resolve(cfg.require("pveFirmware")) },
    secrets,
    dataVolume: { sizeGb: 32 },
  }),
];

export const runtimeUrl = vhsm.url;
export const workloads = pulumi.all(vms.map((vm) => vm.workloadId));
export const expectedMeasurements = pulumi.all(vms.map((vm) => vm.expectedMeasurements));
