// N confidential VMs across platforms, for bench/pulumi-preview.bench.ts (config: vms, platforms,
// stateDir, port, firmware). Each VM gets an application secret, so every VM registers a Workload and
// a Secret with the runtime besides its platform resources. Plain JS importing the compiled package.
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { ConfidentialVm, LocalConfidentialVm, SimulatedPlatform, Vhsm } from "buckypaper";

const cfg = new pulumi.Config();
const n = cfg.requireNumber("vms");
const platforms = cfg.require("platforms").split(",");
const stateDir = cfg.require("stateDir");
const firmware = cfg.require("firmware");
const local = platforms.includes("local");

const platform = local ? new SimulatedPlatform("platform", { dir: path.join(stateDir, "platform") }) : undefined;
const vhsm = new Vhsm("vhsm", {
  stateDir: path.join(stateDir, "vhsm"),
  port: cfg.requireNumber("port"),
  ...(platform ? { trustSimulatedSnp: platform.anchor } : {}),
});
const connection = { url: vhsm.url, caFingerprint: vhsm.caFingerprint, deployer: vhsm.deployer, caPem: vhsm.caPem };
const ssh = {
  host: "kvm1.lan",
  user: "root",
  privateKey: pulumi.secret("placeholder: a preview never connects over SSH"),
};
const digest = "5c5debf100fc339f90276e761ee1f1658d08922c3b20e2a2e6c7a6c3370b2452a15a00eae11886a93d6fd1e7ab81e29d";

for (let i = 0; i < n; i++) {
  const p = platforms[i % platforms.length];
  const name = `vm-${i}`;
  const secrets = { APP_KEY: pulumi.secret(`app-key-${i}`) };
  if (p === "local") {
    new LocalConfidentialVm(name, {
      vhsm: connection,
      platformDir: platform.dir,
      boot: { firmware },
      vcpus: 1 + (i % 4),
      secrets,
      stateDir: path.join(stateDir, "vms", name),
    });
    continue;
  }
  new ConfidentialVm(name, {
    platform: p,
    vhsm: connection,
    secrets,
    ...{
      aws: { region: "us-east-2", size: "m6a.large" },
      gcp: { zone: "us-central1-a", size: "n2d-standard-2", expectedMeasurements: [digest] },
      azure: {
        resourceGroupName: "rg",
        subnetId: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/vms",
      },
      proxmox: { ssh, node: "pve1", vmid: 1000 + i, vcpus: 1 + (i % 4), boot: { firmware } },
      qemu: { ssh, vcpus: 1 + (i % 4), boot: { firmware } },
    }[p],
  });
}

export const url = vhsm.url;
