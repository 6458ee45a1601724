// Boots the kit's EC2 cloud disk as it ships and as EC2 boots it — UEFI firmware (Debian's OVMF.fd, no direct kernel
// boot) loading \EFI\BOOT\BOOTX64.EFI from the disk's ESP — with a real software TPM (swtpm) as the vTPM: the NVMe
// shape of EC2 Nitro and the virtio-scsi shape of GCE. The disk is `image build --cloud ec2` (the manifest's own
// disk: nothing is added to its UKI). The guest must reach its dm-verity root by GPT label. A simulated PSP outside
// the guest (the local stack's virtio-serial one, runtime/sim/qemu/psp.ts) measured the firmware and vCPU the guest
// was started with: the firmware-only SNP launch digest, the same for every VM of that size, as on EC2.
// Nothing in the boot path is the test's: systemd starts the image's enclaivelet-measured.service after
// cloud-init-local, whose Ec2Local datasource (found by DMI: an "ec2…" product UUID equal to the serial, as
// identify_aws wants) fetched the user-data from a fake IMDS (test/support/imds.ts, IMDSv2 with tokens required, as
// AwsConfidentialVm sets httpTokens) on 169.254.169.254 — QEMU user networking on 169.254.169.0/24 with restrict=on,
// whose only ways out are that IMDS and a forward to a real runtime (HTTPS, pinned CA). The agent reads cloud-init's
// cached copy of the user-data (the AWS component's rendering: agent in the image, vTPM on; the evidence provider
// is the simulated PSP's port), asks Nitride for a challenge, binds nonce, its ephemeral keys, the vTPM AK and the
// user-data's SHA-256 into REPORT_DATA, gets the SNP report from the PSP, quotes over SHA-256(REPORT_DATA) with the
// image's tpm2-tools, answers Nitride's EK credential round and fetches its bundle. The workload is registered as
// AwsConfidentialVm registers it (awsOsBinding + the provider's workload body): the PSP's firmware-only digest, the
// boot policy predicted from the disk (predictFromDisk, with kitCmdlineMustContain), the user-data hash, and the
// instance's EK (read from the swtpm before the first boot, as GetInstanceTpmEkPub reads the NitroTPM's) — with
// nitroTpmDocument: false, since the image has no nitro-tpm-attest and swtpm no Nitro PKI: the AK is authenticated
// by EK credential activation instead.
// The registered user-data also carries the workload's own code (runcmd, after the agent): it reads an instance tag
// from IMDS and runs `enclaivelet vtpm-evidence --nonce <tag>` — the Vtpm.collect + wireVtpm that `run` attaches —
// printing the JSON on the console. That is what a workload (root, or a guest kernel at VMPL0) can make of this VM's
// vTPM for an outside party: the host verifies the quote, replays the log and checks the predicted measured-boot
// policy with it, and the tag's nonce is SHA-256 of a REPORT_DATA binding a SECOND swtpm's AK.
// Refusals:
//   - that genuine quote beside this VM's genuine SNP report whose REPORT_DATA binds the other TPM's AK is refused by
//     the binding checks;
//   - user-data swapped in IMDS once cloud-init-local has read it has no effect: nothing reads IMDS's user-data again,
//     the agent measures cloud-init's copy and the swapped-in runcmd never runs;
//   - a copy of the disk whose UKI command line differs by one byte boots too (the firmware has no Secure Boot keys
//     here) in the same "instance" (same vTPM: a swapped root volume), with the user-data changed in IMDS before the
//     boot (a runcmd added): Nitride refuses the agent by the boot-chain checks and by the user-data binding, each by
//     name, and none of the user-data runs (cloud-init's stages require the agent's unit).
import { createHash } from "node:crypto";
import { closeSync, copyFileSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { holdGuestSlots } from "../../support/guest-slots.js";
import { parseLock, VTPM_PACKAGES, type ImageManifest } from "../../../images/guest/index.js";
import type { DiskRecord } from "../../../images/guest/manifest.js";
import { decodeWireVtpm } from "../../../runtime/protocol/evidence.js";
import {
  appraiseMeasuredBoot,
  verifyTpmEvidence,
  type MeasuredBootPolicy,
  type TpmEvidence,
} from "../../../runtime/attestation/tpm/index.js";
import { reportDataForVtpm } from "../../../runtime/attestation/binding.js";
import { boundKeyMaterial, newEphemeralKey } from "../../../runtime/guest/attest.js";
import { AGENT_BIN } from "../../../runtime/guest/boot-unit.js";
import { Vtpm } from "../../../runtime/guest/evidence/vtpm.js";
import { agentEvents, type SimulatedPsp } from "../../../runtime/sim/qemu/index.js";
import { awsOsBinding } from "../../../components/aws/os-binding.js";
import { postAttest, failedChecks, type EnclaiveletStack } from "../../runtime/guest/stack.js";
import { ec2Smbios, imdsNetOptions, startFakeImds, type FakeImds, type ImdsLeaf } from "../../support/imds.js";
import { haveCommand, requireTool } from "../../support/prereq.js";
import { SwTpm } from "../../support/swtpm.js";
import {
  bootCloudDisk,
  cloudDiskBootReady,
  injectRuncmd,
  instanceEkTpmt,
  pspReport,
  refusedIds,
  sawEvent,
  type CloudDiskBoot,
} from "../../support/cloud-disk-guest.js";
import { repoRoot } from "../../support/shared.js";
import { startCloudDiskRun, type CloudDiskRun } from "../../support/cloud-disk-run.js";

const PCRS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 14];
const ready =
  cloudDiskBootReady("the instance's EK, a second TPM's AK") &&
  ["objcopy", "mcopy", "unsquashfs"].every((t) =>
    requireTool(t, haveCommand(t, t === "unsquashfs" ? ["-h"] : ["--version"])),
  );

const scratch = mkdtempSync(path.join(tmpdir(), "bk-diskboot-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The runtime's address on the guest's link (the user network is IMDS's 169.254.169.0/24). */
const RUNTIME_ADDR = "169.254.169.100";
/** The instance tag the workload's code reads its quote nonce from. */
const NONCE_TAG = "tags/instance/bk-quote-nonce";
const WORKLOAD = "aws-cloud-disk";

/**
 * The workload's own code in the registered user-data (runcmd: cloud-final, after the agent provisioned): an IMDSv2
 * read of an instance tag, then the image's agent quoting over it with the vTPM; the JSON goes to the console in
 * base64 between markers (kernel lines may interleave).
 */
const QUOTE_SCRIPT = `#!/usr/bin/python3
import base64, subprocess, urllib.request
def imds(method, path, headers):
    r = urllib.request.Request("http://169.254.169.254" + path, method=method, headers=headers)
    return urllib.request.urlopen(r, timeout=30).read().decode()
token = imds("PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
nonce = imds("GET", "/latest/meta-data/${NONCE_TAG}", {"X-aws-ec2-metadata-token": token}).strip()
out = subprocess.run(["${AGENT_BIN}", "vtpm-evidence", "--nonce", nonce], stdout=subprocess.PIPE)
with open("/dev/console", "w") as c:
    c.write("bk-quote-exit %d\\n" % out.returncode)
    c.write("bk-quote-begin vtpm.json\\n" + base64.encodebytes(out.stdout).decode() + "bk-quote-end vtpm.json\\n")
`;
const QUOTE_SCRIPT_PATH = "/usr/local/sbin/bk-quote";

/** A runcmd the host adds to the user-data in IMDS: it must never run. */
const INJECTED_MARKER = "bk-injected-by-the-host";
const inject = (userData: string) => injectRuncmd(userData, INJECTED_MARKER);

/** The guest NIC's MAC (QEMU's default for the first NIC): IMDS describes the instance's interface by it. */
const MAC = "52:54:00:12:34:56";

/** EC2's description of the instance's one interface (in a VPC: not "classic"). */
const networkMetaData: Record<string, string> = {
  [`network/interfaces/macs/${MAC}/device-number`]: "0",
  [`network/interfaces/macs/${MAC}/interface-id`]: "eni-0ec2d15cb007c10d0",
  [`network/interfaces/macs/${MAC}/local-ipv4s`]: "169.254.169.15",
  [`network/interfaces/macs/${MAC}/mac`]: MAC,
  [`network/interfaces/macs/${MAC}/subnet-id`]: "subnet-0ec2d15cb007c10d0",
  [`network/interfaces/macs/${MAC}/subnet-ipv4-cidr-block`]: "169.254.169.0/24",
  [`network/interfaces/macs/${MAC}/vpc-id`]: "vpc-0ec2d15cb007c10d0",
  [`network/interfaces/macs/${MAC}/vpc-ipv4-cidr-block`]: "169.254.169.0/24",
};

/**
 * What IMDS answers for this instance besides the user-data: what cloud-init 22.4's Ec2 crawl reads, with the
 * `network/interfaces/macs/…` tree EC2 serves unless `network` is false — an IMDS without it makes stock
 * DataSourceEc2.network_config re-crawl IMDS, user-data included ("Refreshing stale metadata from prior to
 * upgrade"), in every stage that asks for network config, the network stage after the agent included; the image's
 * pinned Ec2Local never does (images/guest/configure.ts PINNED_EC2).
 */
function instanceMetaData(
  extra: Record<string, ImdsLeaf> = {},
  network = true,
): {
  metaData: Record<string, ImdsLeaf>;
  identity: Record<string, unknown>;
} {
  const id = "i-0ec2d15cb007c10d0";
  return {
    metaData: {
      "ami-id": "ami-0b0c1d5cb007c10d0",
      "ami-launch-index": "0",
      hostname: "ip-169-254-169-15.us-east-2.compute.internal",
      "instance-id": id,
      "instance-type": "m6a.large",
      "local-hostname": "ip-169-254-169-15.us-east-2.compute.internal",
      "local-ipv4": "169.254.169.15",
      mac: MAC,
      ...(network ? networkMetaData : {}),
      "placement/availability-zone": "us-east-2a",
      "placement/region": "us-east-2",
      "services/domain": "amazonaws.com",
      "services/partition": "aws",
      ...extra,
    },
    identity: {
      accountId: "123456789012",
      architecture: "x86_64",
      availabilityZone: "us-east-2a",
      imageId: "ami-0b0c1d5cb007c10d0",
      instanceId: id,
      instanceType: "m6a.large",
      pendingTime: "2026-01-01T00:00:00Z",
      privateIp: "169.254.169.15",
      region: "us-east-2",
      version: "2017-09-30",
    },
  };
}

interface BootOptions {
  /** swtpm state directory: the instance's vTPM (kept across boots of the same instance). */
  tpmDir: string;
  imds: FakeImds;
  psp: SimulatedPsp;
  runtimePort: number;
  /** Sees the console as it grows. */
  onConsole?: (text: string) => void;
}

/** Boots `disk` as EC2 boots it (test/support/cloud-disk-guest.ts) on the IMDS link until `until(console)`. */
function bootDisk(
  disk: string,
  shape: "nvme" | "virtio-scsi",
  o: BootOptions,
  until: (text: string) => boolean,
  timeoutMs: number,
): Promise<CloudDiskBoot> {
  return bootCloudDisk(
    disk,
    shape,
    {
      tpmDir: o.tpmDir,
      scratch,
      // The only ways out: IMDS and the runtime's forward (restrict=on); the PSP on its virtio-serial port.
      netOptions: imdsNetOptions({ imdsPort: o.imds.port, runtimeAddr: RUNTIME_ADDR, runtimePort: o.runtimePort }),
      pspSocket: o.psp.socketPath,
      // What cloud-init's ds-identify and identify_aws read to tell EC2.
      smbios: ec2Smbios(),
      label: shape,
      ...(o.onConsole ? { onConsole: o.onConsole } : {}),
    },
    until,
    timeoutMs,
  );
}

/** The agent's `vtpm-evidence` output ({"vtpm": evidence.vtpm}) through the runtime's own wire decoder. */
function tpmEvidence(e: Record<string, Buffer>): TpmEvidence {
  if (!e["vtpm.json"]?.length) throw new Error("the workload's runcmd printed no vtpm.json (the agent's output)");
  const out = JSON.parse(e["vtpm.json"].toString("utf8")) as { vtpm?: unknown };
  const ev = decodeWireVtpm(out.vtpm, "vtpm");
  expect(Object.keys(ev.pcrs?.sha256 ?? {}).map(Number)).toEqual(PCRS);
  expect(ev.eventLog?.length).toBeGreaterThan(0);
  return ev;
}

function appraise(ev: TpmEvidence, nonce: Buffer, policy: MeasuredBootPolicy) {
  const v = verifyTpmEvidence(ev, { nonce });
  return { tpm: v.checks, boot: appraiseMeasuredBoot(v, policy) };
}

/** systemd reached sysinit.target: the boot-phase units (systemd-pcrphase*) would have started by then. */
const SYSINIT = /Reached target .*(System Initialization|sysinit)/;

const failed = (checks: { id: string; ok: boolean }[]) => checks.filter((c) => !c.ok).map((c) => c.id);

describe.runIf(ready)(
  "the EC2 cloud disk boots as it ships under UEFI with a vTPM and IMDSv2, its measured boot is what was predicted, and Nitride releases its bundle only to it",
  () => {
    holdGuestSlots(1, "cloud-disk-boot"); // 1 guest(s) at once: see test/support/guest-slots.ts
    let m: ImageManifest;
    let dir: string;
    let disk: DiskRecord;
    let policy: MeasuredBootPolicy;
    let stack: EnclaiveletStack;
    let runtimePort: number;
    let newPsp: CloudDiskRun["newPsp"];
    let userData: string;
    let userDataSha256: string;
    /** The instance's vTPM: both boots are the same "instance" (the second with a swapped root volume). */
    let tpmDir: string;

    beforeAll(async () => {
      // The EC2 variant as `image build --cloud ec2` makes it (format disk): its datasource and the agent's
      // user-data source are EC2's; the runtime the guest reaches through its one forward.
      const run = await startCloudDiskRun({ cloud: "ec2", runtimeAddr: RUNTIME_ADDR, scratch });
      ({ dir, manifest: m, disk, policy, stack, runtimePort, newPsp } = run);
      // A TCG boot takes minutes: the host's own hostile attestation below uses a challenge issued when the workload
      // reads the nonce tag (each read of the tag is a new challenge: cloud-init-local's crawl reads it too) and sent
      // after the boot (the agent's own challenges are answered in seconds).
      await stack.admin("PUT", "nitride/config", { challenge_ttl: 600 });

      // The user-data AwsConfidentialVm renders for an image with the agent in it (vTPM on; cloud-disk-run.ts). The
      // workload's own code (the quote script, run by runcmd) is part of it, so of its registered hash.
      ({ text: userData, sha256: userDataSha256 } = run.userData({
        platform: "aws",
        workloadId: WORKLOAD,
        extraFiles: [{ path: QUOTE_SCRIPT_PATH, content: QUOTE_SCRIPT, permissions: "0755" }],
        runcmd: [`[ ${QUOTE_SCRIPT_PATH} ]`],
      }));

      // The instance's EK, read before the boot as GetInstanceTpmEkPub reads it, registered as the component does.
      tpmDir = mkdtempSync(path.join(scratch, "instance-tpm-"));
      const ekTpmt = await instanceEkTpmt(tpmDir, scratch);
      const vtpm = awsOsBinding(`AwsConfidentialVm ${WORKLOAD}`, {
        bootChain: { manifest: run.manifestPath, disk: path.join(dir, disk.path) },
        nitroTpmDocument: false,
        ekPublicTpmt: [ekTpmt],
      });
      expect(vtpm?.measuredBoot).toEqual(policy);
      expect(vtpm?.ekPublics).toEqual([ekTpmt]);
      expect(vtpm?.allowUnauthenticatedAk).toBeUndefined();
      await run.register(WORKLOAD, userDataSha256, { snp: { allowDebug: false, allowMigrationAgent: false }, vtpm });
    }, 3_600_000);
    afterAll(async () => {
      await stack?.rt.close();
    });

    it(
      "EC2 shape (NVMe): reaches the verified root by label; cloud-init takes the user-data from IMDSv2 and the image's unit attests and provisions; the workload's quote + event log satisfy the predicted policy; user-data swapped in IMDS afterwards has no effect; REPORT_DATA binding another AK is refused",
      { timeout: 1_500_000 },
      async () => {
        // The manifest names the locked tools the agent's evidence runs (images/guest/lock.ts VTPM_PACKAGES).
        const lock = parseLock(readFileSync(path.join(repoRoot, "images/guest/packages.lock"), "utf8"));
        expect(m.enclaivelet?.vtpmTools).toEqual(Object.fromEntries(VTPM_PACKAGES.map((p) => [p, lock.debs.get(p)])));
        expect(m.enclaivelet?.userDataSource).toBe("ec2");
        // The hostile part, prepared when the guest reads the nonce tag (the last read is the workload's): a challenge of this workload, an
        // ephemeral key, and a second TPM's AK bound into REPORT_DATA; the workload's genuine quote is then made over
        // SHA-256 of it — what a workload (or a guest kernel at VMPL0) relaying this VM's vTPM for another TPM's key
        // would send.
        const other = await SwTpm.start();
        let hostile: { nonce: string; reportData: Buffer; ephemeral: ReturnType<typeof newEphemeralKey> } | undefined;
        const psp = await newPsp();
        let imds: FakeImds | undefined;
        let b: CloudDiskBoot;
        try {
          const otherAk = await new Vtpm({ tcti: other.tcti }).attestationKey();
          const quoteNonce = async () => {
            const ch = (await stack.client.request("POST", "nitride/challenge", { body: { workload_id: WORKLOAD } }))
              .body as { data: { nonce: string } };
            const ephemeral = newEphemeralKey();
            const reportData = reportDataForVtpm(
              Buffer.from(ch.data.nonce, "base64url"),
              boundKeyMaterial(ephemeral),
              otherAk,
              Buffer.from(userDataSha256, "hex"),
            );
            hostile = { nonce: ch.data.nonce, reportData, ephemeral };
            return createHash("sha256").update(reportData).digest("hex");
          };
          // A hostile IMDS: no network/ tree (stock cloud-init 22.4 would then re-crawl it in the network stage,
          // after the agent), and once cloud-init-local has cached the user-data (the agent's unit starts after it)
          // the host swaps in user-data with a runcmd of its own.
          imds = await startFakeImds({ ...instanceMetaData({ [NONCE_TAG]: quoteNonce }, false), userData });
          let readsBeforeSwap: number | undefined;
          const swapOnce = (text: string) => {
            if (readsBeforeSwap !== undefined || !sawEvent(text, "start")) return;
            readsBeforeSwap = imds!.requests.filter((r) => /\/user-data$/.test(r.path)).length;
            imds!.setUserData(inject(userData));
          };
          b = await bootDisk(
            path.join(dir, disk.path),
            "nvme",
            { tpmDir, imds, psp, runtimePort, onConsole: swapOnce },
            (t) => t.includes("bk-quote-end vtpm.json") || sawEvent(t, "failed"),
            1_200_000,
          );
          console.log(
            `[disk-boot] nvme: boot to secrets ${b.toSecrets ?? "-"} s, to the workload's quote ${b.seconds} s; PSP requests ${psp.requests.length}; IMDS ${imds.requests.map((r) => `${r.method} ${r.path} ${r.status}`).join(", ")}`,
          );
          expect(b.console).toMatch(/nvme0n1: p1 p2 p3/);
          expect(b.console).toContain(
            `buckypaper-init: root /dev/nvme0n1p2 verified (dm-verity ${m.verity.rootHash}, hash tree /dev/nvme0n1p3)`,
          );
          expect(b.console).toMatch(SYSINIT);
          // systemd 252's PCR 11 boot-phase barriers would extend PCR 11 after the agent's quote (outside the
          // firmware log): the UKI's command line masks them, so they never start.
          expect(b.console).toContain("systemd.mask=systemd-pcrphase.service");
          const units = b.console.split("\n").filter((l) => !l.includes("systemd.mask="));
          expect(units.filter((l) => /pcrphase|PCR Barrier/i.test(l))).toEqual([]);

          // IMDSv2 as EC2 answers it with httpTokens required: cloud-init asked for a token first and sent it with
          // every read (no 401). It crawled once, in the local stage, before the agent started: nothing read the
          // user-data again after the swap (the image's pinned Ec2Local offers no network config to re-crawl for).
          expect(imds.requests[0], JSON.stringify(imds.requests.slice(0, 3))).toMatchObject({
            method: "PUT",
            path: "/latest/api/token",
            status: 200,
          });
          expect(imds.requests.filter((r) => r.status === 401)).toEqual([]);
          const udReads = imds.requests.filter((r) => /\/user-data$/.test(r.path));
          expect(readsBeforeSwap).toBe(1);
          expect(udReads.map((r) => r.status)).toEqual([200]);
          expect(imds.requests.filter((r) => r.path === "/latest/api/token").length).toBe(2); // cloud-init + runcmd

          // The image's own unit: challenge → SNP report from the PSP binding its AK → quote → EK credential round →
          // token → bundle → the file written. Nitride accepted every check.
          const events = agentEvents(b.console);
          const names = events.map((e) => e.event);
          console.log(`[disk-boot] nvme: agent events ${names.join(" ")}`);
          expect(events.find((e) => e.event === "evidence.provider")?.provider).toBe("virtio-psp");
          expect(events.find((e) => e.event === "user-data.measured")?.sha256).toBe(userDataSha256);
          for (const e of ["evidence.collected", "ek-credential.activated", "attest.ok", "login.ok", "bundle.received"])
            expect(names, b.console.slice(-4000)).toContain(e);
          expect(events.find((e) => e.event === "done")?.written).toBe(1);
          expect(psp.requests.filter((q) => q.kind === "report" && q.ok).length).toBeGreaterThanOrEqual(1);
          // No secret on the console.
          expect(b.console).not.toContain("web-db-s3cret");

          // The workload's runcmd ran (after the agent) with the registered user-data from cloud-init's cache: the
          // swapped-in runcmd never did.
          expect(b.console, b.console.slice(-3000)).toContain("bk-quote-exit 0");
          expect(b.console).not.toContain(INJECTED_MARKER);
          expect(b.evidence, b.console.slice(-3000)).toBeDefined();
          expect(hostile).toBeDefined();
          const qnonce = createHash("sha256").update(hostile!.reportData).digest();
          const r = appraise(tpmEvidence(b.evidence!), qnonce, policy);
          console.log(`[disk-boot] nvme: ${[...r.tpm, ...r.boot].map((c) => `${c.id}=${c.ok}`).join(" ")}`);
          expect(failed(r.tpm)).toEqual([]);
          expect(r.boot.map((c) => c.id)).toEqual([
            "boot.separators",
            "boot.applications",
            "boot.kernel-cmdline",
            "boot.pcrs",
          ]);
          expect(failed(r.boot), JSON.stringify(r.boot, null, 1)).toEqual([]);
          // A quote with another nonce is not this attestation's.
          expect(failed(appraise(tpmEvidence(b.evidence!), Buffer.alloc(32, 7), policy).tpm)).toEqual(["tpm.nonce"]);

          // The hostile evidence: this VM's genuine SNP report (the PSP answers any REPORT_DATA a VMPL0 kernel asks
          // for) and its genuine quote, but REPORT_DATA binds the second TPM's AK.
          const out = JSON.parse(b.evidence!["vtpm.json"].toString("utf8")) as { vtpm: unknown };
          const report = await pspReport(psp, hostile!.reportData);
          const res = await postAttest(stack, {
            workload_id: WORKLOAD,
            nonce: hostile!.nonce,
            evidence: { kind: "snp", ...report, vtpm: out.vtpm },
            ephemeral_public_key: hostile!.ephemeral.spkiDer.toString("base64"),
            mlkem_public_key: Buffer.from(hostile!.ephemeral.mlkem!.publicKey).toString("base64"),
            user_data_sha256: userDataSha256,
          });
          // Not counted: the EK credential round still pending, and nitride.reference-values (no claims from a
          // refused verdict). tpm.nonce follows from the binding: the quote is checked against SHA-256 of the
          // REPORT_DATA that binds the quoting AK, which is not the one the report carries.
          const ids = failedChecks(res.body).filter(
            (id) => id !== "vtpm.ek-credential" && id !== "nitride.reference-values",
          );
          console.log(`[disk-boot] nvme: another AK in REPORT_DATA: HTTP ${res.status}, failed ${ids.join(" ")}`);
          expect(res.status).toBe(403);
          expect(ids).toEqual(["policy.report-data", "vtpm.ak-binding", "tpm.nonce"]);
          // Everything else of this VM's evidence holds: report signature and measurement, quote, boot chain.
          const checks = (res.body as { data: { verdict: { checks: { id: string; ok: boolean }[] } } }).data.verdict
            .checks;
          for (const id of ["tpm.quote-signature", "tpm.event-log-replay", "boot.applications", "boot.pcrs"])
            expect(checks.find((c) => c.id === id)?.ok, id).toBe(true);
        } finally {
          await imds?.close();
          await psp.close();
          await other.stop();
        }
      },
    );

    it(
      "GCE shape (virtio-scsi), UKI command line changed by one byte on the disk (same instance, swapped root volume) and a runcmd added to the user-data in IMDS: boots, and Nitride refuses the image's agent by the boot-chain checks and the user-data binding; none of the user-data runs",
      { timeout: 1_500_000 },
      async () => {
        const copy = path.join(scratch, "tampered.raw");
        copyFileSync(path.join(dir, disk.path), copy);
        const esp = disk.partitions[0];
        const fd = openSync(copy, "r+");
        const region = Buffer.alloc((esp.lastLba - esp.firstLba + 1) * 512);
        readSync(fd, region, 0, region.length, esp.firstLba * 512);
        const at = region.indexOf(Buffer.from("nvme_core.io_timeout=4294967295"));
        expect(at).toBeGreaterThan(0);
        // …4294967295 → …4294967294: still a valid, harmless command line.
        writeSync(fd, Buffer.from("4"), 0, 1, esp.firstLba * 512 + at + "nvme_core.io_timeout=429496729".length);
        closeSync(fd);
        const changed = inject(userData);
        const changedSha256 = createHash("sha256").update(changed).digest("hex");
        const psp = await newPsp();
        const imds = await startFakeImds({ ...instanceMetaData(), userData: changed });
        let b: CloudDiskBoot;
        let refusedAt: number | undefined;
        try {
          b = await bootDisk(
            copy,
            "virtio-scsi",
            { tpmDir, imds, psp, runtimePort },
            // After the refusal, until systemd gives up the units that require the agent's (or 90 s).
            (t) => {
              if (!sawEvent(t, "failed")) return false;
              refusedAt ??= Date.now();
              return /Dependency failed for/.test(t) || Date.now() - refusedAt > 90_000;
            },
            1_200_000,
          );
        } finally {
          await psp.close();
          await imds.close();
        }
        console.log(`[disk-boot] virtio-scsi, tampered: booted to the refusal in ${b.seconds} s`);
        expect(b.console).toContain("nvme_core.io_timeout=4294967294");
        expect(b.console).toMatch(/buckypaper-init: root \/dev\/sd[a-z]2 verified/);

        // The image's agent measured the user-data cloud-init took from IMDS — the changed one — and was refused
        // by the boot chain (the UKI byte) and by the user-data binding (the runcmd), each by name.
        const events = agentEvents(b.console);
        console.log(`[disk-boot] virtio-scsi, tampered: agent events ${events.map((e) => e.event).join(" ")}`);
        expect(events.find((e) => e.event === "user-data.measured")?.sha256).toBe(changedSha256);
        const verdict = events.find((e) => e.event === "failed");
        expect(verdict?.reason, JSON.stringify(verdict)).toBe("refused");
        const ids = refusedIds(String(verdict?.error));
        console.log(`[disk-boot] virtio-scsi, tampered: Nitride refused: ${ids.join(" ")}`);
        // The user-data binding: REPORT_DATA is checked with the REGISTERED hash (policy.report-data, and with it the
        // AK binding and the quote's nonce, which hang off that REPORT_DATA) and nitride.user-data names the reason;
        // the boot chain: the UKI's Authenticode digest and PCR 11.
        expect(ids).toEqual([
          "policy.report-data",
          "vtpm.ak-binding",
          "tpm.nonce",
          "boot.applications",
          "boot.pcrs",
          "nitride.user-data",
        ]);
        expect(events.map((e) => e.event)).not.toContain("bundle.received");
        // cloud-init's user stages require the agent's unit: the added runcmd (and the workload's) never ran.
        expect(b.console).not.toContain(INJECTED_MARKER);
        expect(b.console).not.toContain("bk-quote-exit");
      },
    );
  },
);
