// AzureConfidentialVm's OS binding by boot events (components/azure/os-binding.ts) on a mocked Pulumi engine: the kit's
// Azure disk (a real signed UKI on a real FAT32 ESP inside a GPT disk, test/support/runtime-disk.ts) → the policy the
// component registers (azure.measuredBoot: the UKI's Authenticode digest, its command line with the verity root hash,
// PCR 11, Secure Boot under the db certificate), accepted by the runtime's own policy parser; and every preview
// refusal, naming its field. The Azure resources are the @pulumi/azure-native SDK's own classes (their inputs typed
// by it); only the engine is mocked.
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { installMocks, resolve, unsecret, type MockHarness } from "../support/pulumi-mocks.js";
import { dbKeyPair, haveDiskTools, writeRuntimeDisk, type RuntimeDisk } from "../support/runtime-disk.js";
import { writeKitManifest } from "../support/kit-manifest.js";
import { bootApplicationDigest, predictUkiPcr11 } from "../../images/index.js";
import { parsePolicy } from "../../runtime/attestation/policy.js";

let h: MockHarness;
let c: typeof import("../../components/index.js");
const ready = haveDiskTools();

const vhsm = { url: "https://10.0.0.2:8200", caFingerprint: "cd".repeat(32), token: pulumi.secret("s.admin") };
const image = { publisher: "example", offer: "buckypaper-kit", sku: "azure", version: "1.0.0" };
const base = { vhsm, resourceGroupName: "rg", subnetId: "s", image };
const byName = (n: string) => h.resources.find((r) => r.name === n && !r.type.startsWith("buckypaper:index:"))!;
const UKI = createHash("sha256").update("some UKI").digest("hex");

beforeAll(async () => {
  h = await installMocks({
    "azure-native:compute:VirtualMachine": () => ({ vmId: "vm-guid" }),
    "azure-native:network:NetworkInterface": () => ({ ipConfigurations: [{ privateIPAddress: "10.1.0.4" }] }),
  });
  c = await import("../../components/index.js");
});

describe.runIf(ready)("AzureConfidentialVm: the OS bound by boot events predicted from the kit's Azure disk", () => {
  let disk: RuntimeDisk;
  let db: { key: string; cert: string; sha256: string };
  let other: { cert: string; sha256: string };
  beforeAll(() => {
    const dir = mkdtempSync(path.join(tmpdir(), "bk-azure-comp-"));
    db = dbKeyPair(dir, "customer db");
    other = dbKeyPair(dir, "someone else's db");
    disk = writeRuntimeDisk({ role: "workload", userDataSource: "azure", sign: db });
  });

  it("registers azure.measuredBoot (UKI in PCR 4, command line with the root hash, PCR 11, db authority), agentInImage on", async () => {
    const vm = new c.AzureConfidentialVm("ev1", {
      ...base,
      bootChain: { manifest: disk.manifest, dbCertificates: [db.cert] },
    });
    await resolve(vm.vmId);
    const wl = byName("ev1-workload").inputs;
    const policy = unsecret(wl.policy);
    const signed = readFileSync(path.join(disk.dir, "BOOTX64.EFI"));
    const digest = bootApplicationDigest(signed, "sha256");
    expect(policy.azure).toEqual({
      requireSecureBoot: true,
      forbidConsole: false,
      measuredBoot: {
        bank: "sha256",
        bootApplications: { allowed: [digest], required: [digest] },
        kernelCmdline: {
          allowed: [disk.cmdline],
          mustContain: expect.arrayContaining([`bk.roothash=${"7a".repeat(32)}`, "systemd.import_credentials=no"]),
          boundByUki: true,
        },
        pcrs: { "11": predictUkiPcr11(signed, "sha256").toString("hex") },
        secureBoot: { enabled: true, authorities: [db.sha256] },
      },
    });
    expect(policy.vtpm).toBeUndefined();
    // What Nitride does with the registration: the runtime's own strict parser takes it as is.
    expect(parsePolicy(policy).azure?.measuredBoot).toEqual(policy.azure.measuredBoot);
    // The kit manifest defaults agentInImage on: the user-data's hash is registered.
    const executed = Buffer.from(String(unsecret(byName("ev1").inputs.osProfile.customData)), "base64");
    expect(unsecret(wl.userDataSha256)).toBe(createHash("sha256").update(executed).digest("hex"));
    expect(byName("ev1").inputs.securityProfile.uefiSettings).toEqual({ secureBootEnabled: true, vTpmEnabled: true });
    const chain = await resolve(vm.attestationChain);
    expect(chain).toContain(
      `OS: bound by boot events (azure.measuredBoot: the guest's event log must replay to the HCL-bound AK's quote; the boot application(s) ${digest.slice(0, 16)}… required in PCR 4 (Authenticode) and no other than the 1 allowed; the kernel command line (inside the UKI) with the verity root hash; exact PCR 11; Secure Boot on (PCR 7)).`,
    );
    expect(chain).toContain(`Secure Boot: on, and the boot verified by db certificate ${db.sha256}`);
    expect(chain).toContain("User-data: bound");
    expect(chain).not.toContain("NOT bound");
  });

  it("pcrs beside the events: both registered", async () => {
    const vm = new c.AzureConfidentialVm("ev2", {
      ...base,
      bootChain: { manifest: disk.manifest, dbCertificates: [db.cert] },
      pcrs: { "4": ["12".repeat(32)] },
    });
    await resolve(vm.vmId);
    const p = unsecret(byName("ev2-workload").inputs.policy);
    expect(p.azure.pcrs).toEqual({ "4": ["12".repeat(32)] });
    expect(p.azure.measuredBoot.secureBoot.authorities).toEqual([db.sha256]);
  });

  it("refuses at preview, naming the field: the kit disk without its db certificate, or with another one", () => {
    expect(() => new c.AzureConfidentialVm("ev3", { ...base, bootChain: { manifest: disk.manifest } })).toThrow(
      /AzureConfidentialVm ev3: bootChain\.dbCertificates is required: the VM runs with Secure Boot on .*this disk's UKI is signed by CN ?= ?customer db; name that certificate here/,
    );
    expect(
      () =>
        new c.AzureConfidentialVm("ev4", {
          ...base,
          bootChain: { manifest: disk.manifest, dbCertificates: [other.cert] },
        }),
    ).toThrow(/AzureConfidentialVm ev4: bootChain\.dbCertificates .*its UKI is not signed by the db certificate/);
    // The old top-level field is not where the prediction reads it.
    expect(
      () =>
        new c.AzureConfidentialVm("ev5", {
          ...base,
          bootChain: { manifest: disk.manifest, dbCertificates: [db.cert] },
          dbCertificates: [db.cert],
        }),
    ).toThrow(/AzureConfidentialVm ev5: dbCertificates goes into bootChain\.dbCertificates with bootChain/);
    expect(
      () =>
        new c.AzureConfidentialVm("ev6", {
          ...base,
          bootChain: { manifest: disk.manifest, dbCertificates: [db.cert], secureBoot: false },
        }),
    ).toThrow(/ev6: bootChain\.secureBoot/);
  });

  it("refuses a kit image built for another cloud's user-data source, naming bootChain.manifest", () => {
    const ec2 = writeRuntimeDisk({ role: "workload", userDataSource: "ec2", sign: db });
    expect(
      () =>
        new c.AzureConfidentialVm("ev7", { ...base, bootChain: { manifest: ec2.manifest, dbCertificates: [db.cert] } }),
    ).toThrow(
      /AzureConfidentialVm ev7: bootChain\.manifest is a kit image whose enclaivelet reads the 'ec2' user-data source.*--cloud azure.*allowed: azure/,
    );
    // A direct-boot kit manifest (no disk) of another source as well.
    expect(
      () => new c.AzureConfidentialVm("ev8", { ...base, bootChain: { manifest: writeKitManifest("gce").manifest } }),
    ).toThrow(/ev8: bootChain\.manifest .*'gce'/);
  });

  it("a disk whose UKI is not the manifest's is refused (the prediction reads the disk the VM boots)", () => {
    const other = writeRuntimeDisk({ role: "workload", userDataSource: "azure", sign: db });
    expect(
      () =>
        new c.AzureConfidentialVm("ev9", {
          ...base,
          bootChain: { manifest: disk.manifest, disk: path.join(other.dir, "disk.raw"), dbCertificates: [db.cert] },
        }),
    ).toThrow(/ev9: bootChain \(manifest\.disk\).*the manifest's UKI is/);
  });
});

describe("AzureConfidentialVm: measuredBoot given directly, pcrs, and what binds nothing", () => {
  const allow = { vhsm, resourceGroupName: "rg", subnetId: "s", allowUnboundUserData: true };

  it("measuredBoot with a required UKI is registered as written (bank sha256), and says so", async () => {
    const measuredBoot = {
      bootApplications: { allowed: [UKI], required: [UKI] },
      secureBoot: { enabled: true, authorities: ["ab".repeat(32)] },
    };
    const vm = new c.AzureConfidentialVm("md1", { ...allow, measuredBoot });
    await resolve(vm.vmId);
    const p = unsecret(byName("md1-workload").inputs.policy);
    expect(p.azure.measuredBoot).toEqual(measuredBoot);
    expect(parsePolicy(p).azure?.measuredBoot).toEqual(measuredBoot);
    const chain = await resolve(vm.attestationChain);
    expect(chain).toContain(
      `OS: bound by boot events (azure.measuredBoot: the guest's event log must replay to the HCL-bound AK's quote; the boot application(s) ${UKI.slice(0, 16)}… required in PCR 4 (Authenticode) and no other than the 1 allowed; Secure Boot on (PCR 7)).`,
    );
    expect(chain).toContain(`db certificate ${"ab".repeat(32)}`);
  });

  it("refuses measuredBoot that binds nothing, or in another bank, naming measuredBoot", () => {
    expect(
      () => new c.AzureConfidentialVm("md2", { ...allow, measuredBoot: { pcrs: { "11": "00".repeat(32) } } }),
    ).toThrow(
      /AzureConfidentialVm md2: measuredBoot does not bind the OS: it needs a required boot application.*PCR 11 only beside it.*allowUnboundOs: true/,
    );
    expect(
      () =>
        new c.AzureConfidentialVm("md3", {
          ...allow,
          measuredBoot: { bank: "sha384", bootApplications: { allowed: [UKI], required: [UKI] } },
        }),
    ).toThrow(
      /md3: measuredBoot\.bank is 'sha384': the Azure vTPM quote carries the SHA-256 bank only; allowed: sha256/,
    );
    expect(
      () =>
        new c.AzureConfidentialVm("md4", {
          ...allow,
          measuredBoot: { bootApplications: { allowed: [UKI] } },
          bootChain: { uki: "/nonexistent.efi" },
        }),
    ).toThrow(/md4: bootChain and measuredBoot are exclusive/);
  });

  it("nothing that binds the OS → refused naming bootChain (and the alternatives), unless the loud opt-out", async () => {
    expect(() => new c.AzureConfidentialVm("nb1", allow)).toThrow(
      /AzureConfidentialVm nb1: bootChain is required to bind the OS: the kit's Azure disk manifest.*or measuredBoot, or pcrs with a PCR 4 value.*allowUnboundOs: true/,
    );
    const vm = new c.AzureConfidentialVm("nb2", { ...allow, allowUnboundOs: true });
    await resolve(vm.vmId);
    expect(await resolve(vm.attestationChain)).toContain("THIS WORKLOAD: the OS is NOT bound (allowUnboundOs)");
    expect(unsecret(byName("nb2-workload").inputs.policy).azure.measuredBoot).toBeUndefined();
  });

  it("pcrs alone (an image the kit cannot predict): registered, and the chain says no event is read", async () => {
    const vm = new c.AzureConfidentialVm("pc1", { ...allow, pcrs: { "4": ["12".repeat(32)] } });
    await resolve(vm.vmId);
    expect(await resolve(vm.attestationChain)).toContain(
      "OS: bound by PCR values only (azure.pcrs; no boot event is read)",
    );
    expect(unsecret(byName("pc1-workload").inputs.policy).azure).toEqual({
      requireSecureBoot: true,
      forbidConsole: false,
      pcrs: { "4": ["12".repeat(32)] },
    });
  });

  it("the facade passes measuredBoot to Azure and refuses akPins there", async () => {
    const measuredBoot = { bootApplications: { allowed: [UKI], required: [UKI] } };
    const vm = new c.ConfidentialVm("fz1", {
      platform: c.Platform.Azure,
      vhsm,
      resourceGroupName: "rg",
      subnetId: "s",
      measuredBoot,
      allowUnboundUserData: true,
    });
    await resolve(vm.workloadId);
    expect(unsecret(h.resources.find((r) => r.name === "fz1-workload")!.inputs.policy).azure.measuredBoot).toEqual(
      measuredBoot,
    );
    expect(
      () =>
        new c.ConfidentialVm("fz2", {
          platform: c.Platform.Azure,
          vhsm,
          resourceGroupName: "rg",
          subnetId: "s",
          measuredBoot,
          akPins: ["ab".repeat(32)],
          allowUnboundUserData: true,
        }),
    ).toThrow(/fz2: akPins applies only to platform aws or gcp/);
    expect(
      () =>
        new c.ConfidentialVm("fz3", {
          platform: c.Platform.Proxmox,
          vhsm,
          measuredBoot,
        } as never),
    ).toThrow(/fz3: measuredBoot applies only to platform aws or gcp or azure/);
  });
});
