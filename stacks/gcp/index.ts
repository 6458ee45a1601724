// The `gcp` example stack: a Compute Engine confidential VM registered with a vHSM runtime you already
// run (a `Vhsm` elsewhere, e.g. the aws or proxmox stack's). Secure defaults come from the component:
// confidentialInstanceConfig SEV_SNP or TDX, the matching minimum CPU platform, TERMINATE on host
// maintenance, shielded VM (secure boot, vTPM, integrity monitoring), project SSH keys blocked.
// Erasable TypeScript only: Node 22 runs this file as is.
import * as pulumi from "@pulumi/pulumi";
import { GcpConfidentialVm, Tee } from "buckypaper";

const cfg = new pulumi.Config();
const gcpCfg = new pulumi.Config("gcp");

const vhsm = {
  url: cfg.require("vhsmUrl"),
  caFingerprint: cfg.require("vhsmCaFingerprint"),
  token: cfg.requireSecret("vhsmToken"),
};

const app = new GcpConfidentialVm("app", {
  vhsm,
  tee: cfg.get("tee") === "tdx" ? Tee.Tdx : Tee.SevSnp,
  machineType: cfg.get("machineType"),
  zone: gcpCfg.require("zone"),
  expectedMeasurements: cfg.requireObject<string[]>("expectedMeasurements"),
  secrets: { "api-key": cfg.requireSecret("apiKey") },
  dataVolume: { sizeGb: 10 },
  // The OS is bound only through the Shielded VM vTPM: boot events and the authenticated AK (see the config file).
  measuredBoot: cfg.getObject("measuredBoot"),
  akPins: cfg.getObject<string[]>("akPins"),
  allowUnboundOs: cfg.getBoolean("allowUnboundOs"),
});

export const instanceId = app.instanceId;
export const workloadId = app.workloadId;
export const expectedMeasurements = app.expectedMeasurements;
export const attestationChain = app.attestationChain;
