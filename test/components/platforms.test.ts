// Mocked-engine tests of the GCP, Azure, Proxmox and QEMU components and the cloud-neutral facade:
// the cloud resources' inputs, the registered reference values, and preview-time validation.
import { createHash } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { installMocks, resolve, unsecret, type MockHarness } from "../support/pulumi-mocks.js";
import { noteIfSharedMissing, sharedPath } from "../support/shared.js";
import {
  describeOvmf,
  firmwareDescriptionJson,
  measureTdx,
  parseOvmf,
  snpLaunchDigest,
  snpOvmfHash,
} from "../../images/index.js";
import { readFileSync } from "node:fs";
import { hasCloudInit, validateUserData } from "../support/cloud-init.js";
import { requireTool } from "../support/prereq.js";
import { writeKitManifest } from "../support/kit-manifest.js";
import { dbKeyPair } from "../support/db-key.js";

let h: MockHarness;
let c: typeof import("../../components/index.js");

/** A customer's Secure Boot db certificate (PEM), made once by openssl. */
let cert: { path: string; sha256: string } | undefined;
function dbCert(): { path: string; sha256: string } {
  if (cert) return cert;
  const k = dbKeyPair(mkdtempSync(path.join(tmpdir(), "bk-dbcert-")), "customer db");
  cert = { path: k.cert, sha256: k.sha256 };
  return cert;
}
const vhsm = { url: "https://10.0.0.2:8200", caFingerprint: "cd".repeat(32), token: pulumi.secret("s.admin") };
const ssh = {
  host: "pve1.lan",
  privateKey: pulumi.secret("-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----"),
};
const haveShared = noteIfSharedMissing("component tests that measure the Debian OVMF");
const ovmfPath = sharedPath("vectors/debian-bookworm-ovmf/OVMF.fd");

beforeAll(async () => {
  h = await installMocks({
    "gcp:compute/instance:Instance": () => ({ instanceId: "1234567890" }),
    "azure-native:compute:VirtualMachine": () => ({ vmId: "vm-guid" }),
    "azure-native:network:NetworkInterface": () => ({ ipConfigurations: [{ privateIPAddress: "10.1.0.4" }] }),
    "command:remote:Command": () => ({ stdout: "" }),
  });
  c = await import("../../components/index.js");
});

const byName = (n: string) => h.resources.find((r) => r.name === n && !r.type.startsWith("buckypaper:index:"))!;

describe.runIf(haveShared)("GcpConfidentialVm", () => {
  it("SEV-SNP on N2D: Milan platform, TERMINATE on maintenance, shielded VM, gce-layout digest", async () => {
    const fw = describeOvmf(parseOvmf(readFileSync(ovmfPath)), snpOvmfHash(readFileSync(ovmfPath)));
    const vm = new c.GcpConfidentialVm("g1", {
      vhsm,
      zone: "us-central1-a",
      machineType: "n2d-standard-4",
      firmwareDescription: JSON.stringify(firmwareDescriptionJson(fw)),
      allowUnboundOs: true,
    });
    expect(await resolve(vm.instanceId)).toBe("1234567890");
    const inst = byName("g1").inputs;
    expect(inst.confidentialInstanceConfig).toEqual({ confidentialInstanceType: "SEV_SNP" });
    expect(inst.minCpuPlatform).toBe("AMD Milan");
    expect(inst.scheduling.onHostMaintenance).toBe("TERMINATE");
    expect(inst.shieldedInstanceConfig).toEqual({
      enableSecureBoot: true,
      enableVtpm: true,
      enableIntegrityMonitoring: true,
    });
    expect(inst.metadata["block-project-ssh-keys"]).toBe("true");
    expect(String(unsecret(inst.metadata["user-data"]))).toContain("#cloud-config");
    const expected = snpLaunchDigest({ firmware: fw, vcpus: 4, vmm: "gce" }).toString("hex");
    expect(await resolve(vm.expectedMeasurements)).toEqual([expected]);
    await resolve(vm.workloadId); // registered after the instance
    expect(unsecret(byName("g1-workload").inputs.snpMeasurements)).toEqual([expected]);
  });

  it("TDX on C3 with endorsed MRTDs", async () => {
    const mrtd = "ab".repeat(48);
    const vm = new c.GcpConfidentialVm("g2", {
      vhsm,
      tee: c.Tee.Tdx,
      zone: "us-central1-a",
      expectedMeasurements: [mrtd],
      allowUnboundOs: true,
    });
    await resolve(vm.instanceId);
    const inst = byName("g2").inputs;
    expect(inst.machineType).toBe("c3-standard-4");
    expect(inst.confidentialInstanceConfig).toEqual({ confidentialInstanceType: "TDX" });
    expect(inst.minCpuPlatform).toBe("Intel Sapphire Rapids");
    await resolve(vm.workloadId); // registered after the instance
    expect(unsecret(byName("g2-workload").inputs.tdx)).toEqual([{ mrtd }]);
  });

  it("names the field when the measurement cannot be known or the shape is wrong", () => {
    expect(() => new c.GcpConfidentialVm("g3", { vhsm, zone: "z" })).toThrow(
      /firmwareDescription or expectedMeasurements is required/,
    );
    expect(
      () =>
        new c.GcpConfidentialVm("g4", {
          vhsm,
          zone: "z",
          machineType: "e2-standard-4",
          expectedMeasurements: ["ab".repeat(48)],
        }),
    ).toThrow(
      /GcpConfidentialVm g4: machineType 'e2-standard-4' is not an SEV-SNP\/TDX-capable gcp instance type.*; allowed: n2d-standard-2/,
    );
    expect(
      () =>
        new c.GcpConfidentialVm("g5", {
          vhsm,
          zone: "z",
          tee: c.Tee.Tdx,
          machineType: "n2d-standard-4",
          expectedMeasurements: ["ab".repeat(48)],
        }),
    ).toThrow(/machineType 'n2d-standard-4' \(n2d-standard\) does not support tdx; allowed: c3-standard-4/);
  });
});

describe("AzureConfidentialVm", () => {
  it("ConfidentialVM security type, DiskWithVMGuestState, vTPM + secure boot, customData base64, verifiable facts registered", async () => {
    const vm = new c.AzureConfidentialVm("a1", {
      vhsm,
      resourceGroupName: "rg",
      subnetId: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/default",
      dataVolume: { sizeGb: 8 },
      idKeyDigests: ["ef".repeat(48)],
      secrets: { token: pulumi.secret("t0ps3cret") },
      allowUnboundOs: true,
      allowUnboundUserData: true,
    });
    expect(await resolve(vm.vmId)).toBe("vm-guid");
    expect(await resolve(vm.attestationChain)).toMatch(
      /the OS is NOT bound \(allowUnboundOs\)\. User-data: NOT bound \(allowUnboundUserData: cloud-init runs whatever customData/,
    );
    const v = byName("a1").inputs;
    expect(v.hardwareProfile.vmSize).toBe("Standard_DC2as_v5");
    expect(v.securityProfile).toEqual({
      securityType: "ConfidentialVM",
      uefiSettings: { secureBootEnabled: true, vTpmEnabled: true },
    });
    expect(v.storageProfile.osDisk.managedDisk.securityProfile.securityEncryptionType).toBe("DiskWithVMGuestState");
    expect(v.storageProfile.imageReference).toEqual({
      publisher: "Canonical",
      offer: "ubuntu-24_04-lts",
      sku: "cvm",
      version: "latest",
    });
    expect(v.storageProfile.dataDisks[0].lun).toBe(0);
    expect(v.osProfile.linuxConfiguration.disablePasswordAuthentication).toBe(true);
    const userData = Buffer.from(String(unsecret(v.osProfile.customData)), "base64").toString("utf8");
    expect(userData.startsWith("#cloud-config")).toBe(true);
    expect(userData).not.toContain("t0ps3cret");
    const wl = byName("a1-workload").inputs;
    expect(unsecret(wl.platforms)).toEqual(["azure-snp"]);
    expect(unsecret(wl.policy)).toMatchObject({
      azure: { requireSecureBoot: true },
      snp: { vmpl: 0, trustedIdKeyDigests: ["ef".repeat(48)] },
    });
  });

  it("binds the user-data with agentInImage: customData decodes to the bytes whose SHA-256 is registered", async () => {
    const image = { publisher: "example", offer: "buckypaper-kit", sku: "azure", version: "1.0.0" };
    const vm = new c.AzureConfidentialVm("a6", {
      vhsm,
      resourceGroupName: "rg",
      subnetId: "s",
      image,
      pcrs: { "4": ["12".repeat(32)] },
      agentInImage: true,
      dbCertificates: [dbCert().path],
    });
    await resolve(vm.vmId);
    const v = byName("a6").inputs;
    expect(v.storageProfile.imageReference).toEqual(image);
    // What cloud-init executes: base64-decoded customData (azure-ovf.ts); its hash is what Nitride compares.
    const executed = Buffer.from(String(unsecret(v.osProfile.customData)), "base64");
    const wl = byName("a6-workload").inputs;
    expect(unsecret(wl.userDataSha256)).toBe(createHash("sha256").update(executed).digest("hex"));
    const text = executed.toString("utf8");
    expect(text).toMatch(/"provider": ?"azure"/);
    // The image's agent runs before cloud-init: the user-data installs and starts nothing.
    expect(text).not.toContain("runcmd");
    expect(await resolve(vm.attestationChain)).toMatch(
      /User-data: bound \(its SHA-256 is registered; the agent in the image reads the customData/,
    );
    // Secure Boot stays on (the VM's uefiSettings); the kit UKI must verify against the named db certificate.
    expect(v.securityProfile.uefiSettings.secureBootEnabled).toBe(true);
    expect(await resolve(vm.attestationChain)).toContain(`db certificate ${dbCert().sha256}`);
  });

  it("refuses at preview the kit image under Secure Boot without the db certificate its UKI is signed with, naming dbCertificates", () => {
    const base = {
      vhsm,
      resourceGroupName: "rg",
      subnetId: "s",
      pcrs: { "4": ["12".repeat(32)] },
      image: { publisher: "p", offer: "o", sku: "s", version: "1" },
    };
    expect(() => new c.AzureConfidentialVm("sb1", { ...base, agentInImage: true })).toThrow(
      /AzureConfidentialVm sb1: dbCertificates is required with agentInImage: the VM runs with Secure Boot on \(securityProfile\.uefiSettings\.secureBootEnabled\).*--sign-key KEY --sign-cert CERT.*additionalSignatures\.db/,
    );
    expect(() => new c.AzureConfidentialVm("sb2", { ...base, agentInImage: true, dbCertificates: [] })).toThrow(
      /sb2: dbCertificates is required/,
    );
    const notCert = path.join(mkdtempSync(path.join(tmpdir(), "bk-notcert-")), "x.pem");
    writeFileSync(notCert, "not a certificate");
    expect(() => new c.AzureConfidentialVm("sb3", { ...base, agentInImage: true, dbCertificates: [notCert] })).toThrow(
      /sb3: dbCertificates\[0\] not an X\.509 certificate/,
    );
    expect(
      () =>
        new c.AzureConfidentialVm("sb4", {
          ...base,
          allowUnboundUserData: true,
          dbCertificates: [dbCert().path],
        }),
    ).toThrow(/sb4: dbCertificates applies to the kit image \(agentInImage: true\)/);
  });

  it("refuses at preview an Azure workload whose user-data is not bound, naming agentInImage, unless the loud opt-out", () => {
    const base = { vhsm, resourceGroupName: "rg", subnetId: "s", pcrs: { "4": ["12".repeat(32)] } };
    expect(() => new c.AzureConfidentialVm("a7", base)).toThrow(
      /AzureConfidentialVm a7: agentInImage must be true \(the VM boots a kit image built with `buckypaper image build --cloud azure`.*the cloud operator can change the customData.*Set allowUnboundUserData: true/,
    );
    expect(() => new c.AzureConfidentialVm("a8", { ...base, agentInImage: false })).toThrow(
      /a8: agentInImage must be true/,
    );
    expect(() => new c.AzureConfidentialVm("a9", { ...base, agentInImage: true })).toThrow(
      /AzureConfidentialVm a9: image must name the kit image built with `buckypaper image build --cloud azure`/,
    );
    expect(
      () =>
        new c.AzureConfidentialVm("a10", {
          ...base,
          image: { publisher: "p", offer: "o", sku: "s", version: "1" },
          agentInImage: true,
          allowUnboundUserData: true,
        }),
    ).toThrow(/a10: allowUnboundUserData contradicts agentInImage: true/);
    expect(
      () => new c.AzureConfidentialVm("a11", { ...base, allowUnboundUserData: "yes" as unknown as boolean }),
    ).toThrow(/a11: allowUnboundUserData is 'yes'; allowed: true, false/);
    // The facade passes the opt-out through, and refuses it where it means nothing.
    expect(
      () =>
        new c.ConfidentialVm("a12", {
          platform: c.Platform.Azure,
          vhsm,
          resourceGroupName: "rg",
          subnetId: "s",
          pcrs: base.pcrs,
        }),
    ).toThrow(/a12: agentInImage must be true/);
    new c.ConfidentialVm("a13", {
      platform: c.Platform.Azure,
      vhsm,
      resourceGroupName: "rg",
      subnetId: "s",
      pcrs: base.pcrs,
      allowUnboundUserData: true,
    });
    expect(
      () =>
        new c.ConfidentialVm("a14", {
          platform: c.Platform.Aws,
          vhsm,
          region: "us-east-2",
          allowUnboundOs: true,
          allowUnboundUserData: true,
        }),
    ).toThrow(/ConfidentialVm a14: allowUnboundUserData applies only to platform azure/);
  });

  it("refuses at preview a registration without boot events or a PCR 4 value (PCR 11 alone binds nothing), naming the field", () => {
    expect(() => new c.AzureConfidentialVm("a4", { vhsm, resourceGroupName: "rg", subnetId: "s" })).toThrow(
      /AzureConfidentialVm a4: bootChain is required to bind the OS: .*or pcrs with a PCR 4 value.*allowUnboundOs: true/,
    );
    // Software extends PCR 11, so an OS the firmware booted another way can reach the registered value.
    expect(
      () =>
        new c.AzureConfidentialVm("a11", {
          vhsm,
          resourceGroupName: "rg",
          subnetId: "s",
          pcrs: { "11": ["00".repeat(32)] },
        }),
    ).toThrow(/AzureConfidentialVm a11: pcrs pins PCR 11 without PCR 4; it must pin PCR 4/);
    expect(
      () =>
        new c.AzureConfidentialVm("a411", {
          vhsm,
          resourceGroupName: "rg",
          subnetId: "s",
          pcrs: { "4": ["00".repeat(32)], "11": ["00".repeat(32)] },
          allowUnboundUserData: true, // (the user-data check, not the subject here)
        }),
    ).not.toThrow();
    expect(
      () =>
        new c.AzureConfidentialVm("a5", {
          vhsm,
          resourceGroupName: "rg",
          subnetId: "s",
          pcrs: { "7": ["00".repeat(32)] },
        }),
    ).toThrow(/pcrs must pin PCR 4/);
  });

  it("refuses sizes that are not confidential", () => {
    expect(
      () =>
        new c.AzureConfidentialVm("a2", { vhsm, resourceGroupName: "rg", subnetId: "s", vmSize: "Standard_D2s_v5" }),
    ).toThrow(
      /AzureConfidentialVm a2: vmSize 'Standard_D2s_v5' is not an SEV-SNP\/TDX-capable azure instance type.*; allowed: Standard_DC2as_v5/,
    );
    expect(
      () =>
        new c.AzureConfidentialVm("a3", {
          vhsm,
          resourceGroupName: "rg",
          subnetId: "s",
          tee: c.Tee.Tdx,
          vmSize: "Standard_DC2as_v5",
        }),
    ).toThrow(/vmSize 'Standard_DC2as_v5' \(DCasv5\) does not support tdx; allowed: Standard_DC2es_v5/);
  });
});

describe.runIf(haveShared)("ProxmoxConfidentialVm and QemuConfidentialVm", () => {
  it("Proxmox SEV-SNP: snippet over SSH, pvesh create with amd-sev, digest of the firmware for the vCPU model", async () => {
    const vm = new c.ProxmoxConfidentialVm("p1", {
      vhsm,
      ssh,
      node: "pve1",
      vmid: 4242,
      cores: 4,
      boot: { firmware: ovmfPath },
    });
    await resolve(vm.vmid);
    const params = await resolve(vm.parameters);
    expect(params["amd-sev"]).toBe("type=snp,kernel-hashes=0,no-debug=1,allow-smt=1");
    expect(params.cicustom).toBe("user=local:snippets/bk-4242-user.yaml");
    const create = String(unsecret(byName("p1-vm").inputs.create));
    expect(create).toContain("pvesh create '/nodes/pve1/qemu'");
    expect(create).toContain("--amd-sev 'type=snp,kernel-hashes=0,no-debug=1,allow-smt=1'");
    expect(String(unsecret(byName("p1-snippet").inputs.stdin))).toContain("#cloud-config");
    expect(JSON.stringify(byName("p1-vm").inputs.connection)).toContain("4dabf18193072939515e22adb298388d"); // secret
    const expected = snpLaunchDigest({ ovmf: readFileSync(ovmfPath), vcpus: 4, vcpu: "EPYC-v4", vmm: "qemu" }).toString(
      "hex",
    );
    expect(await resolve(vm.expectedMeasurements)).toEqual([expected]);
  });

  it("Proxmox TDX registers the MRTD of the firmware", async () => {
    const vm = new c.ProxmoxConfidentialVm("p2", {
      vhsm,
      ssh,
      node: "pve1",
      vmid: 4243,
      tee: c.Tee.Tdx,
      boot: { firmware: ovmfPath },
    });
    const mrtd = measureTdx({ firmware: readFileSync(ovmfPath) }).mrtd;
    expect(await resolve(vm.expectedMeasurements)).toEqual([mrtd]);
    expect((await resolve(vm.parameters))["intel-tdx"]).toBe("type=tdx,attestation=1");
  });

  it("refuses measured direct boot with a firmware that cannot verify a kernel, and bad ids", () => {
    expect(
      () =>
        new c.ProxmoxConfidentialVm("p3", {
          vhsm,
          ssh,
          node: "pve1",
          vmid: 4244,
          boot: { firmware: ovmfPath, kernel: ovmfPath },
        }),
    ).toThrow(/ProxmoxConfidentialVm p3: boot \(kernel\) the firmware has no SNP_KERNEL_HASHES/);
    expect(
      () => new c.ProxmoxConfidentialVm("p4", { vhsm, ssh, node: "pve1", vmid: 7, boot: { firmware: ovmfPath } }),
    ).toThrow(/vmid is 7/);
    expect(
      () =>
        new c.ProxmoxConfidentialVm("p5", {
          vhsm,
          ssh,
          node: "pve1",
          vmid: 4245,
          boot: { firmware: "/nonexistent.fd" },
        }),
    ).toThrow(/boot.firmware '\/nonexistent.fd' cannot be read \(ENOENT\)/);
    expect(
      () =>
        new c.ProxmoxConfidentialVm("p6", {
          vhsm,
          ssh: { host: "h", privateKey: "plain" },
          node: "pve1",
          vmid: 4246,
          boot: { firmware: ovmfPath },
        }),
    ).toThrow(/ssh.privateKey is a plain string/);
    // @pulumi/command cannot pin a host key: a hostKey is refused, not silently ignored.
    expect(
      () =>
        new c.ProxmoxConfidentialVm("p7", {
          vhsm,
          ssh: { ...ssh, hostKey: "pve1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA" },
          node: "pve1",
          vmid: 4247,
          boot: { firmware: ovmfPath },
        }),
    ).toThrow(/ssh.hostKey is not supported/);
  });

  it("QEMU host: uploads boot inputs, builds a NoCloud seed and runs a transient unit with sev-snp-guest", async () => {
    const vm = new c.QemuConfidentialVm("q1", { vhsm, ssh, vcpus: 2, boot: { firmware: ovmfPath } });
    expect(await resolve(vm.unitName)).toBe("bk-q1");
    const create = String(unsecret(byName("q1-vm").inputs.create));
    expect(create).toContain("systemd-run --unit=bk-q1");
    expect(create).toContain("sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000");
    expect(create).toContain("-bios /var/lib/buckypaper/vms/q1/firmware.fd");
    expect(String(unsecret(byName("q1-seed").inputs.create))).toContain("genisoimage");
  });

  it("QEMU host: the data volume's disk is created and attached third, as /dev/vdc where the user-data unlocks it", async () => {
    const vm = new c.QemuConfidentialVm("q2", {
      vhsm,
      ssh,
      boot: { firmware: ovmfPath },
      diskPath: "/var/lib/images/kit.qcow2",
      dataVolume: { sizeGb: 5 },
    });
    await resolve(vm.unitName);
    expect(String(unsecret(byName("q2-data-disk").inputs.create))).toContain("qemu-img create -q -f qcow2");
    const create = String(unsecret(byName("q2-vm").inputs.create));
    const drives = [...create.matchAll(/-drive (\S+)/g)].map((m) => m[1]);
    expect(drives).toHaveLength(3);
    expect(drives[2]).toContain("file=/var/lib/buckypaper/vms/q2/data.qcow2,if=virtio");
    expect(String(unsecret(byName("q2-workload").inputs.description))).toContain("q2");
    expect(() => new c.QemuConfidentialVm("q3", { vhsm, ssh, boot: { firmware: ovmfPath }, dataVolume: {} })).toThrow(
      /q3: dataVolume needs diskPath/,
    );
  });

  it("QEMU host with the kit image: the user-data is measured — its SHA-256 is registered with the workload", async () => {
    const vm = new c.QemuConfidentialVm("q4", { vhsm, ssh, boot: { firmware: ovmfPath }, agentInImage: true });
    await resolve(vm.unitName);
    const seed = byName("q4-seed");
    const userData = String(unsecret(seed.inputs.stdin));
    expect(userData).not.toMatch(/runcmd/);
    const registered = String(unsecret(byName("q4-workload").inputs.userDataSha256));
    expect(registered).toBe(createHash("sha256").update(userData).digest("hex"));
  });
});

describe("ConfidentialVm facade", () => {
  it("refuses TDX on AWS, naming the allowed TEEs", () => {
    expect(
      () => new c.ConfidentialVm("f1", { platform: c.Platform.Aws, tee: c.Tee.Tdx, vhsm, region: "us-east-2" }),
    ).toThrow(/ConfidentialVm f1: tee is 'tdx', which platform 'aws' does not offer; allowed: snp/);
  });
  it("names the missing platform field", () => {
    expect(() => new c.ConfidentialVm("f2", { platform: c.Platform.Gcp, vhsm })).toThrow(
      /zone is required on platform 'gcp'/,
    );
    expect(() => new c.ConfidentialVm("f3", { platform: c.Platform.Proxmox, vhsm })).toThrow(
      /ssh is required on platform 'proxmox'/,
    );
  });
  it("delegates to the platform component", async () => {
    const vm = new c.ConfidentialVm("f4", {
      platform: c.Platform.Aws,
      vhsm,
      region: "eu-west-1",
      size: "r6a.large",
      allowUnboundOs: true,
    });
    expect((await resolve(vm.expectedMeasurements)).length).toBe(2);
    expect(await resolve(vm.workloadId)).toBe("unit-f4");
    expect(h.resources.some((r) => r.type === "buckypaper:index:AwsConfidentialVm" && r.name === "f4")).toBe(true);
  });
  it("passes the AWS vTPM props through: bootChain, agentInImage, pinInstance, instanceEkPin", async () => {
    const boot = { bank: "sha384", bootApplications: { allowed: [], required: ["cd".repeat(48)] } };
    const vm = new c.ConfidentialVm("f5", {
      platform: c.Platform.Aws,
      vhsm,
      region: "us-east-2",
      measuredBoot: boot,
      agentInImage: true,
      pinInstance: false,
      instanceEkPin: true,
    });
    await resolve(vm.workloadId);
    const wl = (await registered("f5-workload")).inputs;
    expect(unsecret(wl.policy).vtpm.nitroTpm).toEqual({}); // pinInstance: false reached the AWS component
    expect(unsecret(wl.userDataSha256)).toMatch(/^[0-9a-f]{64}$/); // agentInImage: true
    expect((await registered("f5-ek")).inputs.instanceId).toBe("f5-id"); // instanceEkPin: true
    // bootChain reaches it too: a NoCloud kit image is refused on AWS, naming the field and the allowed value.
    const { manifest } = writeKitManifest("nocloud");
    expect(
      () =>
        new c.ConfidentialVm("f6", { platform: c.Platform.Aws, vhsm, region: "us-east-2", bootChain: { manifest } }),
    ).toThrow(
      /AwsConfidentialVm f6: bootChain.manifest is a kit image whose enclaivelet reads the 'nocloud'.*; allowed: ec2/,
    );
  });
  it("passes the GCP vTPM props through: akCertificateProjects, pinInstance, agentInImage, bootChain", async () => {
    const vm = new c.ConfidentialVm("f7", {
      platform: c.Platform.Gcp,
      vhsm,
      zone: "europe-west4-a",
      expectedMeasurements: ["02".repeat(48)],
      measuredBoot: { bootApplications: { allowed: [], required: ["cd".repeat(32)] } },
      akCertificateProjects: ["bk-prod-123"],
      pinInstance: false,
      agentInImage: true,
    });
    await resolve(vm.workloadId);
    const wl = (await registered("f7-workload")).inputs;
    expect(unsecret(wl.policy).vtpm.gceAkCertificate).toEqual({
      projectIds: ["bk-prod-123"],
      zones: ["europe-west4-a"],
    });
    expect(unsecret(wl.userDataSha256)).toMatch(/^[0-9a-f]{64}$/);
    const { manifest } = writeKitManifest("ec2");
    expect(
      () =>
        new c.ConfidentialVm("f8", {
          platform: c.Platform.Gcp,
          vhsm,
          zone: "europe-west4-a",
          expectedMeasurements: ["02".repeat(48)],
          bootChain: { manifest },
        }),
    ).toThrow(
      /GcpConfidentialVm f8: bootChain.manifest is a kit image whose enclaivelet reads the 'ec2'.*; allowed: gce/,
    );
  });
  it("refuses a cloud prop on a platform that would ignore it, naming the field and the platforms", () => {
    expect(
      () =>
        new c.ConfidentialVm("f9", {
          platform: c.Platform.Gcp,
          vhsm,
          zone: "europe-west4-a",
          expectedMeasurements: ["02".repeat(48)],
          allowUnboundOs: true,
          instanceEkPin: true,
        }),
    ).toThrow(/ConfidentialVm f9: instanceEkPin applies only to platform aws \(not 'gcp'\); allowed: aws/);
    expect(
      () =>
        new c.ConfidentialVm("f10", {
          platform: c.Platform.Aws,
          vhsm,
          region: "us-east-2",
          allowUnboundOs: true,
          akCertificateProjects: ["bk-prod-123"],
        }),
    ).toThrow(/ConfidentialVm f10: akCertificateProjects applies only to platform gcp/);
    for (const [field, value] of [
      ["bootChain", { uki: "/x.efi" }],
      ["pinInstance", true],
      ["agentInImage", true],
    ] as const)
      expect(
        () =>
          new c.ConfidentialVm(`f11${field}`, {
            platform: c.Platform.Azure,
            vhsm,
            resourceGroupName: "rg",
            subnetId: "s",
            allowUnboundOs: true,
            [field]: value,
          }),
      ).toThrow(new RegExp(`ConfidentialVm f11${field}: ${field} applies only to platform aws or gcp`));
  });
});

/** The registered resource of that name, once the mock engine has seen it. */
async function registered(name: string) {
  for (let i = 0; i < 100; i++) {
    const r = h.resources.find((x) => x.name === name && !x.type.startsWith("buckypaper:index:"));
    if (r) return r;
    await new Promise((ok) => setTimeout(ok, 20));
  }
  throw new Error(`${name} was never registered`);
}

describe("requirePqHybrid (Nitride require_pq_hybrid)", () => {
  it("the facade passes it to the platform component's workload, which sends require_pq_hybrid", async () => {
    const vm = new c.ConfidentialVm("pq1", {
      platform: c.Platform.Aws,
      vhsm,
      region: "eu-west-1",
      allowUnboundOs: true,
      requirePqHybrid: true,
    });
    await resolve(vm.expectedMeasurements);
    await resolve(vm.workloadId);
    expect(unsecret((await registered("pq1-workload")).inputs.requirePqHybrid)).toBe(true);
    const { kinds } = await import("../../provider/kinds.js");
    const body = kinds.workload.body!({ workloadId: "w", requirePqHybrid: true, tokenAlgorithm: "ML-DSA-65" });
    expect(body).toMatchObject({ require_pq_hybrid: true, token_algorithm: "ML-DSA-65" });
    expect(kinds.workload.body!({ workloadId: "w" })).not.toHaveProperty("require_pq_hybrid");
    // Without the prop nothing changes for existing stacks.
    const plain = new c.ConfidentialVm("pq2", {
      platform: c.Platform.Aws,
      vhsm,
      region: "eu-west-1",
      allowUnboundOs: true,
    });
    await resolve(plain.expectedMeasurements);
    expect((await registered("pq2-workload")).inputs.requirePqHybrid).toBeUndefined();
  });

  it("a value that is not a boolean is refused at preview, naming the field", () => {
    expect(
      () =>
        new c.ConfidentialVm("pq3", {
          platform: c.Platform.Aws,
          vhsm,
          region: "eu-west-1",
          allowUnboundOs: true,
          requirePqHybrid: "yes" as unknown as boolean,
        }),
    ).toThrow(/ConfidentialVm pq3: requirePqHybrid is 'yes'; allowed: true, false/);
    // A platform component on its own checks it too (registerGuest, before registering anything).
    expect(
      () =>
        new c.AwsConfidentialVm("pq4", {
          vhsm,
          region: "eu-west-1",
          allowUnboundOs: true,
          requirePqHybrid: 1 as unknown as boolean,
        }),
    ).toThrow(/requirePqHybrid is '1'; allowed: true, false/);
    expect(h.resources.some((r) => r.name === "pq4-workload")).toBe(false);
  });
});

describe.runIf(haveShared)("user-data of every platform component passes the real cloud-init validator", () => {
  it("AWS, GCP, Azure, Proxmox and QEMU user-data validate, with secrets referenced and never inlined", async (ctx) => {
    if (!requireTool("cloud-init (Debian package)", hasCloudInit)) return ctx.skip();
    const secrets = { apiKey: pulumi.secret("sk-live-never-in-user-data") };
    const vms = {
      aws: new c.AwsConfidentialVm("ci-aws", {
        vhsm,
        region: "us-east-2",
        secrets,
        dataVolume: {},
        measuredBoot: { bootApplications: { allowed: [], required: ["cd".repeat(32)] } },
        akPins: ["ef".repeat(32)],
      }),
      gcp: new c.GcpConfidentialVm("ci-gcp", {
        vhsm,
        zone: "us-central1-a",
        expectedMeasurements: ["ab".repeat(48)],
        secrets,
        dataVolume: {},
        allowUnboundOs: true,
      }),
      azure: new c.AzureConfidentialVm("ci-azure", {
        vhsm,
        resourceGroupName: "rg",
        subnetId: "s",
        secrets,
        dataVolume: {},
        pcrs: { "4": ["12".repeat(32)] },
        image: { publisher: "example", offer: "buckypaper-kit", sku: "azure", version: "1.0.0" },
        agentInImage: true,
        dbCertificates: [dbCert().path],
      }),
      proxmox: new c.ProxmoxConfidentialVm("ci-pve", {
        vhsm,
        ssh,
        node: "pve1",
        vmid: 4300,
        boot: { firmware: ovmfPath },
        secrets,
        dataVolume: {},
      }),
      qemu: new c.QemuConfidentialVm("ci-qemu", { vhsm, ssh, boot: { firmware: ovmfPath }, secrets }),
    };
    await Promise.all(Object.values(vms).map((v) => resolve(v.workloadId)));
    await resolve(vms.aws.privateIp);
    await resolve(vms.gcp.instanceId);
    await resolve(vms.azure.vmId);
    await resolve(vms.proxmox.vmid);
    await resolve(vms.qemu.unitName);
    const texts: Record<string, string> = {
      aws: String(unsecret(byName("ci-aws").inputs.userData)),
      gcp: String(unsecret(byName("ci-gcp").inputs.metadata["user-data"])),
      azure: Buffer.from(String(unsecret(byName("ci-azure").inputs.osProfile.customData)), "base64").toString("utf8"),
      proxmox: String(unsecret(byName("ci-pve-snippet").inputs.stdin)),
      qemu: String(unsecret(byName("ci-qemu-seed").inputs.stdin)),
    };
    for (const [platform, text] of Object.entries(texts)) {
      expect(text, platform).toContain("#cloud-config");
      expect(text, platform).toContain("API_KEY");
      expect(text, platform).not.toContain("sk-live-never-in-user-data");
      const r = validateUserData(text);
      expect(r.status, `${platform}: ${r.output}`).toBe(0);
    }
    // The validator is real: a schema violation in the same document is caught.
    expect(validateUserData(`${texts.aws}\nssh_deletekeys: "perhaps"\n`).status).not.toBe(0);
  });
});
