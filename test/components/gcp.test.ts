// GcpConfidentialVm with Google's launch endorsement and AK certificate (mocked engine): the endorsed
// measurement for the machine type's vCPU count is registered with the endorsement itself (the runtime
// re-verifies it), the vTPM AK is authenticated by Google's certificate by default, and preview refuses what
// cannot be bound, naming the field.
import { beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { installMocks, resolve, unsecret, type MockHarness } from "../support/pulumi-mocks.js";
import { haveUkiTools } from "../support/uki.js";
import { writeKitManifest } from "../support/kit-manifest.js";
import { bootApplicationDigest } from "../../images/index.js";
import { createGceEndorsementSimulator, type GceEndorsementSimulator } from "../../runtime/sim/gce-endorsement.js";

let h: MockHarness;
let mod: typeof import("../../components/gcp/confidential-vm.js");
let google: GceEndorsementSimulator;
let other: GceEndorsementSimulator;

const vhsm = { url: "https://vhsm.example:8200", caFingerprint: "ab".repeat(32), token: pulumi.secret("s.admin") };
const M = (n: number) => Buffer.alloc(48, n).toString("hex");
const boot = {
  bootApplications: { allowed: [], required: ["cd".repeat(32)] },
  kernelCmdline: { allowed: ["root=/dev/vda1 roothash=ab"], boundByUki: true },
};

beforeAll(async () => {
  h = await installMocks({
    "gcp:compute/instance:Instance": () => ({ instanceId: "1234567890", project: "bk-prod-7" }),
  });
  mod = await import("../../components/gcp/confidential-vm.js");
  [google, other] = await Promise.all([createGceEndorsementSimulator(), createGceEndorsementSimulator()]);
});

const workload = (name: string) => unsecret(h.resources.find((r) => r.name === `${name}-workload`)!.inputs);

describe("GcpConfidentialVm: Google launch endorsement + Google AK certificate", () => {
  it.runIf(haveUkiTools())(
    "agentInImage defaults on only with a kit manifest built for gce; a manifest for another source is refused",
    async () => {
      const { manifest, kernel } = writeKitManifest("gce");
      const vm = new mod.GcpConfidentialVm("kitgce", {
        vhsm,
        zone: "europe-west4-a",
        expectedMeasurements: [M(2)],
        bootChain: { manifest },
      });
      await resolve(vm.workloadId);
      const wl = workload("kitgce");
      const inst = h.resources.find((r) => r.name === "kitgce" && r.type === "gcp:compute/instance:Instance")!.inputs;
      const userData = String(unsecret(inst.metadata)["user-data"]);
      expect(wl.userDataSha256).toBe(createHash("sha256").update(userData).digest("hex"));
      expect(userData).not.toMatch(/runcmd/);
      expect(wl.policy.vtpm.measuredBoot.bootApplications.required).toEqual([bootApplicationDigest(kernel, "sha256")]);
      expect(await resolve(vm.attestationChain)).toMatch(/User-data: bound/);
      for (const other of ["nocloud", "ec2"])
        expect(
          () =>
            new mod.GcpConfidentialVm(`kit${other}`, {
              vhsm,
              zone: "europe-west4-a",
              expectedMeasurements: [M(2)],
              bootChain: { manifest: writeKitManifest(other).manifest },
            }),
        ).toThrow(
          new RegExp(
            `GcpConfidentialVm kit${other}: bootChain.manifest is a kit image whose enclaivelet reads the '${other}' user-data source .*--cloud gce.*; allowed: gce$`,
          ),
        );
    },
  );

  it.runIf(haveUkiTools())(
    "a kit cloud disk under GCP's Secure Boot needs the db certificate its UKI is signed with (preview error naming bootChain.dbCertificates)",
    () => {
      // The manifest of an image built --format disk (only its record is read before the error).
      const withDisk = (signature?: object) => {
        const { manifest } = writeKitManifest("gce");
        const m = JSON.parse(readFileSync(manifest, "utf8")) as Record<string, unknown>;
        writeFileSync(
          manifest,
          JSON.stringify({ ...m, disk: { path: "disk-x/disk.raw", ...(signature ? { signature } : {}) } }),
        );
        return manifest;
      };
      const args = (manifest: string, dbCertificates?: string[]) => ({
        vhsm,
        zone: "europe-west4-a",
        expectedMeasurements: [M(2)],
        bootChain: { manifest, ...(dbCertificates ? { dbCertificates } : {}) },
      });
      expect(() => new mod.GcpConfidentialVm("sbu", args(withDisk()))).toThrow(
        /GcpConfidentialVm sbu: bootChain\.dbCertificates is required: the instance runs with Secure Boot on \(shieldedInstanceConfig\.enableSecureBoot.*this disk's UKI is unsigned, so the VM would not boot\. Build it with `buckypaper image build --sign-key KEY --sign-cert CERT`/,
      );
      expect(() => new mod.GcpConfidentialVm("sbs", args(withDisk({ subject: "CN=customer db" })))).toThrow(
        /sbs: bootChain\.dbCertificates is required: .*this disk's UKI is signed by CN=customer db; name that certificate here/,
      );
      // With the certificate named, the check passes and the prediction reads the disk (absent here).
      const cert = path.join(mkdtempSync(path.join(tmpdir(), "bk-gcp-db-")), "db.crt");
      writeFileSync(cert, "placeholder");
      expect(() => new mod.GcpConfidentialVm("sbc", args(withDisk(), [cert]))).toThrow(
        /sbc: bootChain\.dbCertificates\[0\] not an X\.509 certificate/,
      );
    },
  );

  it("registers the endorsed measurement for the machine type's vCPUs, the endorsement, and Google-AK authentication", async () => {
    const e = google.sign({ clSpec: 1n, sevSnp: { svn: 5, measurements: { 2: M(2), 4: M(4), 8: M(8) } } });
    const vm = new mod.GcpConfidentialVm("ge", {
      vhsm,
      zone: "europe-west4-a",
      machineType: "n2d-standard-4",
      firmwareEndorsement: e.toString("base64"),
      gceTcbRootPem: google.rootPem,
      minFirmwareSvn: 5,
      measuredBoot: boot,
      akCertificateProjects: ["bk-prod-123"],
      agentInImage: true,
    });
    await resolve(vm.instanceId);
    await resolve(vm.workloadId); // registered after the instance
    expect(await resolve(vm.expectedMeasurements)).toEqual([M(4)]);
    const wl = workload("ge");
    expect(wl.snpMeasurements).toEqual([M(4)]);
    expect(wl.policy.gce).toEqual({ endorsements: [e.toString("base64")], vcpus: 4, minSvn: 5 });
    // Registered after the instance: pinned to its zone and instance id (the AK certificate names both).
    expect(wl.policy.vtpm).toEqual({
      measuredBoot: boot,
      gceAkCertificate: { projectIds: ["bk-prod-123"], zones: ["europe-west4-a"], instanceIds: ["1234567890"] },
    });
    const chain = await resolve(vm.attestationChain);
    expect(chain).toMatch(/Google's EK\/AK CA \(pinned roots/);
    expect(chain).toMatch(/THIS WORKLOAD: firmware endorsed by Google \(SVN 5\), re-verified by the runtime\./);
    expect(chain).toMatch(/Boot events authenticated by Google's AK certificate\./);
    expect(chain).toMatch(
      /instance identity must be: production, project bk-prod-123, this instance's zone, this instance \(pinned\)/,
    );
    expect(chain).not.toMatch(/NOT bound|not implemented/);
    expect(chain).toMatch(/User-data: bound/);
    const inst = h.resources.find((r) => r.name === "ge" && r.type === "gcp:compute/instance:Instance")!.inputs;
    const userData = String(unsecret(inst.metadata)["user-data"]);
    expect(userData).toContain("device:/dev/tpmrm0");
    // The agent quotes with the AK Google's certificate certifies (NV template) and sends the certificate.
    expect(userData).toContain('"googleAk": true');
    expect(wl.userDataSha256).toBe(createHash("sha256").update(userData).digest("hex"));
  });

  it("refuses at preview, naming the field: no endorsed value for the shape, another signer, SVN too low, junk", () => {
    const e = google.sign({ sevSnp: { svn: 2, measurements: { 2: M(2) } } }).toString("base64");
    const mk = (name: string, extra: object) => () =>
      new mod.GcpConfidentialVm(name, { vhsm, zone: "z", machineType: "n2d-standard-4", measuredBoot: boot, ...extra });
    expect(mk("shape", { firmwareEndorsement: e })).toThrow(
      /GcpConfidentialVm shape: firmwareEndorsement endorses no SEV-SNP measurement for 4 vCPUs \(endorsed: 2\)/,
    );
    const e4 = google.sign({ clSpec: 1n, sevSnp: { svn: 2, measurements: { 4: M(4) } } }).toString("base64");
    expect(mk("signer", { firmwareEndorsement: e4, gceTcbRootPem: other.rootPem })).toThrow(
      /GcpConfidentialVm signer: firmwareEndorsement does not verify: signer certificate/,
    );
    expect(mk("svn", { firmwareEndorsement: e4, minFirmwareSvn: 3 })).toThrow(
      /minFirmwareSvn the endorsed firmware has SVN 2, below 3/,
    );
    expect(mk("junk", { firmwareEndorsement: "bm90IGEgcHJvdG9idWY=" })).toThrow(
      /GcpConfidentialVm junk: firmwareEndorsement gce_endorsement/,
    );
    expect(mk("both", { firmwareEndorsement: e4, expectedMeasurements: [M(4)] })).toThrow(
      /firmwareEndorsement excludes expectedMeasurements/,
    );
  });

  it("an OS binding without an authenticated AK is refused unless allowUnboundOs", () => {
    const base = { vhsm, zone: "z", expectedMeasurements: [M(2)] };
    expect(() => new mod.GcpConfidentialVm("noboot", base)).toThrow(
      /GcpConfidentialVm noboot: measuredBoot does not bind the OS: .*any VM of this shape that knows the workload id would attest as this workload/,
    );
    expect(
      () => new mod.GcpConfidentialVm("nocert", { ...base, measuredBoot: boot, googleAkCertificate: false }),
    ).toThrow(
      /GcpConfidentialVm nocert: googleAkCertificate binds boot events, but no vTPM attestation key is authenticated/,
    );
    expect(
      () =>
        new mod.GcpConfidentialVm("proj", { ...base, measuredBoot: boot, akCertificateProjects: ["Not_A_Project"] }),
    ).toThrow(/akCertificateProjects\[0\] must be a GCP project id/);
  });

  it("Google's AK certificate defaults to the instance's own project, zone and id; pinInstance: false opts out", async () => {
    const base = { vhsm, zone: "us-central1-a", expectedMeasurements: [M(2)], measuredBoot: boot };
    const vm = new mod.GcpConfidentialVm("own", base);
    await resolve(vm.workloadId);
    expect(workload("own").policy.vtpm.gceAkCertificate).toEqual({
      projectIds: ["bk-prod-7"],
      zones: ["us-central1-a"],
      instanceIds: ["1234567890"],
    });
    expect(await resolve(vm.attestationChain)).toMatch(
      /production, this instance's project, this instance's zone, this instance \(pinned\)/,
    );
    const open = new mod.GcpConfidentialVm("open", { ...base, pinInstance: false });
    await resolve(open.workloadId);
    expect(workload("open").policy.vtpm.gceAkCertificate).toEqual({
      projectIds: ["bk-prod-7"],
      zones: ["us-central1-a"],
    });
    expect(await resolve(open.attestationChain)).toMatch(/any instance \(NOT pinned: pinInstance false\)/);
    expect(
      () => new mod.GcpConfidentialVm("pinpins", { ...base, akPins: ["ef".repeat(32)], pinInstance: true }),
    ).toThrow(/GcpConfidentialVm pinpins: pinInstance needs googleAkCertificate/);
  });

  it("a pasted digest with akPins says so in the outputs", async () => {
    const vm = new mod.GcpConfidentialVm("pasted", {
      vhsm,
      zone: "z",
      expectedMeasurements: [M(2)],
      measuredBoot: boot,
      akPins: ["ef".repeat(32)],
    });
    await resolve(vm.instanceId);
    await resolve(vm.workloadId); // registered after the instance
    expect(workload("pasted").policy.vtpm).toEqual({ measuredBoot: boot, akPins: ["ef".repeat(32)] });
    expect(workload("pasted").policy.gce).toBeUndefined();
    expect(await resolve(vm.attestationChain)).toMatch(
      /firmware digest given, not verified against Google's endorsement\. Boot events authenticated by akPins\./,
    );
    expect(await resolve(vm.attestationChain)).toMatch(/User-data: NOT bound \(agentInImage is off/);
    expect(workload("pasted").userDataSha256).toBeUndefined();
    // With akPins the agent's own AK is the pinned one: no Google AK.
    const inst = h.resources.find((r) => r.name === "pasted" && r.type === "gcp:compute/instance:Instance")!.inputs;
    expect(String(unsecret(inst.metadata)["user-data"])).not.toContain("googleAk");
  });
});
