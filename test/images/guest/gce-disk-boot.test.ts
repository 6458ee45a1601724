// Boots the kit's GCE cloud disk as it ships (`image build --cloud gce`, the manifest's own disk) and as GCE boots
// it: UEFI firmware (Debian's OVMF.fd, no direct kernel boot) loading \EFI\BOOT\BOOTX64.EFI from the disk's ESP on
// virtio-scsi (test/support/cloud-disk-guest.ts), DMI saying "Google Compute Engine" (BIOS vendor Google, a
// GoogleCloud-… serial), and GCE's metadata server on 169.254.169.254 (test/support/gce-metadata.ts: Metadata-Flavor:
// Google required, proxied requests refused, its rules tested by gce-metadata.test.ts) — QEMU user networking on
// 169.254.169.0/24 with restrict=on, whose only ways out are that server and a forward to a real runtime (HTTPS,
// pinned CA). The instance's vTPM is swtpm provisioned as GCE provisions a Shielded VM's before its first boot
// (test/support/gce-vtpm.ts): Google's ECC AK template in NV 0x01c10003 and the AK certificate in NV 0x01c10002,
// issued by a SIMULATED Google EK/AK CA (runtime/sim/gce-ak-ca.ts) for that instance's project, zone and id; the
// runtime trusts that CA's root only because it is configured as a simulated root (simulated_gce_ak_roots). A
// simulated PSP outside the guest (runtime/sim/qemu/psp.ts, on the virtio-serial port) measured the firmware and
// vCPU: the firmware-only launch digest, as on GCE.
// Nothing in the boot path is the test's: systemd starts the image's enclaivelet-measured.service after
// cloud-init-local, whose GCELocal datasource fetched the user-data (the GCP component's rendering: agent in the
// image, vTPM with Google's AK; the evidence provider is the PSP's port) from the metadata server. The agent reads
// cloud-init's cached copy, takes Nitride's challenge, creates the AK from Google's template (= the certified key),
// binds nonce, keys, AK and the user-data hash into REPORT_DATA, gets the report from the PSP, quotes, and sends the
// AK certificate from NV with it. The workload is registered as GcpConfidentialVm registers it for a pinned instance
// (gceAkCertificate: project, zone, instance id; the boot policy predicted from the disk) — except that the disk is
// unsigned and the firmware has no Secure Boot keys, so the policy carries no db authority (gcpOsBinding refuses
// this unsigned kit disk, checked below; the signed disk under Secure Boot is secure-boot-disk.test.ts's).
// The hostile part: the metadata server (the cloud operator's) swaps the user-data — a runcmd added — once the
// agent's unit has started (cloud-init-local has read and cached it). What the test shows: how many times the
// guest read the user-data, and that the swapped-in runcmd never runs while the registered one does.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGceAkCaSimulator, type SimulatedGceInstance } from "../../../runtime/sim/gce-ak-ca.js";
import { agentEvents } from "../../../runtime/sim/qemu/index.js";
import { gcpOsBinding } from "../../../components/gcp/os-binding.js";
import {
  bootCloudDisk,
  cloudDiskBootReady,
  injectRuncmd,
  sawEvent,
  withInstanceTpm,
  type CloudDiskBoot,
} from "../../support/cloud-disk-guest.js";
import { gceSmbios, startFakeGceMetadata, type FakeGceMetadata } from "../../support/gce-metadata.js";
import { provisionGoogleEccAk, tpmTools } from "../../support/gce-vtpm.js";
import { holdGuestSlots } from "../../support/guest-slots.js";
import { imdsNetOptions } from "../../support/imds.js";
import { startCloudDiskRun, type CloudDiskRun } from "../../support/cloud-disk-run.js";

const ready = cloudDiskBootReady("provisioning the instance's vTPM as GCE does");

const scratch = mkdtempSync(path.join(tmpdir(), "bk-gceboot-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The runtime's address on the guest's link (the user network is the metadata server's 169.254.169.0/24). */
const RUNTIME_ADDR = "169.254.169.100";
const WORKLOAD = "gce-cloud-disk";
/** The instance as Google's AK certificate names it, and as the metadata server describes it. */
const INSTANCE: SimulatedGceInstance = {
  zone: "us-central1-a",
  projectNumber: 123456789012n,
  projectId: "bk-gce-boot",
  instanceId: 7316733851148520001n,
  instanceName: WORKLOAD,
};
/** The registered workload's own runcmd (cloud-final, after the agent): the boot's end marker. */
const WORKLOAD_MARKER = "bk-workload-runcmd-ran";
/** A runcmd the host adds to the user-data in the metadata server: it must never run. */
const INJECTED_MARKER = "bk-injected-by-the-host";

describe.runIf(ready)(
  "the GCE cloud disk boots as GCE boots it (DMI, metadata server, vTPM with Google's AK certificate) and Nitride releases its bundle; user-data swapped in the metadata server after cloud-init-local has no effect",
  () => {
    holdGuestSlots(1, "gce-disk-boot"); // 1 guest(s) at once: see test/support/guest-slots.ts
    let run: CloudDiskRun;
    let userData: string;
    let userDataSha256: string;
    let tpmDir: string;

    beforeAll(async () => {
      run = await startCloudDiskRun({ cloud: "gce", runtimeAddr: RUNTIME_ADDR, scratch });
      const { stack } = run;
      const akCa = await createGceAkCaSimulator();
      await stack.admin("PUT", "nitride/config", { simulated_gce_ak_roots: [akCa.rootPem] });

      // The instance's vTPM as GCE provisions it before the first boot: Google's AK template and the certificate
      // Google's (here: the simulated) EK/AK CA issued for the key it yields, for this instance.
      tpmDir = mkdtempSync(path.join(scratch, "instance-tpm-"));
      await withInstanceTpm(tpmDir, (tcti) => provisionGoogleEccAk(tpmTools(tcti), (key) => akCa.issue(key, INSTANCE)));

      // The user-data GcpConfidentialVm renders for an image with the agent in it and Google's AK certificate
      // (cloud-disk-run.ts). The workload's own runcmd is part of the registered hash.
      ({ text: userData, sha256: userDataSha256 } = run.userData({
        platform: "gcp",
        workloadId: WORKLOAD,
        runcmd: [`[ sh, -c, 'echo ${WORKLOAD_MARKER} >/dev/console' ]`],
      }));

      // GcpConfidentialVm's OS binding refuses this disk: GCE boots with Secure Boot on and its UKI is unsigned.
      expect(() =>
        gcpOsBinding(`GcpConfidentialVm ${WORKLOAD}`, {
          bootChain: { manifest: run.manifestPath, disk: path.join(run.dir, run.disk.path) },
        }),
      ).toThrow(/bootChain\.dbCertificates.*unsigned/);
      // So the registration is its shape for a pinned instance without the db authority: the boot policy predicted
      // from the disk and Google's AK certificate of this project, zone and instance.
      await run.register(WORKLOAD, userDataSha256, {
        snp: { allowDebug: false, allowMigrationAgent: true },
        vtpm: {
          measuredBoot: run.policy,
          gceAkCertificate: {
            projectIds: [INSTANCE.projectId],
            zones: [INSTANCE.zone],
            instanceIds: [String(INSTANCE.instanceId)],
          },
        },
      });
    }, 3_600_000);
    afterAll(async () => {
      await run?.stack.rt.close();
    });

    it(
      "virtio-scsi: cloud-init's GCELocal reads the metadata server once (Metadata-Flavor sent), the image's unit attests with Google's certified AK and provisions; the user-data swapped in afterwards is never read again and its runcmd never runs",
      { timeout: 1_500_000 },
      async () => {
        const psp = await run.newPsp();
        let md: FakeGceMetadata | undefined;
        let b: CloudDiskBoot;
        let readsBeforeSwap: number | undefined;
        try {
          md = await startFakeGceMetadata({
            instance: {
              id: String(INSTANCE.instanceId),
              zone: `projects/${INSTANCE.projectNumber}/zones/${INSTANCE.zone}`,
              hostname: `${WORKLOAD}.${INSTANCE.zone}.c.${INSTANCE.projectId}.internal`,
              name: WORKLOAD,
              "machine-type": `projects/${INSTANCE.projectNumber}/machineTypes/n2d-standard-2`,
            },
            project: { "project-id": INSTANCE.projectId, "numeric-project-id": String(INSTANCE.projectNumber) },
            instanceAttributes: { "enable-oslogin": "TRUE" },
            projectAttributes: {},
            userData,
          });
          // Once cloud-init-local has cached the user-data (the agent's unit starts after it), the host swaps in
          // user-data with a runcmd of its own.
          const swapOnce = (text: string) => {
            if (readsBeforeSwap !== undefined || !sawEvent(text, "start")) return;
            readsBeforeSwap = md!.requests.filter((r) => r.userData).length;
            md!.setUserData(injectRuncmd(userData, INJECTED_MARKER));
          };
          b = await bootCloudDisk(
            path.join(run.dir, run.disk.path),
            "virtio-scsi",
            {
              tpmDir,
              scratch,
              netOptions: imdsNetOptions({
                imdsPort: md.port,
                runtimeAddr: RUNTIME_ADDR,
                runtimePort: run.runtimePort,
              }),
              pspSocket: psp.socketPath,
              smbios: gceSmbios(),
              label: "gce",
              onConsole: swapOnce,
            },
            (t) => t.includes(WORKLOAD_MARKER) || (sawEvent(t, "failed") && /Dependency failed for/.test(t)),
            1_200_000,
          );
        } finally {
          await md?.close();
          await psp.close();
        }
        const reqs = md.requests;
        console.log(
          `[gce-boot] boot to secrets ${b.toSecrets ?? "-"} s, to the workload's runcmd ${b.seconds} s; PSP requests ${psp.requests.length}; metadata ${reqs.map((r) => `${r.method} ${r.path} ${r.status}${r.userData ? " [user-data]" : ""}`).join(", ")}`,
        );
        expect(b.console).toMatch(/buckypaper-init: root \/dev\/sd[a-z]2 verified/);

        // The metadata server's rules held for every request cloud-init made (Metadata-Flavor sent: no 403).
        expect(reqs.filter((r) => r.status === 403)).toEqual([]);
        // The user-data was read once, by cloud-init-local before the agent started; nothing read it after the swap.
        const udReads = reqs.filter((r) => r.userData);
        expect(readsBeforeSwap, "the agent's unit started").toBeDefined();
        expect(readsBeforeSwap).toBe(1);
        expect(udReads.map((r) => `${r.path} ${r.status}`)).toEqual([
          "/computeMetadata/v1/instance/attributes/?recursive=True 200",
        ]);

        // The image's own unit: Google's certified AK, the report from the PSP, Nitride accepted, the bundle written.
        const events = agentEvents(b.console);
        const names = events.map((e) => e.event);
        console.log(`[gce-boot] agent events ${names.join(" ")}`);
        expect(events.find((e) => e.event === "evidence.provider")?.provider).toBe("virtio-psp");
        expect(events.find((e) => e.event === "user-data.measured")?.sha256).toBe(userDataSha256);
        for (const e of ["evidence.collected", "attest.ok", "login.ok", "bundle.received"])
          expect(names, b.console.slice(-4000)).toContain(e);
        expect(events.find((e) => e.event === "done")?.written).toBe(1);
        expect(psp.requests.filter((q) => q.kind === "report" && q.ok).length).toBeGreaterThanOrEqual(1);
        expect(b.console).not.toContain("web-db-s3cret");

        // The registered runcmd ran (cloud-final, after the agent); the swapped-in one, which would run before it in
        // the same script, never did.
        expect(b.console, b.console.slice(-3000)).toContain(WORKLOAD_MARKER);
        expect(b.console).not.toContain(INJECTED_MARKER);
      },
    );
  },
);
