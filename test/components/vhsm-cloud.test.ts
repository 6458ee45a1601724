// The Vhsm's `confidential-vm` mode on AWS and Google Cloud (mocked engine: only the cloud APIs and the dynamic
// provider are mocked; the EC2/GCE arguments are the workload components' own settings functions, typed by the
// providers' SDKs, and the user-data goes through the real cloud-init schema validator). The runtime's cloud disk is
// a real GPT disk with a FAT32 ESP holding a real UKI (test/support/runtime-disk.ts); the component predicts the
// measured-boot policy from the disk file and puts it, with the cloud's firmware digest and the AK authentication
// the cloud gives, in the `attestation` every client verifies. Hostile: that very attestation, handed to the
// verifier (verifyRuntime over real HTTPS, a real swtpm as the NitroTPM, simulated SNP reports and Nitro PKI),
// accepts a runtime booted from the disk's UKI and refuses one booted from another disk or with another command
// line, and (GCP) one verified by another db certificate or quoting with another instance's AK certificate. Every
// impossible combination is refused at preview, naming the field.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { installMocks, resolve, unsecret, type MockHarness } from "../support/pulumi-mocks.js";
import { dbKeyPair, haveDiskTools, runtimeUki, writeRuntimeDisk, type RuntimeDisk } from "../support/runtime-disk.js";
import { hasCloudInit, validateUserData } from "../support/cloud-init.js";
import { requireTool } from "../support/prereq.js";
import {
  bootApplicationDigest,
  predictUkiPcr11,
  resolveImage,
  ukiCmdline,
  ukiMeasurements,
} from "../../images/index.js";
import { runtimeExpectation, verifyRuntime, type RuntimeExpectation } from "../../runtime/client/attested-tls.js";
import { vtpmSourceFor } from "../../runtime/server/http/attested-tls.js";
import type { RunningServer } from "../../runtime/server/http/server.js";
import type { SnpSimulator } from "../../runtime/sim/snp.js";
import { simulatedNitroPki, type SimulatedNitroPki } from "../../runtime/sim/nitrotpm.js";
import { SwTpm, haveSwtpm } from "../support/swtpm.js";
import { nitroRunner } from "../support/nitro-vtpm.js";
import { buildBootLog, eccEkTpmt, type BootSpec } from "../runtime/attestation/tpm-fixtures.js";
import { ekNameFromTpmt } from "../../runtime/attestation/aws/ek.js";
import { expectationFor, platform, startAttestedRuntime } from "../runtime/attested-runtime-support.js";
import { GCE_INSTANCE } from "../runtime/attestation/gce-fixtures.js";
import { createGceAkCaSimulator, type GceAkCaSimulator } from "../../runtime/sim/gce-ak-ca.js";
import { provisionGoogleEccAk } from "../support/gce-vtpm.js";
import { encodeUefiVariableData, EFI_IMAGE_SECURITY_DATABASE } from "../../runtime/attestation/tpm/index.js";
import { certificateDer, signatureData } from "../../images/vtpm/index.js";
import { awsSnpMeasurements } from "../../components/aws/facts.js";
import { VHSM_CLOUD_USER_DATA } from "../../components/aws/vhsm-guest.js";
import { createGceEndorsementSimulator, type GceEndorsementSimulator } from "../../runtime/sim/gce-endorsement.js";
import type { RuntimeAttestation } from "../../runtime/client/connection.js";

const EC2_ID = "i-0123456789abcdef0";
/** The instance's EK as EC2 GetInstanceTpmEkPub returns it (ECC P-256 TPMT_PUBLIC). */
const INSTANCE_EK = eccEkTpmt();
let h: MockHarness;
let c: typeof import("../../components/index.js");
let google: GceEndorsementSimulator;
const made: string[] = [];
const ready = haveDiskTools();
let disk: RuntimeDisk;
/** The same runtime disk with its UKI signed by the customer's db key (GCE boots with Secure Boot on). */
let sdisk: RuntimeDisk;
let db: { key: string; cert: string; sha256: string };
let otherDb: { key: string; cert: string; sha256: string };
const M = (n: number) => Buffer.alloc(48, n).toString("hex");

beforeAll(async () => {
  h = await installMocks(
    {
      "aws:ec2/instance:Instance": () => ({ publicIp: "198.51.100.7" }),
      // InstanceTpmEk: EC2 GetInstanceTpmEkPub (--key-format tpmt); the SDK call is tested in test/provider/aws-ek.test.ts.
      "pulumi-nodejs:dynamic/buckypaper:InstanceTpmEk": (i) => ({
        instanceId: i.instanceId,
        ekName: ekNameFromTpmt(INSTANCE_EK),
        ekPublicTpmt: INSTANCE_EK.toString("base64"),
      }),
      // The simulated GCE instance the AK certificates below name (gce-fixtures.ts GCE_INSTANCE).
      "gcp:compute/instance:Instance": (i) => ({
        instanceId: String(GCE_INSTANCE.instanceId),
        project: GCE_INSTANCE.projectId,
        zone: i.zone,
        networkInterfaces: [{ network: "default", accessConfigs: [{ natIp: "203.0.113.9" }] }],
      }),
      // What AttestedRuntime's create returns after verifying (the verification itself: test/provider/attested-runtime).
      "pulumi-nodejs:dynamic/buckypaper:AttestedRuntime": (inputs) => ({
        measurement: (inputs.attestation as { snpMeasurements: string[] }).snpMeasurements[0],
        tlsKeySha256: "5e".repeat(32),
        simulated: false,
        verifiedBy: "the deployer (pulumi up), attested TLS",
        verifiedAt: "2026-12-07T00:00:00.000Z",
        checks: ["policy.measurement: ok"],
        deployer: { mount: "bk-deployer", role: "deployer", keyFile: "/tmp/k.pem" },
        recoveryShares: ["jwe"],
        runtimeInstanceId: "1d".repeat(32),
      }),
    },
    { "aws:region": "us-east-2" },
    (type, name) => (type === "aws:ec2/instance:Instance" ? EC2_ID : `${name}-id`),
  );
  c = await import("../../components/index.js");
  google = await createGceEndorsementSimulator();
  if (ready) {
    disk = writeRuntimeDisk();
    made.push(disk.dir);
    const keys = mkdtempSync(path.join(tmpdir(), "bk-vhsm-db-"));
    made.push(keys);
    db = dbKeyPair(keys, "customer-db");
    otherDb = dbKeyPair(keys, "other-db");
    sdisk = writeRuntimeDisk({ sign: db });
    made.push(sdisk.dir);
  }
}, 60_000);
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

const byName = (n: string) => h.resources.find((r) => r.name === n && !r.type.startsWith("buckypaper:index:"))!;
const cvm = { mode: "confidential-vm" as never };
const awsArgs = () => ({
  ...cvm,
  platform: "aws" as never,
  image: disk.manifest,
  cloudImageId: "ami-0123456789abcdef0",
});
const gcpArgs = () => ({
  ...cvm,
  platform: "gcp" as never,
  image: sdisk.manifest,
  dbCertificates: [db.cert],
  cloudImageId: "projects/bk-prod-7/global/images/bk-runtime",
  zone: "europe-west4-a",
  size: "n2d-standard-4",
  firmwareEndorsement: google
    .sign({ clSpec: 1n, sevSnp: { svn: 5, measurements: { 2: M(2), 4: M(4) } } })
    .toString("base64"),
  gceTcbRootPem: google.rootPem,
});

describe.runIf(requireTool("systemd-boot-efi, binutils, dosfstools and mtools (a UKI on a FAT32 ESP)", ready))(
  "Vhsm confidential-vm on the clouds: what the runtime must prove is computed from its disk",
  () => {
    it("AWS: an SEV-SNP EC2 instance of the AMI; attestation = EC2's firmware digest + the disk's boot policy (sha384) under the NitroTPM document of this instance; no secret in user-data", async () => {
      const v = new c.Vhsm("aws1", awsArgs());
      const att = unsecret(await resolve(v.attestation)) as RuntimeAttestation;
      const vm = byName("aws1-vm").inputs;
      expect(vm.ami).toBe("ami-0123456789abcdef0");
      expect(vm.instanceType).toBe("m6a.large");
      expect(vm.cpuOptions).toEqual({ amdSevSnp: "enabled" });
      expect(vm.metadataOptions.httpTokens).toBe("required");
      expect(vm.associatePublicIpAddress).toBe(true);
      // The runtime's data volume: blank, EBS-encrypted, attached to this instance.
      expect(
        h.resources.find((r) => r.name === "aws1-data" && r.type === "aws:ebs/volume:Volume")!.inputs,
      ).toMatchObject({ size: 10, type: "gp3", encrypted: true });
      expect(
        h.resources.find((r) => r.name === "aws1-data" && r.type === "aws:ec2/volumeAttachment:VolumeAttachment")!
          .inputs,
      ).toMatchObject({ instanceId: EC2_ID, deviceName: "/dev/sdf" });
      // The firmware digest is EC2's for m6a.large's 2 vCPUs, as the workload component computes it.
      const entry = resolveImage("aws" as never, "snp" as never);
      expect(att.snpMeasurements).toEqual(awsSnpMeasurements(entry, 2, true));
      expect(att.allowAnyInstance).toBe(true);
      expect(att.snpHostData).toBeUndefined();
      expect(att.runtimeInstanceId).toBe("1d".repeat(32));
      const policy = JSON.parse(att.policy!);
      expect(policy.snp).toEqual({ allowDebug: false, allowMigrationAgent: false });
      expect(policy.vtpm.nitroTpm).toEqual({ instanceIds: [EC2_ID] });
      const boot = policy.vtpm.measuredBoot;
      expect(boot.bank).toBe("sha384");
      expect(boot.bootApplications.required).toEqual([bootApplicationDigest(disk.uki, "sha384")]);
      expect(boot.kernelCmdline).toMatchObject({ allowed: [disk.cmdline], boundByUki: true });
      expect(boot.kernelCmdline.mustContain).toContain("bk.roothash=" + "7a".repeat(32));
      expect(boot.pcrs["11"]).toBe(predictUkiPcr11(disk.uki, "sha384").toString("hex"));
      expect(policy.vtpm.ekPublics).toBeUndefined(); // the NitroTPM document authenticates this image's AK
      expect(await resolve(v.url)).toBe("https://198.51.100.7:8200");
      // AttestedRuntime got the same expectation (before the instance id is known it does not exist).
      const rt = unsecret(byName("aws1-runtime").inputs) as Record<string, unknown>;
      expect(JSON.parse((rt.attestation as RuntimeAttestation).policy!)).toEqual(policy);
      expect(String(rt.launch)).toContain(EC2_ID);
      const summary = (await resolve(v.attestationSummary))!;
      expect(summary.unseal).toMatch(
        /^NO auto-unseal: the SNP measurement on this cloud is the provider's firmware only/,
      );
      expect(summary.osBinding).toMatch(/NitroTPM attestation document .* module_id must be this instance/);
      // The user-data: a fixed marker, no secret, no key, nothing of the bootstrap.
      const ud = String(unsecret(vm.userData));
      expect(ud).toBe(VHSM_CLOUD_USER_DATA);
      for (const bad of ["begin", "token", "share", "jwe", "key:", "password"])
        expect(ud.toLowerCase()).not.toContain(bad);
      if (requireTool("cloud-init (Debian package)", hasCloudInit)) {
        const r = validateUserData(ud);
        expect(r.status, r.output).toBe(0);
      }
    });

    it("GCP: an N2D SEV-SNP Shielded VM of the image; attestation = Google's endorsed digest for 4 vCPUs + the disk's boot policy under Google's AK certificate of this instance", async () => {
      const v = new c.Vhsm("gcp1", gcpArgs());
      const att = unsecret(await resolve(v.attestation)) as RuntimeAttestation;
      const vm = byName("gcp1-vm").inputs;
      expect(vm.machineType).toBe("n2d-standard-4");
      expect(vm.confidentialInstanceConfig).toEqual({ confidentialInstanceType: "SEV_SNP" });
      expect(vm.shieldedInstanceConfig).toEqual({
        enableSecureBoot: true,
        enableVtpm: true,
        enableIntegrityMonitoring: true,
      });
      expect(vm.bootDisk.initializeParams.image).toBe("projects/bk-prod-7/global/images/bk-runtime");
      expect(vm.networkInterfaces[0].accessConfigs).toEqual([{}]);
      expect(
        h.resources.find((r) => r.name === "gcp1-data" && r.type === "gcp:compute/disk:Disk")!.inputs,
      ).toMatchObject({
        size: 10,
        type: "pd-balanced",
        zone: "europe-west4-a",
      });
      expect(
        h.resources.find((r) => r.name === "gcp1-data" && r.type === "gcp:compute/attachedDisk:AttachedDisk")!.inputs,
      ).toMatchObject({ deviceName: "bk-data", zone: "europe-west4-a" });
      expect(att.snpMeasurements).toEqual([M(4)]);
      expect(att.allowAnyInstance).toBe(true);
      const policy = JSON.parse(att.policy!);
      expect(policy.snp).toEqual({ allowDebug: false, allowMigrationAgent: true });
      expect(policy.vtpm.gceAkCertificate).toEqual({
        projectIds: [GCE_INSTANCE.projectId],
        zones: ["europe-west4-a"],
        instanceIds: [String(GCE_INSTANCE.instanceId)],
      });
      expect(policy.vtpm.measuredBoot.bank).toBe("sha256");
      // Secure Boot on (Shielded VM) under the customer's db certificate: the signed UKI required, its authority too.
      expect(policy.vtpm.measuredBoot.bootApplications.required).toEqual([bootApplicationDigest(sdisk.uki, "sha256")]);
      expect(policy.vtpm.measuredBoot.secureBoot).toEqual({ enabled: true, authorities: [db.sha256] });
      expect(await resolve(v.url)).toBe("https://203.0.113.9:8200");
      const ud = String(unsecret(vm.metadata)["user-data"]);
      expect(ud).toBe(VHSM_CLOUD_USER_DATA);
      expect(unsecret(vm.metadata)["block-project-ssh-keys"]).toBe("true");
      expect((await resolve(v.attestationSummary))!.osBinding).toMatch(/SVN 5/);
    });

    it("AWS with the runtime image's own AK (runtime.vtpm.ak runtime-ak, no nitro-tpm-attest): EK credential activation against this instance's EK (sha256 bank), or pinned AKs when given, instead of the NitroTPM document", async () => {
      const rd = writeRuntimeDisk({ cloud: "ec2", unseal: "shares", ak: "runtime-ak" });
      made.push(rd.dir);
      const e = new c.Vhsm("awsak0", { ...awsArgs(), image: rd.manifest });
      const ekPolicy = JSON.parse((unsecret(await resolve(e.attestation)) as RuntimeAttestation).policy!);
      // The EK EC2 returns for THIS instance (InstanceTpmEk after the instance), for the verifier's round trip.
      const ekRes = h.resources.find((r) => r.name === "awsak0-ek" && r.type.endsWith("InstanceTpmEk"))!;
      expect(ekRes.inputs.instanceId).toBe(EC2_ID);
      expect(ekPolicy.vtpm.ekPublics).toEqual([INSTANCE_EK.toString("base64")]);
      expect(ekPolicy.vtpm.ekNames).toEqual([ekNameFromTpmt(INSTANCE_EK)]);
      expect(ekPolicy.vtpm.akPins).toBeUndefined();
      expect(ekPolicy.vtpm.nitroTpm).toBeUndefined();
      expect(ekPolicy.vtpm.measuredBoot.bank).toBe("sha256");
      expect(ekPolicy.vtpm.measuredBoot.bootApplications.required).toEqual([bootApplicationDigest(rd.uki, "sha256")]);
      expect((await resolve(e.attestationSummary))!.osBinding).toMatch(
        /EK credential activation against this instance's EK/,
      );
      // The provider's verifier gets the same expectation (it runs the round trip: attested-vtpm-ek.test.ts).
      const rt0 = unsecret(h.resources.find((r) => r.name === "awsak0-runtime")!.inputs) as Record<string, unknown>;
      expect(JSON.parse((rt0.attestation as RuntimeAttestation).policy!)).toEqual(ekPolicy);
      const pin = "ab".repeat(32);
      const v = new c.Vhsm("awsak1", { ...awsArgs(), image: rd.manifest, akPins: [pin.toUpperCase()] });
      const policy = JSON.parse((unsecret(await resolve(v.attestation)) as RuntimeAttestation).policy!);
      expect(policy.vtpm.akPins).toEqual([pin]);
      expect(policy.vtpm.nitroTpm).toBeUndefined();
      expect(policy.vtpm.measuredBoot.bank).toBe("sha256");
      expect(policy.vtpm.measuredBoot.bootApplications.required).toEqual([bootApplicationDigest(rd.uki, "sha256")]);
      expect((await resolve(v.attestationSummary))!.osBinding).toMatch(/pinned AK \(akPins/);
      // A GCE runtime disk (Google's AK) on GCP needs no pin.
      const g = writeRuntimeDisk({ cloud: "gce", unseal: "shares", ak: "google-ak", sign: db });
      made.push(g.dir);
      const gv = new c.Vhsm("gcpak", { ...gcpArgs(), image: g.manifest });
      expect(
        JSON.parse((unsecret(await resolve(gv.attestation)) as RuntimeAttestation).policy!).vtpm.gceAkCertificate,
      ).toBeDefined();
    });

    it("publicHost names the address instead of an ephemeral one", async () => {
      const v = new c.Vhsm("aws2", { ...awsArgs(), publicHost: "vhsm.example.com", subnetId: "subnet-1" });
      expect(await resolve(v.url)).toBe("https://vhsm.example.com:8200");
      expect(byName("aws2-vm").inputs.associatePublicIpAddress).toBeUndefined();
      expect(byName("aws2-vm").inputs.subnetId).toBe("subnet-1");
    });
  },
);

describe.runIf(ready)("Vhsm confidential-vm on the clouds: impossible combinations are refused at preview", () => {
  const mk =
    (n: string, extra: Record<string, unknown>, base: () => object = awsArgs) =>
    () =>
      new c.Vhsm(n, { ...base(), ...extra } as never);
  it("names the field and the allowed values", () => {
    expect(mk("x1", { tee: "tdx" })).toThrow(
      /Vhsm x1: tee is 'tdx': the runtime's guest on platform 'aws' runs on SEV-SNP only .*; allowed: snp/,
    );
    expect(mk("x2", { tee: "tdx" }, gcpArgs)).toThrow(/Vhsm x2: tee is 'tdx'.*no TDX evidence path; allowed: snp/);
    expect(mk("x3", { image: writeRuntimeDisk({ role: "workload" }).manifest })).toThrow(
      /Vhsm x3: image '.*' is a workload image \(role workload\); the vHSM boots the runtime role: .*--format disk --cloud ec2; allowed: runtime/,
    );
    expect(mk("x4", { image: writeRuntimeDisk({ psp: "virtio-psp" }).manifest })).toThrow(
      /Vhsm x4: image \(runtime\.psp\) is 'virtio-psp'.*; allowed: sev-guest/,
    );
    expect(mk("x5", { image: writeRuntimeDisk({ disk: false }).manifest })).toThrow(
      /Vhsm x5: image \(disk\) '.*' records no cloud disk/,
    );
    expect(mk("x6", { size: "m5.large" })).toThrow(/Vhsm x6: size .*m5\.large/);
    expect(mk("x7", { size: "n2-standard-4" }, gcpArgs)).toThrow(/Vhsm x7: size .*n2-standard-4/);
    expect(mk("x8", { region: "ap-south-1" })).toThrow(/Vhsm x8: region is 'ap-south-1'.*; allowed: .*us-east-2/);
    expect(mk("x9", { cloudImageId: "my-ami" })).toThrow(/Vhsm x9: cloudImageId is 'my-ami'; must be the AMI id/);
    expect(mk("x10", { cloudImageId: undefined })).toThrow(/Vhsm x10: cloudImageId is required on platform 'aws'/);
    expect(mk("x11", { image: undefined })).toThrow(/Vhsm x11: image is required on platform 'aws'/);
    expect(mk("x12", { firmwareEndorsement: undefined }, gcpArgs)).toThrow(
      /Vhsm x12: firmwareEndorsement is required on platform 'gcp'/,
    );
    expect(mk("x13", { gceTcbRootPem: undefined }, gcpArgs)).toThrow(/Vhsm x13: gceTcbRootPem is required/);
    expect(mk("x14", { zone: undefined }, gcpArgs)).toThrow(/Vhsm x14: zone is required on platform 'gcp'/);
    expect(mk("x15", { zone: "europe-west4-a" })).toThrow(
      /Vhsm x15: zone is only allowed on platform gcp; allowed: gcp/,
    );
    expect(mk("x16", { region: "us-east-2" }, gcpArgs)).toThrow(/Vhsm x16: region is only allowed on platform aws/);
    expect(mk("x17", { hostData: "ab".repeat(32) })).toThrow(/Vhsm x17: hostData is not settable on platform 'aws'/);
    expect(mk("x18", { vcpus: 4 })).toThrow(
      /Vhsm x18: vcpus is not settable on platform 'aws': the vCPUs come from size/,
    );
    expect(mk("x19", { firmware: "/x.fd" }, gcpArgs)).toThrow(/Vhsm x19: firmware is not settable on platform 'gcp'/);
    expect(mk("x20", { port: 9000 })).toThrow(/Vhsm x20: port is 9000.*; allowed: 8200/);
    expect(
      mk("x21", {
        ssh: { host: "h", privateKey: pulumi.secret("k") },
      }),
    ).toThrow(/Vhsm x21: ssh is not used on platform 'aws'/);
    // Another endorsement signer than the root the program gave: refused at preview.
    const stranger = gcpArgs();
    expect(
      mk("x22", { gceTcbRootPem: "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n" }, () => stranger),
    ).toThrow(/Vhsm x22: firmwareEndorsement does not verify/);
    expect(mk("x23", {}, () => ({ ...gcpArgs(), size: "n2d-standard-8" }))).toThrow(
      /Vhsm x23: firmwareEndorsement endorses no SEV-SNP measurement for 8 vCPUs/,
    );
    // Azure is deployable (test/components/vhsm-azure.test.ts) and needs the runtime's Azure disk.
    expect(() => new c.Vhsm("x24", { ...cvm, platform: "azure" as never })).toThrow(
      /Vhsm x24: image is required on platform 'azure': the manifest.json of the runtime's cloud disk \(buckypaper image build --role runtime --runtime-psp azure-hcl --format disk --cloud azure\)/,
    );
    expect(() => new c.Vhsm("x25", { cloudImageId: "ami-0123456789abcdef0" })).toThrow(
      /Vhsm x25: cloudImageId is only allowed when mode is 'confidential-vm'/,
    );
    // A disk whose UKI is not the manifest's: refused before anything is created.
    const swapped = writeRuntimeDisk();
    made.push(swapped.dir);
    const other = runtimeUki(path.join(swapped.dir, "other"), "init=/bin/sh");
    const diskFile = path.join(swapped.dir, "disk.raw");
    const raw = readFileSync(diskFile);
    const at = raw.indexOf(swapped.uki.subarray(0, 4096));
    expect(at).toBeGreaterThan(0);
    other.uki.copy(raw, at, 0, Math.min(other.uki.length, swapped.uki.length));
    writeFileSync(diskFile, raw);
    expect(mk("x26", { image: swapped.manifest })).toThrow(
      /Vhsm x26: image \(manifest\.disk\) .*BOOTX64\.EFI has SHA-256/,
    );
    // The manifest's runtime fields (image build --role runtime --cloud): the cloud, the unseal, whose AK.
    const rd = (o: Parameters<typeof writeRuntimeDisk>[0]) => {
      const d = writeRuntimeDisk(o);
      made.push(d.dir);
      return d.manifest;
    };
    expect(mk("x27", { image: rd({ cloud: "gce" }) })).toThrow(
      /Vhsm x27: image \(runtime\.cloud\) is 'gce': that disk's runtime reads another cloud's vTPM.*; allowed: ec2/,
    );
    expect(mk("x28", { image: rd({ unseal: "derived-key" }) })).toThrow(
      /Vhsm x28: image \(runtime\.unseal\) is 'derived-key': on a cloud the SNP measurement is the firmware's only.*; allowed: shares/,
    );
    expect(mk("x29", { image: rd({ cloud: "gce", ak: "runtime-ak" }) }, gcpArgs)).toThrow(
      /Vhsm x29: image \(runtime\.vtpm\.ak\) is 'runtime-ak'; allowed: google-ak/,
    );
    expect(mk("x30", { akPins: ["xyz"] })).toThrow(/Vhsm x30: akPins\[0\] must be 64 hex digits/);
    expect(mk("x31", { akPins: ["ab".repeat(32)] }, gcpArgs)).toThrow(
      /Vhsm x31: akPins is only allowed on platform aws/,
    );
    // GCE boots with Secure Boot on: an unsigned UKI would never boot; a certificate that did not sign it is refused.
    expect(mk("x33", { image: disk.manifest, dbCertificates: undefined }, gcpArgs)).toThrow(
      /Vhsm x33: dbCertificates is required: the instance runs with Secure Boot on .*this disk's UKI is unsigned, so the VM would not boot/,
    );
    expect(mk("x34", { dbCertificates: [otherDb.cert] }, gcpArgs)).toThrow(
      /Vhsm x34: dbCertificates .*its UKI is not signed by the db certificate/,
    );
    expect(mk("x35", { dbCertificates: undefined }, gcpArgs)).toThrow(
      /Vhsm x35: dbCertificates is required: .*this disk's UKI is signed by .*CN ?= ?customer-db/,
    );
    expect(mk("x32", { dataDiskGb: 5 }, gcpArgs)).toThrow(
      /Vhsm x32: dataDiskGb is 5; must be an integer 10\.\.65536 on gcp/,
    );
    for (const n of ["x1", "x3", "x22", "x26", "x27", "x28", "x29", "x30", "x33", "x34"])
      expect(h.resources.some((r) => r.name === `${n}-vm`)).toBe(false);
  });
});

// The hostile half: the component's own `attestation` (its vtpm section, parsed by the verifier as the provider, the
// CLI and the enclaivelet parse it) against runtimes answering over real HTTPS with a real swtpm as the NitroTPM,
// the document from a simulated Nitro PKI (module_id = the instance), and simulated SNP reports. The SNP half of the
// expectation is the simulator's (the catalog's EC2 digest cannot be produced here); the vTPM half is the component's.
describe.runIf(ready && haveSwtpm())(
  "Vhsm on AWS: the attestation output refuses a runtime not booted from the disk",
  () => {
    let sim: SnpSimulator;
    let pki: SimulatedNitroPki;
    const tpms: SwTpm[] = [];
    const servers: RunningServer[] = [];
    const logDir = mkdtempSync(path.join(tmpdir(), "bk-vhsm-cloud-"));
    made.push(logDir);

    /** A runtime whose NitroTPM logged the boot of `uki` (its PE digest in PCR 4, systemd-stub's sections in PCR 11). */
    async function runtimeBooted(uki: Buffer, spec: BootSpec = {}, instance = EC2_ID): Promise<RunningServer> {
      const tpm = await SwTpm.start();
      tpms.push(tpm);
      const boot = buildBootLog({
        sha384: true,
        apps: [bootApplicationDigest(uki, "sha256")],
        apps384: [bootApplicationDigest(uki, "sha384")],
        cmdline: ukiCmdline(uki)!,
        pcr11: ukiMeasurements(uki).flatMap((m) => [Buffer.from(m.name + "\0", "latin1"), m.data]),
        ...spec,
      });
      for (let i = 0; i < boot.extends.length; i++) {
        const [pcr, d256] = boot.extends[i];
        const d384 = boot.extends384[i][1];
        const r = tpm.tool(["tpm2_pcrextend", `${pcr}:sha256=${d256.toString("hex")},sha384=${d384.toString("hex")}`]);
        if (r.status !== 0) throw new Error(r.stderr.toString());
      }
      const log = path.join(logDir, `log-${tpms.length}`);
      writeFileSync(log, boot.log);
      const { server } = await startAttestedRuntime({
        attestationBody: `vtpm {\n tcti = "${tpm.tcti}"\n event_log = "${log}"\n nitro_tpm = true\n }`,
        vtpmSource: vtpmSourceFor(
          { tcti: tpm.tcti, eventLog: log, nitroTpm: true },
          nitroRunner(pki, () => tpm, instance),
        ),
      });
      servers.push(server);
      return server;
    }

    beforeAll(async () => {
      pki = await simulatedNitroPki();
      sim = await platform();
    }, 120_000);
    afterAll(async () => {
      for (const s of servers) await s.close();
      for (const t of tpms) await t.stop();
    });

    it("accepts the disk's UKI on this instance; refuses another disk, a command-line override and another instance", async () => {
      const v = new c.Vhsm("awsh", awsArgs());
      const att = unsecret(await resolve(v.attestation)) as RuntimeAttestation;
      const vtpm = JSON.parse(att.policy!).vtpm;
      const e = runtimeExpectation({ ...expectationFor(sim), policy: JSON.stringify({ vtpm }) });
      const expected: RuntimeExpectation = { ...e, trust: { ...e.trust, aws: { testRoots: [pki.rootDer] } } };
      const failed = (x: { checks: { id: string; ok: boolean }[] }) => x.checks.filter((k) => !k.ok).map((k) => k.id);

      const good = await verifyRuntime({ url: (await runtimeBooted(disk.uki)).url, expected });
      expect(good.reason).toBeUndefined();
      expect(good.ok).toBe(true);
      for (const id of [
        "boot.applications",
        "boot.kernel-cmdline",
        "boot.pcrs",
        "aws.document-pcrs",
        "binding.vtpm-ak",
      ])
        expect(good.checks.find((k) => k.id === id)?.ok, id).toBe(true);

      // Another disk: a UKI whose command line drops to a shell — another PE digest, another PCR 11.
      const other = runtimeUki(path.join(logDir, "other"), "init=/bin/sh").uki;
      const otherDisk = await verifyRuntime({ url: (await runtimeBooted(other)).url, expected });
      expect(otherDisk.ok).toBe(false);
      expect(failed(otherDisk)).toEqual(["boot.applications", "boot.kernel-cmdline", "boot.pcrs"]);

      // The disk's UKI, but a command line override measured by systemd-stub (PCR 12).
      const override = await verifyRuntime({
        url: (await runtimeBooted(disk.uki, { pcr12Cmdline: disk.cmdline + " init=/bin/sh" })).url,
        expected,
      });
      expect(failed(override)).toEqual(["boot.kernel-cmdline"]);

      // The same disk on another EC2 instance (its NitroTPM document names that one): not this runtime.
      const elsewhere = await verifyRuntime({
        url: (await runtimeBooted(disk.uki, {}, "i-0fedcba9876543210")).url,
        expected,
      });
      expect(elsewhere.ok).toBe(false);
      expect(failed(elsewhere)).toEqual(["aws.document-instance", "vtpm.ak-authenticated"]);
    }, 180_000);
  },
);

// The same on GCP: the component's attestation (Google's AK certificate of this instance, the signed UKI under Secure
// Boot with the customer's db authority) against runtimes whose swtpm is provisioned like a Shielded VM's vTPM with an
// AK certificate from a simulated Google EK/AK CA.
describe.runIf(ready && haveSwtpm())(
  "Vhsm on GCP: the attestation output refuses a runtime not booted from the disk",
  () => {
    let sim: SnpSimulator;
    let akCa: GceAkCaSimulator;
    const tpms: SwTpm[] = [];
    const servers: RunningServer[] = [];
    const logDir = mkdtempSync(path.join(tmpdir(), "bk-vhsm-gcp-"));
    made.push(logDir);

    async function runtimeBooted(
      uki: Buffer,
      o: { authority?: string; instance?: typeof GCE_INSTANCE; spec?: BootSpec } = {},
    ): Promise<RunningServer> {
      const tpm = await SwTpm.start();
      tpms.push(tpm);
      const cert = certificateDer(readFileSync(o.authority ?? db.cert), "db");
      const boot = buildBootLog({
        apps: [bootApplicationDigest(uki, "sha256")],
        cmdline: ukiCmdline(uki)!,
        pcr11: ukiMeasurements(uki).flatMap((m) => [Buffer.from(m.name + "\0", "latin1"), m.data]),
        pcr7Authority: encodeUefiVariableData(
          EFI_IMAGE_SECURITY_DATABASE,
          "db",
          signatureData(cert, "00000000-0000-0000-0000-000000000000"),
        ),
        ...o.spec,
      });
      for (const [pcr, d] of boot.extends) tpm.extend(pcr, d);
      const log = path.join(logDir, `log-${tpms.length}`);
      writeFileSync(log, boot.log);
      await provisionGoogleEccAk(tpm, (ak) => akCa.issue(ak, o.instance ?? GCE_INSTANCE));
      const { server } = await startAttestedRuntime({
        attestationBody: `vtpm {\n tcti = "${tpm.tcti}"\n event_log = "${log}"\n google_ak = true\n }`,
      });
      servers.push(server);
      return server;
    }

    beforeAll(async () => {
      akCa = await createGceAkCaSimulator();
      sim = await platform();
    }, 120_000);
    afterAll(async () => {
      for (const s of servers) await s.close();
      for (const t of tpms) await t.stop();
    });

    it("accepts the signed UKI on this instance; refuses another disk, another db authority and another instance", async () => {
      const v = new c.Vhsm("gcph", gcpArgs());
      const att = unsecret(await resolve(v.attestation)) as RuntimeAttestation;
      const vtpm = JSON.parse(att.policy!).vtpm;
      const e = runtimeExpectation({ ...expectationFor(sim), policy: JSON.stringify({ vtpm }) });
      const expected: RuntimeExpectation = { ...e, trust: { ...e.trust, gce: { simulatedAkRoots: [akCa.rootDer] } } };
      const failed = (x: { checks: { id: string; ok: boolean }[] }) => x.checks.filter((k) => !k.ok).map((k) => k.id);

      const good = await verifyRuntime({ url: (await runtimeBooted(sdisk.uki)).url, expected });
      expect(good.reason).toBeUndefined();
      expect(good.ok).toBe(true);

      const other = runtimeUki(path.join(logDir, "other"), "init=/bin/sh").uki;
      const otherDisk = await verifyRuntime({ url: (await runtimeBooted(other)).url, expected });
      expect(failed(otherDisk)).toEqual(["boot.applications", "boot.kernel-cmdline", "boot.pcrs"]);

      const otherAuthority = await verifyRuntime({
        url: (await runtimeBooted(sdisk.uki, { authority: otherDb.cert })).url,
        expected,
      });
      expect(otherAuthority.ok).toBe(false);
      expect(failed(otherAuthority)).toEqual(["boot.secure-boot-authority"]);

      const elsewhere = await verifyRuntime({
        url: (await runtimeBooted(sdisk.uki, { instance: { ...GCE_INSTANCE, instanceId: 1n } })).url,
        expected,
      });
      expect(elsewhere.ok).toBe(false);
      expect(failed(elsewhere)).toEqual(["vtpm.gce-instance", "vtpm.ak-authenticated"]);
    }, 240_000);
  },
);

describe.runIf(ready && requireTool("virt-fw-vars (PyPI virt-firmware)", haveVirtFwVars()))(
  "Vhsm confidential-vm with a kit image (AwsKitImage / GcpKitImage): one source for the enrolled and registered db certificate",
  () => {
    it("AWS: the runtime VM boots the kit image's AMI; its policy requires the boot verified by the certificate the AMI enrolls", async () => {
      const rd = writeRuntimeDisk({ cloud: "ec2", unseal: "shares", sign: db });
      made.push(rd.dir);
      const img = new c.AwsKitImage("rkit", {
        manifest: rd.manifest,
        bucket: "bk-images",
        pkCertificate: db.cert,
        dbCertificates: [db.cert],
      });
      const v = new c.Vhsm("awskit", { ...cvm, platform: "aws" as never, kitImage: img });
      const att = unsecret(await resolve(v.attestation)) as RuntimeAttestation;
      expect(await resolve(img.amiId)).toBe("rkit-ami-id"); // the disk checked and uploaded
      expect(byName("awskit-vm").inputs.ami).toBe("rkit-ami-id");
      const boot = JSON.parse(att.policy!).vtpm.measuredBoot;
      expect(boot.secureBoot).toEqual({ enabled: true, authorities: [db.sha256] });
      expect(boot.bootApplications.required).toEqual([bootApplicationDigest(rd.uki, "sha384")]);
      // The kit's AMI is read like any other before the instance uses it (UEFI + TpmSupport v2.0).
      expect(
        h.calls.some((x) => x.token === "aws:ec2/getAmi:getAmi" && JSON.stringify(x.inputs).includes("rkit-ami-id")),
      ).toBe(true);
    });

    it("refuses kitImage beside image/cloudImageId/dbCertificates, of the other cloud, or off the clouds, naming the field", async () => {
      const rd = writeRuntimeDisk({ cloud: "gce", unseal: "shares", ak: "google-ak", sign: db });
      made.push(rd.dir);
      const gimg = new c.GcpKitImage("rgkit", {
        manifest: rd.manifest,
        bucket: "bk-images",
        pkCertificate: db.cert,
        dbCertificates: [db.cert],
        archiveDir: rd.dir,
      });
      const { image: _i, dbCertificates: _d, cloudImageId: _c, ...gcpRest } = gcpArgs();
      expect(() => new c.Vhsm("gk1", { ...gcpRest, kitImage: gimg } as never)).not.toThrow();
      expect(() => new c.Vhsm("gk2", { ...gcpRest, kitImage: gimg, image: rd.manifest } as never)).toThrow(
        /Vhsm gk2: image and kitImage are exclusive/,
      );
      expect(() => new c.Vhsm("gk3", { ...gcpRest, kitImage: gimg, dbCertificates: [otherDb.cert] } as never)).toThrow(
        /Vhsm gk3: dbCertificates and kitImage are exclusive/,
      );
      expect(() => new c.Vhsm("gk4", { ...cvm, platform: "aws" as never, kitImage: gimg })).toThrow(
        /Vhsm gk4: kitImage is an image of a disk built for 'gce'; allowed: ec2/,
      );
      expect(() => new c.Vhsm("gk5", { ...cvm, platform: "qemu" as never, kitImage: gimg })).toThrow(
        /Vhsm gk5: kitImage is only allowed on platform aws or gcp/,
      );
      // The image (and the archive it uploads) is complete before the test's files are removed.
      await resolve(gimg.imageId);
    });
  },
);

function haveVirtFwVars(): boolean {
  return spawnSync("virt-fw-vars", ["--help"]).status === 0;
}
