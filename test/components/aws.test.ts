import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { installMocks, resolve, unsecret, type MockHarness } from "../support/pulumi-mocks.js";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createHash, randomBytes } from "node:crypto";
import { signUki } from "../../images/guest/disk.js";
import { haveCommand } from "../support/prereq.js";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  bootApplicationDigest,
  predictUkiPcr11,
  resolveImage,
  snpFirmwareDescription,
  snpLaunchDigest,
} from "../../images/index.js";
import { buildUki, haveUkiTools } from "../support/uki.js";
import { writeKitManifest } from "../support/kit-manifest.js";
import { eccEkTpmt } from "../runtime/attestation/tpm-fixtures.js";
import { dbKeyPair } from "../support/db-key.js";

let h: MockHarness;
let mod: typeof import("../../components/aws/confidential-vm.js");

const vhsm = {
  url: "https://vhsm.example:8200",
  caFingerprint: "ab".repeat(32),
  token: pulumi.secret("s.admin-token"),
};

beforeAll(async () => {
  h = await installMocks({
    "aws:ec2/instance:Instance": () => ({ privateIp: "10.0.1.7", availabilityZone: "us-east-2a" }),
    // InstanceTpmEk (GetInstanceTpmEkPub; the SDK call itself is tested in test/provider/aws-ek.test.ts).
    "pulumi-nodejs:dynamic/buckypaper:InstanceTpmEk": () => ({
      ekName: "000b" + "e1".repeat(32),
      ekPublicTpmt: "AAEC",
    }),
  });
  mod = await import("../../components/aws/confidential-vm.js");
});

describe("AwsConfidentialVm", () => {
  it("creates an SEV-SNP instance with IMDSv2, encrypted root, and attestation-only user-data", async () => {
    const vm = new mod.AwsConfidentialVm("web", {
      vhsm,
      instanceType: "c6a.xlarge",
      region: "us-east-2",
      dataVolume: { sizeGb: 20 },
      secrets: { dbPassword: pulumi.secret("hunter2-very-secret") },
      allowUnboundOs: true,
    });
    const measurements = await resolve(vm.expectedMeasurements);
    const workloadId = await resolve(vm.workloadId);
    expect(await resolve(vm.privateIp)).toBe("10.0.1.7"); // waits for the instance registration
    expect(await resolve(vm.dataVolumeId)).toBe("web-data-id"); // and the data volume's
    const inst = h.one("aws:ec2/instance:Instance").inputs;
    expect(inst.cpuOptions).toEqual({ amdSevSnp: "enabled" });
    expect(inst.instanceType).toBe("c6a.xlarge");
    expect(inst.metadataOptions.httpTokens).toBe("required");
    expect(inst.metadataOptions.httpPutResponseHopLimit).toBe(1);
    expect(inst.rootBlockDevice.encrypted).toBe(true);
    expect(inst.userDataReplaceOnChange).toBe(true);
    expect(inst.ami).toBe("ami-0123456789abcdef0");
    const userData = String(unsecret(inst.userData));
    expect(userData.startsWith("#cloud-config")).toBe(true);
    expect(userData).toContain(workloadId);
    expect(userData).toContain("ab".repeat(32));
    expect(userData).not.toContain("hunter2");
    expect(userData).not.toContain("s.admin-token");
    expect(userData).toContain("/dev/nvme1n1");
    // The app secret is delivered as an env file entry that names the KV path, never the value.
    expect(userData).toContain("/etc/buckypaper/app.env");
    expect(userData).toContain(`"DB_PASSWORD": "workloads/${workloadId}/app#dbPassword"`);

    // The registered reference values are the engine's digests for 4 vCPUs in both EC2 layouts.
    const expected = ["ec2", "ec2-legacy"].map((vmm) =>
      snpLaunchDigest({
        firmware: snpFirmwareDescription(resolveImage("aws", "snp")),
        vcpus: 4,
        vmm: vmm as "ec2",
      }).toString("hex"),
    );
    expect(measurements).toEqual(expected);
    const wl = h.resources.find((r) => r.name === "web-workload")!;
    expect(unsecret(wl.inputs.snpMeasurements)).toEqual(expected);
    expect(unsecret(wl.inputs.platforms)).toEqual(["snp"]);
    expect(unsecret(wl.inputs.kvSecrets)).toEqual([`secret/data/workloads/${workloadId}/app`]);
    expect(unsecret(wl.inputs.diskKey)).toBe(true);

    // Secrets go to the runtime as Pulumi secrets, never as plain inputs.
    const secret = h.resources.find((r) => r.name === "web-secrets")!;
    expect(JSON.stringify(secret.inputs)).toContain("4dabf18193072939515e22adb298388d");
    expect(unsecret(secret.inputs.data)).toEqual({ dbPassword: "hunter2-very-secret" });

    const vol = h.one("aws:ebs/volume:Volume").inputs;
    expect(vol.encrypted).toBe(true);
    expect(vol.size).toBe(20);
  });

  it("refuses at preview a registration that does not bind the OS, naming the field and why", () => {
    expect(() => new mod.AwsConfidentialVm("unbound", { vhsm, region: "us-east-2" })).toThrow(
      /AwsConfidentialVm unbound: measuredBoot does not bind the OS: .*any VM of this size that knows the workload id would attest as this workload. Set allowUnboundOs: true/,
    );
    const boot = { bootApplications: { allowed: [], required: ["cd".repeat(32)] } };
    // PCR 11 alone binds nothing: software (systemd-stub) extends it, so an OS booted another way can reach any
    // registered value; PCR 4 (extended by the firmware with what it ran) does.
    expect(
      () =>
        new mod.AwsConfidentialVm("pcr11only", {
          vhsm,
          region: "us-east-2",
          measuredBoot: { bank: "sha384", pcrs: { "11": "ab".repeat(48) } },
        }),
    ).toThrow(
      /AwsConfidentialVm pcr11only: measuredBoot does not bind the OS: .*an exact PCR 4 value \(PCR 11 only beside it\)/,
    );
    expect(
      () =>
        new mod.AwsConfidentialVm("pcr4", {
          vhsm,
          region: "us-east-2",
          measuredBoot: { bank: "sha384", pcrs: { "4": "ab".repeat(48), "11": "ab".repeat(48) } },
        }),
    ).not.toThrow();
    expect(
      () =>
        new mod.AwsConfidentialVm("unpinned", {
          vhsm,
          region: "us-east-2",
          measuredBoot: boot,
          nitroTpmDocument: false,
          instanceEkPin: false,
        }),
    ).toThrow(/AwsConfidentialVm unpinned: akPins binds boot events, but no vTPM attestation key is authenticated/);
    // Without the document, the instance's EK (instanceEkPin, the default) authenticates the AK: accepted.
    expect(
      () =>
        new mod.AwsConfidentialVm("ekonly", {
          vhsm,
          region: "us-east-2",
          measuredBoot: boot,
          nitroTpmDocument: false,
        }),
    ).not.toThrow();
    // The NitroTPM document (the default) signs only SHA-384 PCRs: a SHA-256 event policy is refused with it.
    expect(() => new mod.AwsConfidentialVm("sha256doc", { vhsm, region: "us-east-2", measuredBoot: boot })).toThrow(
      /AwsConfidentialVm sha256doc: measuredBoot.bank must be sha384 when the NitroTPM document authenticates the PCRs/,
    );
    expect(
      () =>
        new mod.AwsConfidentialVm("both", {
          vhsm,
          region: "us-east-2",
          measuredBoot: boot,
          bootChain: { uki: "/nonexistent.efi" },
        }),
    ).toThrow(/AwsConfidentialVm both: bootChain and measuredBoot are exclusive/);
    expect(
      () => new mod.AwsConfidentialVm("nofile", { vhsm, region: "us-east-2", bootChain: { uki: "/nonexistent.efi" } }),
    ).toThrow(/AwsConfidentialVm nofile: bootChain.uki '\/nonexistent.efi' cannot be read \(ENOENT\)/);
    expect(
      () => new mod.AwsConfidentialVm("badpin", { vhsm, region: "us-east-2", measuredBoot: boot, akPins: ["xyz"] }),
    ).toThrow(/AwsConfidentialVm badpin: akPins\[0\] must be 64 hex digits/);
    expect(
      () =>
        new mod.AwsConfidentialVm("badbank", {
          vhsm,
          region: "us-east-2",
          measuredBoot: { ...boot, bank: "md5" },
          akPins: ["ef".repeat(32)],
        }),
    ).toThrow(/AwsConfidentialVm badbank: measuredBoot.bank must be one of sha1, sha256, sha384, sha512/);
  });

  it("a bound registration carries the vTPM policy, turns on the agent's vTPM evidence, and says what is rooted where", async () => {
    const boot = {
      bootApplications: { allowed: [], required: ["cd".repeat(32)] },
      kernelCmdline: { allowed: ["root=/dev/vda1 roothash=ab"], boundByUki: true },
    };
    const vm = new mod.AwsConfidentialVm("bound", {
      vhsm,
      region: "us-east-2",
      measuredBoot: boot,
      akPins: ["EF".repeat(32)],
      agentInImage: true,
    });
    await resolve(vm.privateIp);
    await resolve(vm.workloadId); // registered after the instance
    const wl = h.resources.find((r) => r.name === "bound-workload")!;
    expect(unsecret(wl.inputs.policy)).toMatchObject({ vtpm: { measuredBoot: boot, akPins: ["ef".repeat(32)] } });
    expect(unsecret(wl.inputs.policy).vtpm.allowUnauthenticatedAk).toBeUndefined();
    const inst = h.resources.find((r) => r.name === "bound" && r.type === "aws:ec2/instance:Instance")!.inputs;
    const userData = String(unsecret(inst.userData));
    expect(userData).toContain("device:/dev/tpmrm0");
    // The image's agent quotes with the image's tpm2-tools, before cloud-init could install any.
    expect(userData).not.toMatch(/^packages:/m);
    const chain = await resolve(vm.attestationChain);
    expect(chain).toMatch(/CPU vendor key \(AMD VLEK\)/);
    expect(chain).toMatch(/AWS Nitro PKI \(NitroTPM attestation document, pinned AWS Nitro root G1/);
    expect(chain).toMatch(/THIS WORKLOAD: boot events authenticated by akPins/);
    expect(chain).not.toMatch(/NOT bound/);
    // The agent in the image measures the user-data: its SHA-256 is registered, the user-data has no runcmd.
    expect(unsecret(wl.inputs.userDataSha256)).toBe(createHash("sha256").update(userData).digest("hex"));
    expect(userData).not.toMatch(/runcmd/);
    expect(chain).toMatch(/User-data: bound \(its SHA-256 is registered and bound into REPORT_DATA with the vTPM AK/);
    const unbound = new mod.AwsConfidentialVm("loud", { vhsm, region: "us-east-2", allowUnboundOs: true });
    expect(await resolve(unbound.attestationChain)).toMatch(/THIS WORKLOAD: the OS is NOT bound \(allowUnboundOs\)/);
    // Without the agent in the image, cloud-init runs the user-data before anything attests: said loudly.
    expect(await resolve(unbound.attestationChain)).toMatch(/User-data: NOT bound \(agentInImage is off/);
    await resolve(unbound.workloadId);
    expect(h.resources.find((r) => r.name === "loud-workload")!.inputs.userDataSha256).toBeUndefined();
  });

  it.runIf(haveUkiTools() && haveCommand("osslsigncode", ["--version"]) && haveCommand("openssl", ["version"]))(
    "bootChain.dbCertificates registers Secure Boot under the customer's db certificate and says so in attestationChain",
    async () => {
      const dir = mkdtempSync(path.join(tmpdir(), "bp-aws-sb-"));
      const { key, cert, sha256: sha } = dbKeyPair(dir, "customer db");
      const uki = buildUki(dir, {
        ".osrel": Buffer.from("ID=custom\n"),
        ".cmdline": Buffer.from("console=ttyS0 systemd.import_credentials=no"),
        ".linux": randomBytes(20_000),
      });
      const { signed } = await signUki(mkdtempSync(path.join(dir, "s-")), uki, { key, cert }, 1_700_000_000);
      writeFileSync(path.join(dir, "signed.efi"), signed);
      const vm = new mod.AwsConfidentialVm("sb", {
        vhsm,
        region: "us-east-2",
        bootChain: { uki: path.join(dir, "signed.efi"), dbCertificates: [cert] },
      });
      await resolve(vm.workloadId);
      const policy = unsecret(h.resources.find((x) => x.name === "sb-workload")!.inputs.policy);
      expect(policy.vtpm.measuredBoot.secureBoot).toEqual({ enabled: true, authorities: [sha] });
      expect(await resolve(vm.attestationChain)).toContain(
        `Secure Boot: on, and the boot verified by db certificate ${sha} (PCR 7 authority event`,
      );
    },
  );

  it.runIf(haveUkiTools())(
    "predicts the boot events from the UKI it boots (sha384, PCR 11) and requires the NitroTPM document",
    async () => {
      const dir = mkdtempSync(path.join(tmpdir(), "bp-aws-uki-"));
      const cmdline =
        "console=ttyS0 bk.root=/dev/nvme0n1p2 systemd.import_credentials=no bk.roothash=" + "5e".repeat(32);
      const uki = buildUki(dir, {
        ".osrel": Buffer.from("ID=buckypaper\n"),
        ".cmdline": Buffer.from(cmdline),
        ".linux": randomBytes(64_000),
        ".initrd": randomBytes(9_000),
      });
      const vm = new mod.AwsConfidentialVm("uki", {
        vhsm,
        region: "us-east-2",
        bootChain: { uki: path.join(dir, "uki.efi"), mustContain: ["bk.roothash=" + "5e".repeat(32)] },
      });
      await resolve(vm.privateIp);
      await resolve(vm.workloadId); // registered after the instance
      const policy = unsecret(h.resources.find((r) => r.name === "uki-workload")!.inputs.policy);
      expect(policy.vtpm).toEqual({
        measuredBoot: {
          bank: "sha384",
          bootApplications: {
            allowed: [bootApplicationDigest(uki, "sha384")],
            required: [bootApplicationDigest(uki, "sha384")],
          },
          // The credential word is required of any UKI, not only the kit's (the program's words come on top).
          kernelCmdline: {
            allowed: [cmdline],
            mustContain: ["systemd.import_credentials=no", "bk.roothash=" + "5e".repeat(32)],
            boundByUki: true,
          },
          pcrs: { "11": predictUkiPcr11(uki, "sha384").toString("hex") },
        },
        // Pinned to the instance this component created (registered once it exists).
        nitroTpm: { instanceIds: ["uki-id"] },
        // instanceEkPin (default): the instance's EK from GetInstanceTpmEkPub, for EK credential activation.
        ekNames: ["000b" + "e1".repeat(32)],
        ekPublics: ["AAEC"],
      });
      const inst = h.resources.find((r) => r.name === "uki" && r.type === "aws:ec2/instance:Instance")!.inputs;
      expect(String(unsecret(inst.userData))).toContain("nitroTpm");
      expect(await resolve(vm.attestationChain)).toMatch(
        /THIS WORKLOAD: boot events authenticated by the NitroTPM document/,
      );
      // A UKI whose command line lacks the verity root hash cannot be registered.
      expect(
        () =>
          new mod.AwsConfidentialVm("nohash", {
            vhsm,
            region: "us-east-2",
            bootChain: { uki: path.join(dir, "uki.efi"), mustContain: ["bk.roothash=00"] },
          }),
      ).toThrow(/AwsConfidentialVm nohash: bootChain \(cmdline\) cmdline: does not contain 'bk.roothash=00'/);
      // A UKI whose command line lets systemd import the host's credentials (SMBIOS / fw_cfg) is refused at preview,
      // naming the word and the opt-out; with the opt-out it registers without the word.
      const open = mkdtempSync(path.join(tmpdir(), "bp-aws-uki-creds-"));
      buildUki(open, {
        ".osrel": Buffer.from("ID=other\n"),
        ".cmdline": Buffer.from("console=ttyS0 root=/dev/nvme0n1p1 roothash=" + "5e".repeat(32)),
        ".linux": randomBytes(64_000),
        ".initrd": randomBytes(9_000),
      });
      expect(
        () =>
          new mod.AwsConfidentialVm("creds", {
            vhsm,
            region: "us-east-2",
            bootChain: { uki: path.join(open, "uki.efi"), mustContain: ["roothash=" + "5e".repeat(32)] },
          }),
      ).toThrow(
        /AwsConfidentialVm creds: bootChain\.cmdline must contain 'systemd\.import_credentials=no' \(the UKI's \.cmdline or bootChain\.cmdline\): otherwise systemd imports credentials .* Set bootChain\.allowHostCredentials: true/,
      );
      const optOut = new mod.AwsConfidentialVm("creds-ok", {
        vhsm,
        region: "us-east-2",
        bootChain: {
          uki: path.join(open, "uki.efi"),
          mustContain: ["roothash=" + "5e".repeat(32)],
          allowHostCredentials: true,
        },
      });
      await resolve(optOut.workloadId);
      const loose = unsecret(h.resources.find((r) => r.name === "creds-ok-workload")!.inputs.policy);
      expect(loose.vtpm.measuredBoot.kernelCmdline.mustContain).toEqual(["roothash=" + "5e".repeat(32)]);
    },
  );

  it("registers EK pins given as GetInstanceTpmEkPub returns them (tpmt), as TPM Names; refuses a malformed one", async () => {
    // An ECC P-256 TPMT_PUBLIC as the EC2 API returns it with --key-format tpmt (base64).
    const tpmt = eccEkTpmt();
    const boot = { bank: "sha384", bootApplications: { allowed: [], required: ["cd".repeat(48)] } };
    const vm = new mod.AwsConfidentialVm("ek", {
      vhsm,
      region: "us-east-2",
      measuredBoot: boot,
      ekPublicTpmt: [tpmt.toString("base64")],
      instanceEkPin: false,
    });
    await resolve(vm.privateIp);
    await resolve(vm.workloadId); // registered after the instance
    const policy = unsecret(h.resources.find((r) => r.name === "ek-workload")!.inputs.policy);
    expect(policy.vtpm.ekNames).toEqual(["000b" + createHash("sha256").update(tpmt).digest("hex")]);
    // …and for EK credential activation, the EK public itself.
    expect(policy.vtpm.ekPublics).toEqual([tpmt.toString("base64")]);
    expect(policy.vtpm.nitroTpm).toEqual({ instanceIds: ["ek-id"] });
    expect(
      () =>
        new mod.AwsConfidentialVm("badek", {
          vhsm,
          region: "us-east-2",
          measuredBoot: boot,
          ekPublicTpmt: [tpmt.subarray(0, 20).toString("base64")],
        }),
    ).toThrow(/AwsConfidentialVm badek: ekPublicTpmt\[0\] is not a base64 TPMT_PUBLIC/);
    // A key that is not an EK (a restricted signing key): no credential can be made for it.
    const signing = Buffer.from(tpmt);
    signing.writeUInt32BE(0x00050072, 4);
    expect(
      () =>
        new mod.AwsConfidentialVm("signek", {
          vhsm,
          region: "us-east-2",
          measuredBoot: boot,
          ekPublicTpmt: [signing.toString("base64")],
        }),
    ).toThrow(/AwsConfidentialVm signek: ekPublicTpmt\[0\] is not an endorsement key .*restricted decryption key/);
  });

  it("pins the workload to its own instance (registered after it), with an explicit opt-out", async () => {
    const boot = { bank: "sha384", bootApplications: { allowed: [], required: ["cd".repeat(48)] } };
    const vm = new mod.AwsConfidentialVm("own", { vhsm, region: "us-east-2", measuredBoot: boot });
    await resolve(vm.workloadId);
    const wl = h.resources.find((r) => r.name === "own-workload")!;
    expect(unsecret(wl.inputs.policy).vtpm.nitroTpm).toEqual({ instanceIds: ["own-id"] });
    // The instance does not wait for the workload; the workload is registered after the instance.
    const inst = h.resources.find((r) => r.name === "own" && r.type === "aws:ec2/instance:Instance")!;
    expect(String(unsecret(inst.inputs.userData))).toContain(`${await resolve(vm.workloadId)}`);
    expect(await resolve(vm.attestationChain)).toMatch(/Instance: pinned \(the NitroTPM document's module_id/);

    const open = new mod.AwsConfidentialVm("unpinned", {
      vhsm,
      region: "us-east-2",
      measuredBoot: boot,
      pinInstance: false,
    });
    await resolve(open.workloadId);
    const owl = h.resources.find((r) => r.name === "unpinned-workload")!;
    expect(unsecret(owl.inputs.policy).vtpm.nitroTpm).toEqual({});
    expect(await resolve(open.attestationChain)).toMatch(
      /Instance: NOT pinned \(any instance booted from the registered image/,
    );

    expect(
      () =>
        new mod.AwsConfidentialVm("pinnopin", {
          vhsm,
          region: "us-east-2",
          measuredBoot: { bootApplications: { allowed: [], required: ["cd".repeat(32)] } },
          akPins: ["ef".repeat(32)],
          pinInstance: true,
        }),
    ).toThrow(/AwsConfidentialVm pinnopin: pinInstance needs nitroTpmDocument/);
  });

  it("instanceEkPin: reads the instance's EK after it exists and registers it as an EK pin", async () => {
    const boot = { bank: "sha384", bootApplications: { allowed: [], required: ["cd".repeat(48)] } };
    const vm = new mod.AwsConfidentialVm("ekpin", {
      vhsm,
      region: "us-east-2",
      measuredBoot: boot,
      instanceEkPin: true,
    });
    await resolve(vm.workloadId);
    const ek = h.resources.find((r) => r.name === "ekpin-ek")!;
    expect(ek.inputs.instanceId).toBe("ekpin-id");
    expect(ek.inputs.region).toBe("us-east-2");
    const policy = unsecret(h.resources.find((r) => r.name === "ekpin-workload")!.inputs.policy);
    expect(policy.vtpm.ekNames).toEqual(["000b" + "e1".repeat(32)]);
    expect(policy.vtpm.ekPublics).toEqual(["AAEC"]);
    expect(policy.vtpm.nitroTpm).toEqual({ instanceIds: ["ekpin-id"] });
    expect(await resolve(vm.attestationChain)).toMatch(/EK pin: this instance's NitroTPM EK from GetInstanceTpmEkPub/);
    expect(await resolve(vm.attestationChain)).toMatch(/EK credential activation: the AK must activate a credential/);
    // The default is on; `false` is the opt-out: no EC2 call, no EK in the policy, and the outputs say so.
    const byDefault = new mod.AwsConfidentialVm("ekdefault", { vhsm, region: "us-east-2", measuredBoot: boot });
    await resolve(byDefault.workloadId);
    expect(h.resources.find((r) => r.name === "ekdefault-ek")!.inputs.instanceId).toBe("ekdefault-id");
    const off = new mod.AwsConfidentialVm("ekoff", {
      vhsm,
      region: "us-east-2",
      measuredBoot: boot,
      instanceEkPin: false,
    });
    await resolve(off.workloadId);
    expect(h.resources.find((r) => r.name === "ekoff-ek")).toBeUndefined();
    const offPolicy = unsecret(h.resources.find((r) => r.name === "ekoff-workload")!.inputs.policy);
    expect(offPolicy.vtpm.ekPublics).toBeUndefined();
    expect(await resolve(off.attestationChain)).toMatch(/EK credential activation: off \(instanceEkPin: false\)/);
    expect(
      () =>
        new mod.AwsConfidentialVm("eknoboot", { vhsm, region: "us-east-2", allowUnboundOs: true, instanceEkPin: true }),
    ).toThrow(/AwsConfidentialVm eknoboot: instanceEkPin needs a vTPM OS binding/);
  });

  it.runIf(haveUkiTools())(
    "agentInImage defaults on only with a kit manifest built for ec2; a manifest for another source is refused",
    async () => {
      const { manifest, kernel } = writeKitManifest("ec2");
      const vm = new mod.AwsConfidentialVm("kitec2", { vhsm, region: "us-east-2", bootChain: { manifest } });
      await resolve(vm.workloadId);
      const wl = h.resources.find((r) => r.name === "kitec2-workload")!;
      const inst = h.resources.find((r) => r.name === "kitec2" && r.type === "aws:ec2/instance:Instance")!.inputs;
      const userData = String(unsecret(inst.userData));
      // Measured: the user-data's SHA-256 is registered, no runcmd, the kernel's events predicted in sha384.
      expect(unsecret(wl.inputs.userDataSha256)).toBe(createHash("sha256").update(userData).digest("hex"));
      expect(userData).not.toMatch(/runcmd/);
      expect(unsecret(wl.inputs.policy).vtpm.measuredBoot.bootApplications.required).toEqual([
        bootApplicationDigest(kernel, "sha384"),
      ]);
      expect(await resolve(vm.attestationChain)).toMatch(/User-data: bound/);
      // The explicit opt-out still holds with a matching image.
      const off = new mod.AwsConfidentialVm("kitoff", {
        vhsm,
        region: "us-east-2",
        bootChain: { manifest },
        agentInImage: false,
      });
      await resolve(off.workloadId);
      expect(h.resources.find((r) => r.name === "kitoff-workload")!.inputs.userDataSha256).toBeUndefined();
      // A NoCloud (default) or GCE image: its agent and cloud-init read another source. Refused, even with agentInImage: false.
      for (const [other, agentInImage] of [
        ["nocloud", undefined],
        ["gce", true],
        ["gce", false],
      ] as const)
        expect(
          () =>
            new mod.AwsConfidentialVm(`kit${other}`, {
              vhsm,
              region: "us-east-2",
              bootChain: { manifest: writeKitManifest(other).manifest },
              agentInImage,
            }),
        ).toThrow(
          new RegExp(
            `AwsConfidentialVm kit${other}: bootChain.manifest is a kit image whose enclaivelet reads the '${other}' user-data source .*--cloud ec2.*; allowed: ec2$`,
          ),
        );
      // A manifest that records no source (built before --cloud) is refused too.
      expect(
        () =>
          new mod.AwsConfidentialVm("kitnone", {
            vhsm,
            region: "us-east-2",
            bootChain: { manifest: writeKitManifest(undefined).manifest },
          }),
      ).toThrow(
        /AwsConfidentialVm kitnone: bootChain.manifest is a kit image whose enclaivelet reads no recorded user-data source/,
      );
      expect(
        () =>
          new mod.AwsConfidentialVm("kitbad", {
            vhsm,
            region: "us-east-2",
            allowUnboundOs: true,
            agentInImage: "yes" as never,
          }),
      ).toThrow(/AwsConfidentialVm kitbad: agentInImage is 'yes'; allowed: true, false/);
    },
  );

  it.runIf(haveUkiTools())(
    "a kit manifest's command line keeps its root hash and credential words: a program's cmdline cannot drop them, its mustContain only adds",
    async () => {
      const { manifest } = writeKitManifest("ec2");
      const vm = new mod.AwsConfidentialVm("kitmust", {
        vhsm,
        region: "us-east-2",
        bootChain: { manifest, mustContain: ["console=ttyS0"] },
      });
      await resolve(vm.workloadId);
      const wl = h.resources.find((r) => r.name === "kitmust-workload")!;
      // Registered: the verifier refuses a quote whose command line lacks any of them.
      expect(unsecret(wl.inputs.policy).vtpm.measuredBoot.kernelCmdline.mustContain).toEqual([
        "bk.roothash=" + "5e".repeat(32),
        "systemd.import_credentials=no",
        "module_blacklist=qemu_fw_cfg",
        "console=ttyS0",
      ]);
      // A command line without the credential words (PID 1 would import the VMM's SMBIOS/fw_cfg credentials): refused at preview.
      for (const [word, cmdline] of [
        ["systemd.import_credentials=no", "console=ttyS0 module_blacklist=qemu_fw_cfg bk.roothash=" + "5e".repeat(32)],
        ["module_blacklist=qemu_fw_cfg", "console=ttyS0 systemd.import_credentials=no bk.roothash=" + "5e".repeat(32)],
        ["bk.roothash=" + "5e".repeat(32), "console=ttyS0 systemd.import_credentials=no module_blacklist=qemu_fw_cfg"],
      ])
        expect(
          () =>
            new mod.AwsConfidentialVm(`kitcmd${word.length}`, {
              vhsm,
              region: "us-east-2",
              bootChain: { manifest, cmdline, mustContain: ["console=ttyS0"] },
            }),
        ).toThrow(new RegExp(`bootChain \\(cmdline\\) cmdline: does not contain '${word.replace(/\./g, "\\.")}'`));
    },
  );

  it("pins the agent artifact when the Vhsm serves it", async () => {
    const vm = new mod.AwsConfidentialVm("pinned", {
      vhsm: { ...vhsm, agentUrl: "https://vhsm.example:8200/v1/sys/enclaivelet.tar.gz", agentSha256: "ef".repeat(32) },
      region: "us-east-2",
      allowUnboundOs: true,
    });
    await resolve(vm.privateIp);
    const inst = h.resources.find((r) => r.name === "pinned" && r.type === "aws:ec2/instance:Instance")!.inputs;
    const userData = String(unsecret(inst.userData));
    expect(userData).toContain("https://vhsm.example:8200/v1/sys/enclaivelet.tar.gz");
    expect(userData).toContain("ef".repeat(32));
  });

  it("rejects instance types without SEV-SNP, naming the allowed ones", () => {
    expect(() => new mod.AwsConfidentialVm("bad", { vhsm, instanceType: "m5.large", region: "us-east-2" })).toThrow(
      /AwsConfidentialVm bad: instanceType 'm5.large' is not an SEV-SNP\/TDX-capable aws instance type.*; allowed: m6a.large, m6a.xlarge/,
    );
  });

  it("rejects regions without SEV-SNP", () => {
    expect(() => new mod.AwsConfidentialVm("bad2", { vhsm, region: "us-west-1" })).toThrow(
      /region is 'us-west-1'.*allowed: us-east-2, eu-west-1/,
    );
  });

  it("refuses secrets passed as plain strings", () => {
    expect(() => new mod.AwsConfidentialVm("bad3", { vhsm, region: "eu-west-1", secrets: { api: "plain" } })).toThrow(
      /secrets.api is a plain string; pass a Pulumi secret/,
    );
  });
});
