// The Vhsm's `confidential-vm` mode on Azure (mocked engine: only the Azure API is mocked, its outputs typed by
// @pulumi/azure-native's resource classes; the VM's arguments are the workload component's own settings function,
// typed by the SDK). The runtime's Azure disk is a real GPT disk with a FAT32 ESP holding a real signed UKI
// (test/support/runtime-disk.ts); the component predicts the measured-boot policy from the disk file and puts it, with
// the paravisor's digest, the vm-configuration and THIS VM's id, in the `attestation` every client verifies. Hostile:
// that very attestation, handed to verifyRuntime over real HTTPS against runtimes on a simulated Azure CVM (the real
// `attestation "azure"` server, swtpm as the vTPM, a simulated paravisor publishing HCL reports), accepts a runtime
// booted from the disk's UKI on this VM and refuses another UKI, another db authority, another VM and an enabled
// serial console, each naming its check. Every impossible combination is refused at preview, naming the field.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type * as compute from "@pulumi/azure-native/compute/index.js";
import type * as network from "@pulumi/azure-native/network/index.js";
import { installMocks, resolve, unsecret, type MockHarness } from "../support/pulumi-mocks.js";
import { dbKeyPair, haveDiskTools, runtimeUki, writeRuntimeDisk, type RuntimeDisk } from "../support/runtime-disk.js";
import { requireTool } from "../support/prereq.js";
import { bootApplicationDigest, ukiMeasurements } from "../../images/index.js";
import { certificateDer } from "../../images/vtpm/index.js";
import { runtimeExpectation, verifyRuntime } from "../../runtime/client/attested-tls.js";
import type { RunningServer } from "../../runtime/server/http/server.js";
import type { SnpSimulator } from "../../runtime/sim/snp.js";
import type { RuntimeAttestation } from "../../runtime/client/connection.js";
import { haveSwtpm } from "../support/swtpm.js";
import { platform } from "../runtime/attested-runtime-support.js";
import { azureBootLog } from "../runtime/attestation/azure-boot-log.js";
import {
  PARAVISOR_MEASUREMENT,
  azureExpectation,
  bootAzureVm,
  startAzureRuntime,
  type AzureVm,
} from "../runtime/azure-runtime-support.js";

const VM_ID = "2f1c7a52-4b0e-4d6f-9a31-7c0e5d2b8e41";
const GALLERY =
  "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/bk/providers/Microsoft.Compute/galleries/bk/images/bk-runtime/versions/1.0.0";
let h: MockHarness;
let c: typeof import("../../components/index.js");
const made: string[] = [];
const ready = haveDiskTools();
let disk: RuntimeDisk;
let db: { key: string; cert: string; sha256: string };
let otherDb: { key: string; cert: string; sha256: string };

/** What Azure computes for the resources the component creates, keyed by the SDK classes' own output names. */
const vmOutputs = { vmId: VM_ID } satisfies Partial<Record<keyof compute.VirtualMachine, unknown>>;
const ipOutputs = { ipAddress: "20.61.7.9" } satisfies Partial<Record<keyof network.PublicIPAddress, unknown>>;

beforeAll(async () => {
  h = await installMocks({
    "azure-native:compute:VirtualMachine": () => vmOutputs,
    "azure-native:network:PublicIPAddress": () => ipOutputs,
    // What AttestedRuntime's create returns after verifying (the verification itself: test/provider/attested-runtime).
    "pulumi-nodejs:dynamic/buckypaper:AttestedRuntime": (inputs) => ({
      measurement: (inputs.attestation as { snpMeasurements: string[] }).snpMeasurements[0],
      tlsKeySha256: "5e".repeat(32),
      simulated: false,
      verifiedBy: "the deployer (pulumi up), attested TLS",
      verifiedAt: "2026-12-08T00:00:00.000Z",
      checks: ["policy.measurement: ok"],
      deployer: { mount: "bk-deployer", role: "deployer", keyFile: "/tmp/k.pem" },
      recoveryShares: ["jwe"],
      runtimeInstanceId: "1d".repeat(32),
    }),
  });
  c = await import("../../components/index.js");
  if (ready) {
    const keys = mkdtempSync(path.join(tmpdir(), "bk-vhsm-az-db-"));
    made.push(keys);
    db = dbKeyPair(keys, "customer-db");
    otherDb = dbKeyPair(keys, "other-db");
    disk = writeRuntimeDisk({ sign: db, psp: "azure-hcl", cloud: "azure", unseal: "shares", ak: "hcl-ak" });
    made.push(disk.dir);
  }
}, 60_000);
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

const byName = (n: string) => h.resources.find((r) => r.name === n && !r.type.startsWith("buckypaper:index:"))!;
const azureArgs = () => ({
  mode: "confidential-vm" as never,
  platform: "azure" as never,
  image: disk.manifest,
  cloudImageId: GALLERY,
  resourceGroupName: "bk",
  location: "westeurope",
  subnetId: "/subscriptions/0/resourceGroups/bk/providers/Microsoft.Network/virtualNetworks/v/subnets/s",
  paravisorMeasurements: [PARAVISOR_MEASUREMENT],
  dbCertificates: [db.cert],
});

describe.runIf(requireTool("systemd-boot-efi, binutils, dosfstools, mtools and osslsigncode (a signed UKI)", ready))(
  "Vhsm confidential-vm on Azure: what the runtime must prove is computed from its disk and this VM",
  () => {
    it("a ConfidentialVM from the gallery image, no osProfile (no customData), a data disk; attestation = paravisor digest + the disk's boot policy + vm-configuration + this VM's id", async () => {
      const v = new c.Vhsm("az1", azureArgs());
      const att = unsecret(await resolve(v.attestation)) as RuntimeAttestation;
      const vm = byName("az1-vm").inputs as compute.VirtualMachineArgs & Record<string, unknown>;
      expect(vm.securityProfile).toMatchObject({
        securityType: "ConfidentialVM",
        uefiSettings: { secureBootEnabled: true, vTpmEnabled: true },
      });
      expect(vm.storageProfile).toMatchObject({
        imageReference: { id: GALLERY },
        osDisk: { managedDisk: { securityProfile: { securityEncryptionType: "DiskWithVMGuestState" } } },
        dataDisks: [{ lun: 0, createOption: "Attach", managedDisk: { id: "az1-data-id" } }],
      });
      // Specialized: nothing for a provisioning agent, no customData, no admin user, no ssh key.
      expect(vm).not.toHaveProperty("osProfile");
      expect(JSON.stringify(vm)).not.toMatch(/customData|adminUsername|ssh/);
      expect(vm.hardwareProfile).toEqual({ vmSize: "Standard_DC2as_v5" });
      expect(byName("az1-data").inputs).toMatchObject({ creationData: { createOption: "Empty" }, diskSizeGB: 10 });
      expect(byName("az1-nic").inputs.ipConfigurations[0].publicIPAddress).toEqual({ id: "az1-ip-id" });
      expect(await resolve(v.url)).toBe("https://20.61.7.9:8200");

      expect(att.snpMeasurements).toEqual([PARAVISOR_MEASUREMENT]);
      expect(att.allowAnyInstance).toBe(true);
      expect(att.kds).toBe("online");
      const policy = JSON.parse(att.policy!);
      expect(policy.vtpm).toBeUndefined();
      expect(policy.snp).toEqual({ allowDebug: false, allowMigrationAgent: false, vmpl: 0 });
      expect(policy.azure).toMatchObject({ requireSecureBoot: true, forbidConsole: true, vmUniqueIds: [VM_ID] });
      // The boot policy is the disk's: its UKI required in PCR 4, Secure Boot under the customer's db certificate.
      const mb = policy.azure.measuredBoot;
      expect(mb.bootApplications.required).toEqual([bootApplicationDigest(disk.uki, "sha256")]);
      expect(mb.secureBoot).toMatchObject({ enabled: true, authorities: [db.sha256] });
      const summary = (await resolve(v.attestationSummary))!;
      expect(summary.platform).toBe("azure");
      expect(summary.osBinding).toMatch(
        /HCL report.*event log meeting the boot policy predicted from the runtime disk/,
      );
      expect(summary.unseal).toMatch(/^NO auto-unseal/);
      expect(summary.accel).toBe("Azure CVM SEV-SNP (2 vCPUs)");
    });

    it("allowSerialConsole, publicHost, size and dataDiskGb are honoured", async () => {
      const v = new c.Vhsm("az2", {
        ...azureArgs(),
        allowSerialConsole: true,
        publicHost: "vhsm.example",
        size: "Standard_DC4as_v5",
        dataDiskGb: 64,
      });
      const att = unsecret(await resolve(v.attestation)) as RuntimeAttestation;
      expect(JSON.parse(att.policy!).azure.forbidConsole).toBe(false);
      expect(await resolve(v.url)).toBe("https://vhsm.example:8200");
      expect(h.resources.some((r) => r.name === "az2-ip")).toBe(false);
      expect(byName("az2-vm").inputs.hardwareProfile).toEqual({ vmSize: "Standard_DC4as_v5" });
      expect(byName("az2-data").inputs.diskSizeGB).toBe(64);
    });

    it("refuses at preview, naming the field", () => {
      const refused = (args: Record<string, unknown>, field: string, why: RegExp) => {
        let msg = "";
        try {
          new c.Vhsm(`azr${Math.random().toString(36).slice(2, 7)}`, args as never);
        } catch (e) {
          msg = (e as Error).message;
        }
        expect(msg.includes(`: ${field}`) || msg.includes(` ${field}:`), `${field} not named: ${msg}`).toBe(true);
        expect(msg).toMatch(why);
      };
      const a = azureArgs();
      const { paravisorMeasurements: _p, ...noParavisor } = a;
      refused(noParavisor, "paravisorMeasurements", /Microsoft's paravisor/);
      refused({ ...a, paravisorMeasurements: ["ab"] }, "paravisorMeasurements[0]", /96 hex digits/);
      const { resourceGroupName: _r, ...noRg } = a;
      refused(noRg, "resourceGroupName", /is required on platform 'azure'/);
      const { subnetId: _s, ...noSubnet } = a;
      refused(noSubnet, "subnetId", /is required on platform 'azure'/);
      const { dbCertificates: _d, ...noDb } = a;
      refused(noDb, "dbCertificates", /Secure Boot on/);
      refused({ ...a, cloudImageId: "ami-0123456789abcdef0" }, "cloudImageId", /Compute Gallery image version/);
      refused({ ...a, tee: "tdx" }, "tee", /SEV-SNP only/);
      refused({ ...a, hostData: "ab".repeat(32) }, "hostData", /vmUniqueId/);
      refused({ ...a, size: "Standard_D2s_v5" }, "size", /./);
      refused({ ...a, zone: "europe-west4-a" }, "zone", /only allowed on platform gcp/);
      refused({ ...a, akPins: ["ab".repeat(32)] }, "akPins", /only allowed on platform aws/);
      refused({ ...a, kitImage: { cloud: "gce" } }, "kitImage", /only allowed on platform aws or gcp/);
      refused({ ...awsLike(), paravisorMeasurements: [PARAVISOR_MEASUREMENT] }, "paravisorMeasurements", /azure/);
      // The image must be the Azure runtime disk: an EC2 runtime disk (sev-guest) asks for evidence an Azure CVM lacks.
      const ec2 = writeRuntimeDisk({ sign: db, cloud: "ec2", unseal: "shares", ak: "runtime-ak" });
      made.push(ec2.dir);
      refused({ ...a, image: ec2.manifest }, "image (runtime.psp)", /an Azure CVM has none/);
      const nocloud = writeRuntimeDisk({ sign: db, psp: "azure-hcl", cloud: "ec2" as never });
      made.push(nocloud.dir);
      refused({ ...a, image: nocloud.manifest }, "image (runtime.cloud)", /another cloud's vTPM/);
    });
  },
);

const awsLike = () => ({
  mode: "confidential-vm" as never,
  platform: "aws" as never,
  image: disk.manifest,
  cloudImageId: "ami-0123456789abcdef0",
});

describe.runIf(ready && haveSwtpm())(
  "Vhsm on Azure: the attestation output refuses a runtime not booted from the disk on this VM",
  () => {
    let sim: SnpSimulator;
    const vms: AzureVm[] = [];
    const servers: RunningServer[] = [];

    async function runtimeBooted(
      uki: Buffer,
      o: { authority?: string; vmId?: string; console?: boolean } = {},
    ): Promise<RunningServer> {
      const vm = await bootAzureVm(sim, {
        bootLog: azureBootLog({
          uki: bootApplicationDigest(uki, "sha256"),
          dbCert: certificateDer(readFileSync(db.cert), "db"),
          ...(o.authority ? { authority: certificateDer(readFileSync(o.authority), "db") } : {}),
          pcr11: ukiMeasurements(uki).flatMap((m) => [Buffer.from(m.name + "\0", "latin1"), m.data]),
        }),
        vmConfiguration: {
          "console-enabled": o.console ?? false,
          "secure-boot": true,
          "tpm-enabled": true,
          vmUniqueId: (o.vmId ?? VM_ID).toUpperCase(),
        },
      });
      vms.push(vm);
      const { server } = await startAzureRuntime(vm);
      servers.push(server);
      return server;
    }

    beforeAll(async () => {
      sim = await platform();
    }, 120_000);
    afterAll(async () => {
      for (const s of servers) await s.close();
      for (const v of vms) await v.stop();
    });

    it("accepts the signed UKI on this VM; refuses another disk, another db authority, another VM, a serial console", async () => {
      const v = new c.Vhsm("azh", azureArgs());
      const att = unsecret(await resolve(v.attestation)) as RuntimeAttestation;
      // The component's attestation as the deployer verifies it before init (no runtime instance id yet), trusting the
      // simulated AMD root instead of KDS.
      const { runtimeInstanceId: _bootstrapped, ...beforeInit } = att;
      const sa = azureExpectation(sim).simulatedAnchors;
      const expected = runtimeExpectation({ ...beforeInit, simulatedAnchors: sa, kds: "off" });
      const failed = (x: { checks: { id: string; ok: boolean }[] }) => x.checks.filter((k) => !k.ok).map((k) => k.id);

      const good = await verifyRuntime({ url: (await runtimeBooted(disk.uki)).url, expected });
      expect(good.reason).toBeUndefined();
      expect(good.ok).toBe(true);
      for (const id of ["policy.vm-unique-id", "boot.applications", "boot.secure-boot-authority", "policy.console"])
        expect(good.checks.map((k) => k.id)).toContain(id);

      const other = runtimeUki(path.join(disk.dir, "other"), "init=/bin/sh").uki;
      const otherDisk = await verifyRuntime({ url: (await runtimeBooted(other)).url, expected });
      expect(otherDisk.ok).toBe(false);
      // The command line is inside the UKI (its Authenticode digest, PCR 4; systemd-stub's PCR 11): no separate event.
      expect(failed(otherDisk)).toEqual(["boot.applications", "boot.pcrs"]);

      const otherAuthority = await verifyRuntime({
        url: (await runtimeBooted(disk.uki, { authority: otherDb.cert })).url,
        expected,
      });
      expect(otherAuthority.ok).toBe(false);
      expect(failed(otherAuthority)).toEqual(["boot.secure-boot-authority"]);

      const elsewhere = await verifyRuntime({
        url: (await runtimeBooted(disk.uki, { vmId: "0c1d2e3f-0000-4000-8000-000000000001" })).url,
        expected,
      });
      expect(elsewhere.ok).toBe(false);
      expect(failed(elsewhere)).toEqual(["policy.vm-unique-id"]);

      const withConsole = await verifyRuntime({
        url: (await runtimeBooted(disk.uki, { console: true })).url,
        expected,
      });
      expect(failed(withConsole)).toEqual(["policy.console"]);
    }, 240_000);
  },
);
