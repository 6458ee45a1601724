// Boots the kit's cloud disk the way EC2 and GCE do — UEFI firmware (Debian's OVMF.fd, no direct kernel boot)
// loading \EFI\BOOT\BOOTX64.EFI from the disk's ESP — with a real software TPM (swtpm) as the vTPM: the NVMe shape
// of EC2 Nitro and the virtio-scsi shape of GCE. The disk is the EC2 variant of the image (`image build --cloud
// ec2`). The guest must reach its dm-verity root by GPT label. A simulated PSP outside the guest (the local stack's
// virtio-serial one, runtime/sim/qemu/psp.ts) measured the firmware and vCPU the guest was started with: the
// firmware-only SNP launch digest, the same for every VM of that size, as on EC2.
// Then the proof, collected by the image itself: a test hook in the initramfs (an extra newc archive inside the UKI,
// so this disk's UKI is not the production one — its prediction is taken from it the same way) carries no tools of
// its own; it chroots into the verified root and runs the image's agent twice:
//   1. `enclaivelet vtpm-evidence --nonce HEX` — the Vtpm.collect + wireVtpm that `run` attaches to its SNP
//      evidence, with the image's tpm2-tools against /dev/tpmrm0 (persisted EK + AK, quote over the boot PCRs, the
//      firmware's TCG event log) — printed as JSON. The host verifies the quote, replays the log to the quoted PCRs
//      and checks the measured-boot policy predicted from the disk's UKI (PCR 4 Authenticode digest, PCR 11 of
//      systemd-stub, the command line with the verity root hash).
//   2. `enclaivelet run --user-data FILE` — the whole AWS flow, the agent's own code: the user-data the AWS
//      component renders (agent in the image, vTPM on; only the evidence provider is the simulated PSP's port, and
//      the file stands in for IMDS), read from the console; user-mode networking whose only way out is a forward to
//      a real runtime (HTTPS, pinned CA) on the host. The agent asks Nitride for a challenge, binds nonce, its
//      ephemeral keys, the vTPM AK and the user-data's SHA-256 into REPORT_DATA, gets the SNP report from the PSP,
//      quotes over SHA-256(REPORT_DATA), answers Nitride's EK credential round (TPM2_ActivateCredential in the
//      guest's TPM) and fetches its bundle. The workload is registered as AwsConfidentialVm registers it
//      (awsOsBinding + the provider's workload body): the PSP's firmware-only digest, the boot policy predicted from
//      the disk (predictFromDisk, with kitCmdlineMustContain), the user-data hash, and the instance's EK (read from
//      the swtpm before the first boot, as GetInstanceTpmEkPub reads the NitroTPM's) — with nitroTpmDocument: false,
//      since the image has no nitro-tpm-attest and swtpm no Nitro PKI: the AK is authenticated by EK credential
//      activation instead.
// Refusals: evidence whose SNP REPORT_DATA binds another TPM's AK (a second swtpm) beside this guest's genuine quote
// is refused by the binding checks; a copy of the disk whose UKI command line differs by one byte boots too (the
// firmware has no Secure Boot keys here) in the same "instance" (same vTPM: a swapped root volume) and the agent in
// it is refused by Nitride's boot-chain checks.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import net from "node:net";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { holdGuestSlots } from "../../support/guest-slots.js";
import {
  buildDisk,
  buildImage,
  newcArchive,
  parseLock,
  ukiFromDiskFile,
  VTPM_PACKAGES,
  type ImageManifest,
} from "../../../images/guest/index.js";
import type { DiskRecord } from "../../../images/guest/manifest.js";
import { predictFromDisk } from "../../../images/index.js";
import { decodeWireVtpm } from "../../../runtime/protocol/evidence.js";
import {
  appraiseMeasuredBoot,
  verifyTpmEvidence,
  type MeasuredBootPolicy,
  type TpmEvidence,
} from "../../../runtime/attestation/tpm/index.js";
import { reportDataForVtpm } from "../../../runtime/attestation/binding.js";
import { boundKeyMaterial, newEphemeralKey } from "../../../runtime/guest/attest.js";
import { Vtpm } from "../../../runtime/guest/evidence/vtpm.js";
import { renderUserData } from "../../../runtime/guest/cloud-init/index.js";
import { createSnpSimulator } from "../../../runtime/sim/snp.js";
import { measureLaunch } from "../../../runtime/sim/localvm/psp.js";
import {
  agentEvents,
  GUEST_RUNTIME_ADDR,
  guestNetOptions,
  startSimulatedPsp,
  type SimulatedPsp,
} from "../../../runtime/sim/qemu/index.js";
import { VIRTIO_PSP_PORT_NAME } from "../../../runtime/guest/evidence/virtio-psp.js";
import { awsOsBinding } from "../../../components/aws/os-binding.js";
import { kinds } from "../../../provider/kinds.js";
import { startEnclaiveletStack, postAttest, failedChecks, type EnclaiveletStack } from "../../runtime/guest/stack.js";
import { KIT_GUEST_CPU } from "../../support/kit-guest.js";
import { haveCommand, requireTool } from "../../support/prereq.js";
import { SwTpm } from "../../support/swtpm.js";
import { DEBIAN_OVMF, cloudDiskArgv, instanceEkTpmt, startInstanceTpm } from "../../support/cloud-disk-guest.js";
import { repoRoot } from "../../support/shared.js";

const OVMF = DEBIAN_OVMF;
const PCRS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 14];
const ready =
  requireTool("root (the image build runs mmdebstrap --mode=root)", process.getuid?.() === 0) &&
  requireTool("qemu-system-x86_64", haveCommand("qemu-system-x86_64", ["--version"])) &&
  requireTool("Debian's OVMF.fd (ovmf)", existsSync(OVMF)) &&
  requireTool("swtpm", haveCommand("swtpm", ["--version"])) &&
  requireTool("tpm2-tools (the instance's EK, a second TPM's AK)", haveCommand("tpm2_createek", ["--version"])) &&
  requireTool("socat (the guest's forward to the runtime)", haveCommand("socat", ["-V"])) &&
  ["objcopy", "mcopy", "unsquashfs"].every((t) =>
    requireTool(t, haveCommand(t, t === "unsquashfs" ? ["-h"] : ["--version"])),
  );

const scratch = mkdtempSync(path.join(tmpdir(), "bk-diskboot-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/**
 * The hook: after the init verified the root and mounted it at /newroot, run the image's own agent there against the
 * vTPM with a nonce read from the console, and print its JSON in base64 (kernel lines may interleave on the console).
 * Then read the user-data (base64 lines up to "bk-end"), bring up the NIC and the PSP port as udev would (the port's
 * /dev/virtio-ports name), and run the agent's `run` with it; its events go to the console.
 */
const HOOK = `#!/bin/sh
R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t securityfs securityfs $R/sys/kernel/security
mount -o bind /dev $R/dev
echo "bk-hook: nonce?" >/dev/console
read -r nonce </dev/console
chroot $R /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \\
  /opt/buckypaper/enclaivelet/bin/enclaivelet vtpm-evidence --nonce "$nonce" >$R/run/bk-vtpm.json 2>/dev/console
echo "bk-hook-exit $?" >/dev/console
{
  echo "bk-hook-begin vtpm.json"
  base64 $R/run/bk-vtpm.json
  echo "bk-hook-end vtpm.json"
} >/dev/console
rm -f $R/run/bk-vtpm.json
echo "bk-hook: user-data?" >/dev/console
: >$R/run/bk-user-data.b64
while read -r l </dev/console; do
  [ "$l" = bk-end ] && break
  echo "$l" >>$R/run/bk-user-data.b64
done
base64 -d $R/run/bk-user-data.b64 >$R/run/bk-user-data
chroot $R /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin /bin/sh -c '
  for m in virtio_pci virtio_net virtio_console; do modprobe $m; done
  ip link set lo up && ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0
  for p in /sys/class/virtio-ports/*; do
    if [ "$(cat $p/name 2>/dev/null)" = ${VIRTIO_PSP_PORT_NAME} ]; then
      mkdir -p /dev/virtio-ports && ln -sf ../\${p##*/} /dev/virtio-ports/${VIRTIO_PSP_PORT_NAME}
    fi
  done' >/dev/console 2>&1
chroot $R /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \\
  /opt/buckypaper/enclaivelet/bin/enclaivelet run --user-data /run/bk-user-data >/dev/console 2>&1
echo "bk-hook-run-exit $?" >/dev/console
rm -f $R/run/bk-user-data $R/run/bk-user-data.b64
chroot $R /usr/sbin/ip link set eth0 down
umount $R/dev $R/sys/kernel/security $R/sys $R/proc
`;

/** The hook as a newc archive: the script and the busybox applets it needs beyond the init's. */
async function hookLayer(): Promise<Buffer> {
  const root = path.join(scratch, "hook");
  mkdirSync(path.join(root, "bin"), { recursive: true });
  for (const a of ["base64", "chroot", "rm"]) symlinkSync("busybox", path.join(root, "bin", a));
  writeFileSync(path.join(root, "bk-hook"), HOOK);
  chmodSync(path.join(root, "bk-hook"), 0o755);
  return newcArchive(root);
}

interface Boot {
  console: string;
  evidence?: Record<string, Buffer>;
  seconds: number;
}

interface BootOptions {
  /** swtpm state directory: the instance's vTPM (kept across boots of the same instance). */
  tpmDir: string;
  /** Answers the hook's nonce prompt (hex is sent). */
  nonce: () => Promise<Buffer>;
  /** The user-data text the hook's `run` reads. */
  userData: string;
  psp: SimulatedPsp;
  runtimePort: number;
}

/** Boots `disk` under OVMF + swtpm + the PSP until `until` (or `timeoutMs`); answers the hook's prompts. */
async function bootDisk(
  disk: string,
  shape: "nvme" | "virtio-scsi",
  o: BootOptions,
  until: RegExp,
  timeoutMs: number,
): Promise<Boot> {
  const t0 = Date.now();
  const { sock, child: swtpm } = await startInstanceTpm(o.tpmDir, scratch);
  const argv = cloudDiskArgv({
    disk,
    shape,
    tpmSock: sock,
    // The only way out: the runtime's forward (restrict=on); the PSP on its virtio-serial port.
    netOptions: guestNetOptions({ runtimePort: o.runtimePort }),
    pspSocket: o.psp.socketPath,
  });
  const q: ChildProcess = spawn("qemu-system-x86_64", argv, { stdio: ["pipe", "pipe", "pipe"] });
  let text = "";
  let askedNonce = false;
  let askedUserData = false;
  const done = new Promise<void>((resolve) => {
    const timer = setTimeout(() => q.kill("SIGKILL"), timeoutMs);
    const onData = (c: Buffer) => {
      text += c.toString("latin1");
      if (!askedNonce && text.includes("bk-hook: nonce?")) {
        askedNonce = true;
        void o.nonce().then(
          (n) => q.stdin!.write(n.toString("hex") + "\n"),
          (e: Error) => {
            text += `\n[host] nonce: ${e.message}\n`;
            q.kill("SIGKILL");
          },
        );
      }
      if (!askedUserData && text.includes("bk-hook: user-data?")) {
        askedUserData = true;
        const lines =
          Buffer.from(o.userData)
            .toString("base64")
            .match(/.{1,76}/g) ?? [];
        q.stdin!.write([...lines, "bk-end", ""].join("\n"));
      }
      if (until.test(text) || /powering off/.test(text)) q.kill("SIGKILL");
    };
    q.stdout!.on("data", onData);
    q.stderr!.on("data", onData);
    q.on("close", () => {
      clearTimeout(timer);
      resolve();
    });
  });
  await done;
  swtpm.kill();
  const evidence: Record<string, Buffer> = {};
  for (const m of text.matchAll(/bk-hook-begin (\S+)\r?\n([\s\S]*?)bk-hook-end \1/g))
    evidence[m[1]] = Buffer.from(
      m[2]
        .split(/\r?\n/)
        .filter((l) => /^[A-Za-z0-9+/=]+$/.test(l))
        .join(""),
      "base64",
    );
  return {
    console: text,
    seconds: Math.round((Date.now() - t0) / 1000),
    ...(Object.keys(evidence).length ? { evidence } : {}),
  };
}

/** One request to the simulated PSP on its socket, as the guest's virtio-serial port sends it. */
function pspReport(psp: SimulatedPsp, reportData: Buffer): Promise<{ report: string; cert_table: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(psp.socketPath);
    let buf = "";
    s.on("error", reject);
    s.on("data", (d) => {
      buf += d.toString("utf8");
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      s.destroy();
      const a = JSON.parse(buf.slice(0, nl)) as { report?: string; cert_table?: string; error?: string };
      if (!a.report || !a.cert_table) reject(new Error(`PSP: ${a.error ?? "no report"}`));
      else resolve({ report: a.report, cert_table: a.cert_table });
    });
    s.write(`${JSON.stringify({ report_data: reportData.toString("hex") })}\n`);
  });
}

/** The agent's output ({"vtpm": evidence.vtpm}) through the runtime's own wire decoder. */
function tpmEvidence(e: Record<string, Buffer>): TpmEvidence {
  if (!e["vtpm.json"]?.length) throw new Error("the hook printed no vtpm.json (the agent's output)");
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

/** The agent's events from the hook's `run` only (the image's own unit runs later in systemd, without IMDS here). */
function runEvents(text: string): Record<string, unknown>[] {
  const from = text.indexOf("bk-hook: user-data?");
  const to = text.indexOf("bk-hook-run-exit", from);
  return from < 0 || to < 0 ? [] : agentEvents(text.slice(from, to));
}

/** systemd reached sysinit.target: the boot-phase units (systemd-pcrphase*) would have started by then. */
const SYSINIT = /Reached target .*System Initialization/;

const failed = (checks: { id: string; ok: boolean }[]) => checks.filter((c) => !c.ok).map((c) => c.id);

/**
 * Nitride's failed check ids in the agent's refusal ("attestation refused (HTTP 403): id: detail; id: detail"),
 * without the EK credential round still pending (it is listed until the round trip, which a refusal never reaches)
 * and without nitride.reference-values (a refused verdict has no claims to compare).
 */
function refusedIds(error: string): string[] {
  return [...error.matchAll(/(?:\): |; )([a-z][\w-]*(?:\.[\w-]+)+): (pending:)?/g)]
    .filter((m) => !(m[1] === "vtpm.ek-credential" && m[2]) && m[1] !== "nitride.reference-values")
    .map((m) => m[1]);
}

const WORKLOAD = "aws-cloud-disk";

describe.runIf(ready)(
  "the cloud disk boots under UEFI with a vTPM, its measured boot is what was predicted, and Nitride releases its bundle only to it",
  () => {
    holdGuestSlots(1, "cloud-disk-boot"); // 1 guest(s) at once: see test/support/guest-slots.ts
    const cacheDir = path.join(homedir(), ".cache/buckypaper");
    let m: ImageManifest;
    let dir: string;
    let disk: DiskRecord;
    let policy: MeasuredBootPolicy;
    let manifestPath: string;
    let stack: EnclaiveletStack;
    let runtimePort: number;
    let measurement: string;
    let userData: string;
    let userDataSha256: string;
    /** The instance's vTPM: both boots are the same "instance" (the second with a swapped root volume). */
    let tpmDir: string;

    beforeAll(async () => {
      // The EC2 variant (its datasource and the agent's user-data source are EC2's): the tools the vTPM evidence
      // needs are in every variant's root (images/guest/lock.ts), and this disk is what EC2 would boot.
      const img = await buildImage({
        repoRoot,
        lockPath: path.join(repoRoot, "images/guest/packages.lock"),
        cacheDir,
        cloud: "ec2",
        format: "direct",
      });
      dir = img.dir;
      m = img.manifest;
      // The hooked disk is a separate record: the shared manifest.json never names it.
      disk = await buildDisk({
        imageDir: dir,
        manifest: m,
        repoRoot,
        cacheDir,
        sourceDateEpoch: m.sourceDateEpoch,
        testLayers: [await hookLayer()],
      });
      manifestPath = path.join(scratch, "manifest.json");
      writeFileSync(manifestPath, JSON.stringify({ ...m, disk }));
      policy = predictFromDisk(path.join(dir, "manifest.json"), { ...m, disk }, "sha256").policy;

      // The runtime the guest reaches through its one forward, trusting the simulated SNP platform.
      const sim = await createSnpSimulator({ product: "Genoa", rsaBits: 2048 });
      stack = await startEnclaiveletStack({ sim, tlsHosts: [GUEST_RUNTIME_ADDR] });
      runtimePort = Number(new URL(stack.rt.url).port);
      // A TCG boot takes minutes: the host's own hostile attestation below uses a challenge issued at the hook's
      // prompt and sent after the boot (the agent's own challenges are answered in seconds).
      await stack.admin("PUT", "nitride/config", { challenge_ttl: 600 });
      // What the PSP reports for this launch: firmware + vCPUs only (no kernel-hashes table in Debian's OVMF).
      const launch = measureLaunch({ firmware: OVMF, vcpus: 1, vcpuType: KIT_GUEST_CPU });
      expect(launch.kernelMeasured).toBe(false);
      measurement = launch.measurement;

      // The user-data AwsConfidentialVm renders for an image with the agent in it (vTPM on); the provider is the
      // simulated PSP's port instead of /dev/sev-guest, and one secret goes to a file.
      userData = renderUserData({
        platform: "aws",
        tee: "snp",
        runtimeUrl: `https://${GUEST_RUNTIME_ADDR}:${runtimePort}`,
        runtimeCaSha256: stack.caSha256,
        workloadId: WORKLOAD,
        agent: { kind: "image" },
        evidenceProvider: "virtio-psp",
        vtpm: true,
        hostname: "aws-cloud-disk",
        provision: { files: [{ path: "/run/bk-app/db-password", secret: "web/db", field: "password", mode: "0600" }] },
      }).text;
      userDataSha256 = createHash("sha256").update(userData).digest("hex");

      // The instance's EK, read before the boot as GetInstanceTpmEkPub reads it, registered as the component does.
      tpmDir = mkdtempSync(path.join(scratch, "instance-tpm-"));
      const ekTpmt = await instanceEkTpmt(tpmDir, scratch);
      const vtpm = awsOsBinding(`AwsConfidentialVm ${WORKLOAD}`, {
        bootChain: { manifest: manifestPath, disk: path.join(dir, disk.path) },
        nitroTpmDocument: false,
        ekPublicTpmt: [ekTpmt],
      });
      expect(vtpm?.measuredBoot).toEqual(policy);
      expect(vtpm?.ekPublics).toEqual([ekTpmt]);
      expect(vtpm?.allowUnauthenticatedAk).toBeUndefined();
      await stack.admin(
        "PUT",
        `nitride/workloads/${WORKLOAD}`,
        kinds.workload.body({
          workloadId: WORKLOAD,
          platforms: ["snp"],
          snpMeasurements: [measurement],
          userDataSha256,
          policy: { snp: { allowDebug: false, allowMigrationAgent: false }, vtpm },
          kvSecrets: ["secret/data/web/db"],
        }),
      );
    }, 3_600_000);
    afterAll(async () => {
      await stack?.rt.close();
    });

    /** A simulated PSP for one launch of the guest (the same firmware and vCPUs: the same MEASUREMENT). */
    const newPsp = () =>
      startSimulatedPsp({
        sim: stack.sim,
        measurement,
        socketPath: path.join(mkdtempSync(path.join(scratch, "psp-")), "psp.sock"),
        kernelMeasured: false,
      });

    it(
      "EC2 shape (NVMe): reaches the verified root by label; quote + event log satisfy the predicted policy; the agent's run is accepted by Nitride and provisions; REPORT_DATA binding another AK is refused",
      { timeout: 1_500_000 },
      async () => {
        // The manifest names the locked tools the agent's evidence runs (images/guest/lock.ts VTPM_PACKAGES).
        const lock = parseLock(readFileSync(path.join(repoRoot, "images/guest/packages.lock"), "utf8"));
        expect(m.enclaivelet?.vtpmTools).toEqual(Object.fromEntries(VTPM_PACKAGES.map((p) => [p, lock.debs.get(p)])));
        expect(m.enclaivelet?.userDataSource).toBe("ec2");
        // The hostile part, prepared at the hook's prompt: a challenge of this workload, an ephemeral key, and a
        // second TPM's AK bound into REPORT_DATA; the guest's genuine quote is then made over SHA-256 of it — what a
        // guest kernel at VMPL0 relaying this VM's vTPM for another TPM's key would send.
        const other = await SwTpm.start();
        let hostile: { nonce: string; reportData: Buffer; ephemeral: ReturnType<typeof newEphemeralKey> } | undefined;
        const psp = await newPsp();
        let b: Boot;
        try {
          const otherAk = await new Vtpm({ tcti: other.tcti }).attestationKey();
          const nonce = async () => {
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
            return createHash("sha256").update(reportData).digest();
          };
          b = await bootDisk(
            path.join(dir, disk.path),
            "nvme",
            { tpmDir, nonce, userData, psp, runtimePort },
            SYSINIT,
            1_200_000,
          );
          console.log(`[disk-boot] nvme: booted to sysinit in ${b.seconds} s; PSP requests ${psp.requests.length}`);
          expect(b.console).toMatch(/nvme0n1: p1 p2 p3/);
          expect(b.console).toContain(
            `buckypaper-init: root /dev/nvme0n1p2 verified (dm-verity ${m.verity.rootHash}, hash tree /dev/nvme0n1p3)`,
          );
          expect(b.console).toMatch(SYSINIT);
          // systemd 252's PCR 11 boot-phase barriers would extend PCR 11 after the quote the agent takes in the
          // real system (outside the firmware log): the UKI's command line masks them, so they never start.
          expect(b.console).toContain("systemd.mask=systemd-pcrphase.service");
          const units = b.console.split("\n").filter((l) => !l.includes("systemd.mask="));
          expect(units.filter((l) => /pcrphase|PCR Barrier/i.test(l))).toEqual([]);
          // The agent in the verified root quoted with the image's tpm2-tools (the hook carries none).
          expect(b.console, b.console.slice(-3000)).toContain("bk-hook-exit 0");
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
          expect(failed(appraise(tpmEvidence(b.evidence!), randomBytes(32), policy).tpm)).toEqual(["tpm.nonce"]);

          // The agent's own `run`: challenge → SNP report from the PSP binding its AK → quote → EK credential
          // round → token → bundle → the file written. Nitride accepted every check.
          const events = runEvents(b.console);
          const names = events.map((e) => e.event);
          console.log(`[disk-boot] nvme: agent events ${names.join(" ")}`);
          expect(b.console, b.console.slice(-4000)).toContain("bk-hook-run-exit 0");
          expect(events.find((e) => e.event === "evidence.provider")?.provider).toBe("virtio-psp");
          expect(events.find((e) => e.event === "user-data.measured")?.sha256).toBe(userDataSha256);
          for (const e of ["evidence.collected", "ek-credential.activated", "attest.ok", "login.ok", "bundle.received"])
            expect(names, b.console.slice(-4000)).toContain(e);
          expect(events.find((e) => e.event === "done")?.written).toBe(1);
          expect(psp.requests.filter((q) => q.kind === "report" && q.ok).length).toBeGreaterThanOrEqual(1);
          // No secret on the console.
          expect(b.console).not.toContain("web-db-s3cret");

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
          await psp.close();
          await other.stop();
        }
      },
    );

    it(
      "GCE shape (virtio-scsi), UKI command line changed by one byte on the disk (same instance, swapped root volume): boots, fails the policy, and Nitride refuses the agent by the boot-chain checks",
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
        const nonce = randomBytes(32);
        const psp = await newPsp();
        let b: Boot;
        try {
          b = await bootDisk(
            copy,
            "virtio-scsi",
            { tpmDir, nonce: async () => nonce, userData, psp, runtimePort },
            /systemd\[1\]: systemd \d+/,
            1_200_000,
          );
        } finally {
          await psp.close();
        }
        console.log(`[disk-boot] virtio-scsi, tampered: booted to systemd in ${b.seconds} s`);
        expect(b.console).toContain("nvme_core.io_timeout=4294967294");
        expect(b.console).toMatch(/buckypaper-init: root \/dev\/sd[a-z]2 verified/);
        // The agent in the verified root quoted with the image's tpm2-tools (the hook carries none).
        expect(b.console, b.console.slice(-3000)).toContain("bk-hook-exit 0");
        expect(b.evidence, b.console.slice(-3000)).toBeDefined();
        const ev = tpmEvidence(b.evidence!);
        const r = appraise(ev, nonce, policy);
        console.log(
          `[disk-boot] virtio-scsi, tampered: ${[...r.tpm, ...r.boot].map((c) => `${c.id}=${c.ok}`).join(" ")}`,
        );
        // Genuine evidence (quote, nonce, replay all verify) of another boot chain.
        expect(failed(r.tpm)).toEqual([]);
        expect(failed(r.boot)).toEqual(["boot.applications", "boot.pcrs"]);
        // The same evidence satisfies the prediction made from the tampered disk itself: the UKI is what differs.
        const own = predictFromDisk(
          manifestPath,
          {
            ...m,
            disk: {
              ...disk,
              uki: { ...disk.uki, sha256: createHash("sha256").update(ukiFromDiskFile(copy)).digest("hex") },
            },
          },
          "sha256",
          { diskPath: copy },
        );
        expect(failed(appraise(ev, nonce, own.policy).boot)).toEqual([]);

        // The agent's run in the tampered boot: the same instance (its EK, its AK), firmware, user-data and nonce
        // binding — Nitride refuses it by the boot chain alone, and nothing is provisioned.
        const events = runEvents(b.console);
        console.log(`[disk-boot] virtio-scsi, tampered: agent events ${events.map((e) => e.event).join(" ")}`);
        expect(b.console, b.console.slice(-4000)).toContain("bk-hook-run-exit 1");
        const verdict = events.find((e) => e.event === "failed");
        expect(verdict?.reason, JSON.stringify(verdict)).toBe("refused");
        const ids = refusedIds(String(verdict?.error));
        console.log(`[disk-boot] virtio-scsi, tampered: Nitride refused: ${ids.join(" ")}`);
        expect(ids).toEqual(["boot.applications", "boot.pcrs"]);
        expect(events.map((e) => e.event)).not.toContain("bundle.received");
      },
    );
  },
);
