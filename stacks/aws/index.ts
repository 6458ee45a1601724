// The `aws` example stack: a vHSM runtime on your own host (over SSH) and an AMD SEV-SNP EC2 instance
// whose expected launch digests are computed at deploy time and registered with the runtime before the
// instance exists. Its database password is a Pulumi secret that reaches the VM only after attestation.
// Secure defaults come from the component: SNP on m6a/c6a/r6a in SNP regions, a UEFI AMI, IMDSv2
// required, encrypted root and data volumes. Erasable TypeScript only: Node 22 runs this file as is.
import * as pulumi from "@pulumi/pulumi";
import { AwsConfidentialVm, Vhsm, VhsmMode } from "buckypaper";

const cfg = new pulumi.Config();

const vhsm = new Vhsm("vhsm", {
  mode: VhsmMode.Ssh,
  ssh: {
    host: cfg.require("vhsmHost"),
    user: cfg.get("vhsmUser") ?? "buckypaper",
    privateKey: cfg.requireSecret("vhsmSshKey"),
    hostKey: cfg.require("vhsmHostKey"), // pinned: no trust on first use
  },
  publicHost: cfg.get("vhsmPublicHost"),
});

const web = new AwsConfidentialVm("web", {
  vhsm: { url: vhsm.url, caFingerprint: vhsm.caFingerprint, deployer: vhsm.deployer, caPem: vhsm.caPem },
  instanceType: cfg.get("instanceType"),
  subnetId: cfg.get("subnetId"),
  securityGroupIds: cfg.getObject<string[]>("securityGroupIds"),
  secrets: { "db-password": cfg.requireSecret("dbPassword") },
  dataVolume: { sizeGb: 20, mountPoint: "/data" },
  // The OS is bound only through NitroTPM: the image's boot events and the authenticated AK (see the config file).
  measuredBoot: cfg.getObject("measuredBoot"),
  akPins: cfg.getObject<string[]>("akPins"),
  allowUnboundOs: cfg.getBoolean("allowUnboundOs"),
});

export const runtimeUrl = vhsm.url;
export const runtimeCaFingerprint = vhsm.caFingerprint;
export const instanceId = web.instanceId;
export const privateIp = web.privateIp;
export const workloadId = web.workloadId;
export const expectedMeasurements = web.expectedMeasurements;
export const attestationChain = web.attestationChain;
