// The `proxmox` example stack: a vHSM runtime on a host of yours and a confidential VM on a Proxmox VE
// node, both reached over SSH with pinned keys. With `vhsmImage` set (the manifest of `buckypaper image build
// --role runtime --runtime-psp sev-guest`), the vHSM itself runs in an SEV-SNP VM on the same node instead
// (`Vhsm` mode confidential-vm, platform proxmox): `pulumi up` verifies it against AMD's roots and the
// measurement computed from that image before it sends anything, and the VM's enclaivelet verifies it the same
// way (docs/trust-bootstrap.md "The vHSM on SEV-SNP hardware"). The expected launch digest (SNP, every boot input
// measured) or MRTD (TDX) is computed here from the node's firmware and registered before the VM is
// created. Secure defaults come from the component: `amd-sev: type=snp` / `intel-tdx`, OVMF (bios=ovmf),
// debug off, the cloud-init snippet uploaded over SSH, parameters valid against the PVE API schema.
// Erasable TypeScript only: Node 22 runs this file as is.
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { ProxmoxConfidentialVm, Tee, Vhsm, VhsmMode, VhsmPlatform } from "buckypaper";

const cfg = new pulumi.Config();
const pveSsh = { host: cfg.require("pveHost"), user: "root", privateKey: cfg.requireSecret("pveSshKey") };
const vhsmImage = cfg.get("vhsmImage");

const vhsm = vhsmImage
  ? new Vhsm("vhsm", {
      mode: VhsmMode.ConfidentialVm,
      platform: VhsmPlatform.Proxmox,
      ssh: pveSsh,
      node: cfg.require("pveNode"),
      vmid: cfg.requireNumber("vhsmVmid"),
      image: path.resolve(vhsmImage),
      firmware: path.resolve(cfg.require("firmware")), // the node's OVMF: what PVE boots the runtime with
      publicHost: cfg.require("vhsmAddress"), // the address the runtime's VM gets on the bridge
      macAddress: cfg.get("vhsmMac"),
      allowAnyInstance: true, // PVE cannot launch it with HOST_DATA: said out loud
    })
  : new Vhsm("vhsm", {
      mode: VhsmMode.Ssh,
      ssh: {
        host: cfg.require("vhsmHost"),
        user: cfg.get("vhsmUser") ?? "buckypaper",
        privateKey: cfg.requireSecret("vhsmSshKey"),
        hostKey: cfg.require("vhsmHostKey"), // pinned: no trust on first use
      },
    });

const db = new ProxmoxConfidentialVm("db", {
  // In confidential-vm mode caFingerprint is empty and `attestation` is what the providers and the VM verify.
  vhsm: {
    url: vhsm.url,
    caFingerprint: vhsm.caFingerprint,
    deployer: vhsm.deployer,
    caPem: vhsm.caPem,
    ...(vhsmImage ? { attestation: vhsm.attestation } : {}),
  },
  ssh: pveSsh,
  node: cfg.require("pveNode"),
  vmid: cfg.requireNumber("vmid"),
  tee: cfg.get("tee") === "tdx" ? Tee.Tdx : Tee.SevSnp,
  cores: cfg.getNumber("cores"),
  memoryMb: cfg.getNumber("memoryMb"),
  boot: { firmware: path.resolve(cfg.require("firmware")) },
  importFrom: cfg.get("image"),
  secrets: { "db-password": cfg.requireSecret("dbPassword") },
  dataVolume: { sizeGb: 32 },
});

export const runtimeUrl = vhsm.url;
export const vmid = db.vmid;
export const workloadId = db.workloadId;
export const expectedMeasurements = db.expectedMeasurements;
export const vhsmMeasurement = vhsm.measurement;
