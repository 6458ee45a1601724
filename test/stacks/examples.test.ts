// The example stacks (stacks/aws, azure, gcp, proxmox, multi-cloud) run under the mock engine with
// their own Pulumi.<stack>.yaml config, plus the values their comments say to set in the stack
// (secrets as secret config, as `pulumi config set --secret` makes them). Asserted: the resources
// each program declares with their secure defaults, and that no secret value appears in clear in any
// resource input (only inside the engine's secret wrapper) — so the examples cannot silently rot.
// `tsc -p stacks/tsconfig.json` type-checks them against the providers' published types.
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { inClear, loadStackConfig, revealed, runProgram, type Recorded } from "./mock-program.js";
import { unknownInputProperties } from "./provider-types.js";
import { noteIfSharedMissing, repoRoot, sharedPath } from "../support/shared.js";
import { writeRuntimeManifest } from "../support/runtime-manifest.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
// A firmware to measure for the Proxmox VMs: Debian's OVMF from /work/shared, else the installed one.
const SHARED_FIRMWARE = sharedPath("vectors/debian-bookworm-ovmf/OVMF.fd");
const FIRMWARE = [SHARED_FIRMWARE, "/usr/share/ovmf/OVMF.fd"].find((f) => existsSync(f)) ?? "";
const HAVE_FIRMWARE = FIRMWARE !== "";
if (!HAVE_FIRMWARE) noteIfSharedMissing("example stacks that measure a Proxmox firmware (or apt-get install ovmf)");
// The AmdSev firmware (scripts/build-firmware.sh): a firmware with the kernel-hashes table for the vHSM's VM.
const AMDSEV = (() => {
  const r = spawnSync(path.join(repoRoot, "scripts/build-firmware.sh"), ["--print-path"], { encoding: "utf8" });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : undefined;
})();
if (AMDSEV === undefined)
  console.warn("[skip] the proxmox example with the vHSM in a VM: no AmdSev firmware (scripts/build-firmware.sh)");
/** Every resource the examples registered, for the provider-types check at the end. */
const recorded: Recorded[] = [];

// Distinctive values, so a leak is unmistakable.
const SECRETS = {
  vhsmSshKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nVHSM-KEY-PLAINTEXT\n-----END OPENSSH PRIVATE KEY-----\n",
  pveSshKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nPVE-KEY-PLAINTEXT\n-----END OPENSSH PRIVATE KEY-----\n",
  vhsmToken: "hvs.TOKEN-PLAINTEXT-0001",
  dbPassword: "db-password-PLAINTEXT-0002",
  apiKey: "api-key-PLAINTEXT-0003",
};
const HOST_KEY = "vhsm.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
const DIGEST = "5c5debf100fc339f90276e761ee1f1658d08922c3b20e2a2e6c7a6c3370b2452a15a00eae11886a93d6fd1e7ab81e29d";

async function runExample(
  name: string,
  stack: string,
  extra: Record<string, string>,
  secretKeys: (keyof typeof SECRETS)[],
): Promise<Recorded[]> {
  const dir = path.join(ROOT, "stacks", name);
  const { project, config } = loadStackConfig(dir, stack);
  const secrets = Object.fromEntries(secretKeys.map((k) => [k, SECRETS[k]]));
  const prefixed = Object.fromEntries(
    Object.entries(extra).map(([k, v]) => [k.includes(":") ? k : `${project}:${k}`, v]),
  );
  const run = await runProgram({
    program: path.join(dir, "index.ts"),
    project,
    stack,
    config: { ...config, ...prefixed },
    secrets,
  });
  // No secret in clear anywhere; and each one is really handed to some resource (inside a wrapper).
  const clear = JSON.stringify(run.resources.map((r) => inClear(r.inputs)));
  const wrapped = JSON.stringify(run.resources.map((r) => revealed(r.inputs)));
  for (const k of secretKeys) {
    expect(clear, `${name}: ${k} in clear`).not.toContain(JSON.stringify(SECRETS[k]).slice(1, -1));
    expect(wrapped, `${name}: ${k} is used`).toContain(JSON.stringify(SECRETS[k]).slice(1, -1));
  }
  recorded.push(...run.resources);
  return run.resources;
}

const of = (rs: Recorded[], type: string) => rs.filter((r) => r.type === type);
const one = (rs: Recorded[], type: string) => {
  const all = of(rs, type);
  if (all.length !== 1) throw new Error(`expected one ${type}, got ${all.length}: ${rs.map((r) => r.type).join(", ")}`);
  return revealed(all[0].inputs) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
};

// Each example keeps its config file free of secrets (they are `pulumi config set --secret`).
describe("example stack config files", () => {
  it.each(["aws", "azure", "gcp", "proxmox", "multi-cloud"])(
    "stacks/%s has Pulumi.yaml, Pulumi.<stack>.yaml without secrets, and reads secrets with requireSecret",
    (name) => {
      const dir = path.join(ROOT, "stacks", name);
      expect(loadStackConfig(dir, name).project).toBe(`buckypaper-${name}`);
      const text = readFileSync(path.join(dir, `Pulumi.${name}.yaml`), "utf8");
      expect(text).not.toMatch(/PRIVATE KEY|secure:/);
      expect(readFileSync(path.join(dir, "index.ts"), "utf8")).toMatch(/requireSecret\(/);
    },
  );
});

describe("example stacks under the mock engine", () => {
  it("aws: ssh-mode Vhsm with a pinned host key, SEV-SNP m6a instance with IMDSv2 and encrypted volumes, workload + secret registered", async () => {
    const rs = await runExample("aws", "aws", { vhsmHostKey: HOST_KEY }, ["vhsmSshKey", "dbPassword"]);
    const svc = one(rs, "pulumi-nodejs:dynamic/buckypaper:RuntimeService");
    expect(svc.ssh).toMatchObject({ host: "vhsm.example.internal", user: "buckypaper", hostKey: HOST_KEY });
    const inst = one(rs, "aws:ec2/instance:Instance");
    expect(inst.instanceType).toBe("m6a.large");
    expect(inst.cpuOptions).toEqual({ amdSevSnp: "enabled" });
    expect(inst.metadataOptions.httpTokens).toBe("required");
    expect(inst.rootBlockDevice.encrypted).toBe(true);
    expect(inst.userData).toContain("https://10.20.0.5:8200");
    expect(one(rs, "aws:ebs/volume:Volume").encrypted).toBe(true);
    const wl = one(rs, "pulumi-nodejs:dynamic/buckypaper:Workload");
    expect(wl.workloadId).toBe("aws-web");
    expect(wl.snpMeasurements.length).toBeGreaterThan(0);
    expect(one(rs, "pulumi-nodejs:dynamic/buckypaper:Secret").data).toEqual({ "db-password": SECRETS.dbPassword });
  });

  it("gcp: existing runtime, SEV-SNP N2D with the endorsed digest registered", async () => {
    const rs = await runExample(
      "gcp",
      "gcp",
      { vhsmCaFingerprint: "ab".repeat(32), expectedMeasurements: JSON.stringify([DIGEST]) },
      ["vhsmToken", "apiKey"],
    );
    expect(of(rs, "pulumi-nodejs:dynamic/buckypaper:RuntimeService")).toHaveLength(0);
    const inst = one(rs, "gcp:compute/instance:Instance");
    expect(inst.machineType).toBe("n2d-standard-2");
    expect(inst.zone).toBe("us-central1-a");
    expect(inst.confidentialInstanceConfig).toEqual({ confidentialInstanceType: "SEV_SNP" });
    expect(inst.scheduling.onHostMaintenance).toBe("TERMINATE");
    expect(inst.shieldedInstanceConfig.enableSecureBoot).toBe(true);
    expect(one(rs, "pulumi-nodejs:dynamic/buckypaper:Workload").snpMeasurements).toEqual([DIGEST]);
    expect(one(rs, "gcp:compute/disk:Disk").size).toBe(10);
  });

  it("azure: resource group, network, ConfidentialVM with DiskWithVMGuestState, vTPM and secure boot", async () => {
    const rs = await runExample(
      "azure",
      "azure",
      {
        vhsmCaFingerprint: "ab".repeat(32),
        sshPublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me",
      },
      ["vhsmToken", "dbPassword"],
    );
    expect(one(rs, "azure-native:network:VirtualNetwork").addressSpace).toEqual({ addressPrefixes: ["10.42.0.0/16"] });
    expect(one(rs, "azure-native:network:Subnet")).toMatchObject({
      addressPrefix: "10.42.1.0/24",
      defaultOutboundAccess: false,
    });
    const vm = one(rs, "azure-native:compute:VirtualMachine");
    expect(vm.hardwareProfile.vmSize).toBe("Standard_DC2as_v5");
    expect(vm.securityProfile).toEqual({
      securityType: "ConfidentialVM",
      uefiSettings: { secureBootEnabled: true, vTpmEnabled: true },
    });
    expect(vm.storageProfile.osDisk.managedDisk.securityProfile.securityEncryptionType).toBe("DiskWithVMGuestState");
    expect(vm.osProfile.linuxConfiguration.disablePasswordAuthentication).toBe(true);
    expect(one(rs, "pulumi-nodejs:dynamic/buckypaper:Workload").platforms).toEqual(["azure-snp"]);
  });

  it.runIf(HAVE_FIRMWARE)(
    "proxmox: ssh-mode Vhsm, PVE VM with amd-sev and the digest of the node's firmware",
    async () => {
      const rs = await runExample("proxmox", "proxmox", { vhsmHostKey: HOST_KEY, firmware: FIRMWARE }, [
        "vhsmSshKey",
        "pveSshKey",
        "dbPassword",
      ]);
      expect(one(rs, "pulumi-nodejs:dynamic/buckypaper:RuntimeService").ssh.hostKey).toBe(HOST_KEY);
      const create = String(
        of(rs, "command:remote:Command")
          .map((c) => revealed(c.inputs) as { create?: string })
          .find((c) => c.create?.includes("pvesh create"))?.create,
      );
      expect(create).toContain("pvesh create '/nodes/pve1/qemu'");
      expect(create).toContain("--amd-sev 'type=snp,");
      expect(create).toContain("--vmid '4100'");
      expect(create).toContain("import-from=local:import/noble-server-cloudimg-amd64.qcow2");
      expect(one(rs, "pulumi-nodejs:dynamic/buckypaper:Workload").snpMeasurements[0]).toMatch(/^[0-9a-f]{96}$/);
    },
  );

  it.runIf(AMDSEV !== undefined)(
    "proxmox with vhsmImage: the vHSM in its own SEV-SNP VM on the node, verified against its image; the VM verifies it too",
    async () => {
      const m = writeRuntimeManifest({ firmware: AMDSEV!, psp: "sev-guest" });
      try {
        const rs = await runExample(
          "proxmox",
          "proxmox",
          { firmware: AMDSEV!, vhsmImage: m.manifest, vhsmVmid: "4099", vhsmAddress: "10.0.0.99" },
          ["pveSshKey", "dbPassword"],
        );
        expect(of(rs, "pulumi-nodejs:dynamic/buckypaper:RuntimeService")).toHaveLength(0);
        const rt = one(rs, "pulumi-nodejs:dynamic/buckypaper:AttestedRuntime");
        expect(rt.url).toBe("https://10.0.0.99:8200");
        expect(rt.attestation).toMatchObject({ allowAnyInstance: true, kds: "online" });
        expect(rt.attestation.snpMeasurements[0]).toMatch(/^[0-9a-f]{96}$/);
        const creates = of(rs, "command:remote:Command")
          .map((c) => String((revealed(c.inputs) as { create?: string }).create))
          .filter((c) => c.includes("pvesh create"));
        expect(creates).toHaveLength(2);
        expect(creates.find((c) => c.includes("--vmid '4099'"))).toContain("--virtio0 'local-lvm:0,import-from=");
        // The database VM's user-data carries the runtime's expectation (no CA pin): its enclaivelet verifies it.
        const userData = of(rs, "command:remote:Command")
          .map((c) => String((revealed(c.inputs) as { stdin?: string }).stdin ?? ""))
          .find((u) => u.includes("#cloud-config") && u.includes("runtimeAttestation"));
        expect(userData).toContain(rt.attestation.snpMeasurements[0]);
        expect(userData).toContain("allowAnyInstance");
      } finally {
        rmSync(m.dir, { recursive: true, force: true });
      }
    },
  );

  it.runIf(HAVE_FIRMWARE)(
    "multi-cloud: one runtime, a VM on each of AWS, GCP, Azure and Proxmox, all registered with it",
    async () => {
      const rs = await runExample(
        "multi-cloud",
        "multi-cloud",
        { vhsmHostKey: HOST_KEY, gcpExpectedMeasurements: JSON.stringify([DIGEST]), pveFirmware: FIRMWARE },
        ["vhsmSshKey", "pveSshKey", "dbPassword"],
      );
      expect(of(rs, "pulumi-nodejs:dynamic/buckypaper:RuntimeService")).toHaveLength(1);
      expect(
        of(rs, "buckypaper:index:ConfidentialVm")
          .map((r) => r.name)
          .sort(),
      ).toEqual(["aws-web", "azure-web", "gcp-web", "pve-db"]);
      expect(one(rs, "aws:ec2/instance:Instance").cpuOptions).toEqual({ amdSevSnp: "enabled" });
      expect(one(rs, "gcp:compute/instance:Instance").zone).toBe("europe-west4-a");
      expect(one(rs, "azure-native:compute:VirtualMachine").securityProfile.securityType).toBe("ConfidentialVM");
      const workloads = of(rs, "pulumi-nodejs:dynamic/buckypaper:Workload").map(
        (r) => revealed(r.inputs) as { workloadId: string; connection: { url: string } },
      );
      expect(workloads.map((w) => w.workloadId).sort()).toEqual([
        "multi-cloud-aws-web",
        "multi-cloud-azure-web",
        "multi-cloud-gcp-web",
        "multi-cloud-pve-db",
      ]);
      expect(new Set(workloads.map((w) => w.connection.url))).toEqual(new Set(["https://vhsm.example.com:8200"]));
      expect(of(rs, "pulumi-nodejs:dynamic/buckypaper:Secret")).toHaveLength(4);
    },
  );
});

describe("example stacks type-check against the providers' published types", () => {
  it("every cloud resource input the examples produced (at every nesting level) is a property of the provider's Args type", () => {
    const cloud = recorded.filter((r) => /^(aws|gcp|azure-native):/.test(r.type));
    expect(cloud.length).toBeGreaterThan(10);
    expect(unknownInputProperties(ROOT, cloud)).toEqual([]);
    // The check can fail: a misspelt property is reported with its path.
    const bad = {
      ...cloud.find((r) => r.type === "aws:ec2/instance:Instance")!,
      inputs: { ami: "ami-1", cpuOptions: { amdSevSnpp: "enabled" } },
    };
    expect(unknownInputProperties(ROOT, [bad])).toEqual([
      "aws:ec2/instance:Instance web.cpuOptions.amdSevSnpp: not a property of InstanceCpuOptions",
    ]);
  }, 300_000);

  it("tsc -p stacks/tsconfig.json reports no error", () => {
    expect(existsSync(path.join(ROOT, "stacks/tsconfig.json"))).toBe(true);
    const r = spawnSync(
      process.execPath,
      [path.join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "stacks/tsconfig.json"],
      { cwd: ROOT, encoding: "utf8" },
    );
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  }, 300_000);
});
