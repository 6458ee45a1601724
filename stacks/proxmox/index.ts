// The `proxmox` example stack: a vHSM runtime on a host of yours and a confidential VM on a Proxmox VE
// node, both reached over SSH with pinned keys. The expected launch digest (SNP, every boot input
// measured) or MRTD (TDX) is computed here from the node's firmware and registered before the VM is
// created. Secure defaults come from the component: `amd-sev: type=snp` / `intel-tdx`, OVMF (bios=ovmf),
// debug off, the cloud-init snippet uploaded over SSH, parameters valid against the PVE API schema.
// Erasable TypeScript only: Node 22 runs this file as is.
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { ProxmoxConfidentialVm, Tee, Vhsm, VhsmMode } from "buckypaper";

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

const db = new ProxmoxConfidentialVm("db", {
  vhsm: { url: vhsm.url, caFingerprint: vhsm.caFingerprint, deployer: vhsm.deployer, caPem: vhsm.caPem },
  ssh: { host: cfg.require("pveHost"), user: "root", privateKey: cfg.requireSecret("pveSshKey") },
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
