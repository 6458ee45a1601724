// The vHSM runtime's own cloud disk (`image build --role runtime --cloud ec2`, here with `--runtime-psp virtio-psp`:
// the simulated PSP stands in for /dev/sev-guest) booted the way EC2 boots it — UEFI firmware (Debian's OVMF.fd)
// loading the disk's UKI, the disk on NVMe, a real software TPM (swtpm) as the instance's NitroTPM, a second blank
// NVMe volume as the EBS data volume — with the production UKI (no test hook: what runs is the image's own systemd
// and runtime unit). The PSP reports the firmware-only launch digest (the same for every VM of that size, as on
// EC2); what binds the runtime's OS is the vTPM half of its attested TLS.
// The deployer's side, with nothing copied from the guest: the boot policy predicted from the disk
// (predictFromDisk, as a component would at deploy time), the firmware-only measurement computed from the firmware,
// and the instance vTPM's attestation key pinned (provisioned in the instance's TPM before its first boot; the EC2
// disk carries no nitro-tpm-attest, so the AK pin is what authenticates the quoting key — docs/trust-bootstrap.md).
// verifyRuntime accepts it; a policy predicted from a copy of the disk whose UKI command line differs by one byte,
// and another TPM's AK pin, are refused by name. Then sys/init and the operators' shares unseal it over connections
// pinned to the attested key. A reboot of the same instance comes back sealed — no derived-key auto-unseal on the
// clouds (images/guest/runtime-role.ts runtimeVariant) — on the same data volume (found by its filesystem label,
// not a device name), is verified again, and the shares unseal it to the data written before. An ambiguous data
// volume — two blank disks, or two filesystems with the data label — stops the runtime before it runs, naming them.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeSync,
} from "node:fs";
import { truncateSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { holdGuestSlots } from "../../support/guest-slots.js";
import { buildImage, ukiFromDiskFile, type ImageManifest } from "../../../images/guest/index.js";
import type { DiskRecord } from "../../../images/guest/manifest.js";
import { predictFromDisk } from "../../../images/index.js";
import type { MeasuredBootPolicy } from "../../../runtime/attestation/tpm/index.js";
import type { VtpmPolicy } from "../../../runtime/attestation/tpm/policy.js";
import { akSha256 } from "../../../runtime/attestation/binding.js";
import { Vtpm } from "../../../runtime/guest/evidence/vtpm.js";
import { createSnpSimulator, type SnpSimulator } from "../../../runtime/sim/snp.js";
import { measureLaunch } from "../../../runtime/sim/localvm/psp.js";
import {
  RUNTIME_GUEST_PORT,
  runtimeGuestNetOptions,
  startSimulatedPsp,
  type SimulatedPsp,
} from "../../../runtime/sim/qemu/index.js";
import {
  connectPinned,
  requestOver,
  runtimeExpectation,
  verifyRuntime,
  type RuntimeExpectation,
} from "../../../runtime/client/attested-tls.js";
import { expectationFor } from "../../runtime/attested-runtime-support.js";
import { DEBIAN_OVMF, cloudDiskArgv, startInstanceTpm, withInstanceTpm } from "../../support/cloud-disk-guest.js";
import { KIT_GUEST_CPU } from "../../support/kit-guest.js";
import { freePort } from "../../support/net.js";
import { haveCommand, requireTool } from "../../support/prereq.js";
import { SwTpm } from "../../support/swtpm.js";
import { repoRoot } from "../../support/shared.js";

const BOOT_MS = 20 * 60_000;
const ready =
  requireTool("root (the image build runs mmdebstrap --mode=root)", process.getuid?.() === 0) &&
  requireTool(
    "a built dist/ (the runtime artifact)",
    existsSync(path.join(repoRoot, "dist/runtime/server/http/main.js")),
  ) &&
  requireTool("qemu-system-x86_64", haveCommand("qemu-system-x86_64", ["--version"])) &&
  requireTool("Debian's OVMF.fd (ovmf)", existsSync(DEBIAN_OVMF)) &&
  requireTool("swtpm", haveCommand("swtpm", ["--version"])) &&
  requireTool("tpm2-tools (the instance's AK, a second TPM's AK)", haveCommand("tpm2_createak", ["--version"])) &&
  ["objcopy", "mcopy", "unsquashfs"].every((t) =>
    requireTool(t, haveCommand(t, t === "unsquashfs" ? ["-h"] : ["--version"])),
  );

const scratch = mkdtempSync(path.join(tmpdir(), "bk-rt-diskboot-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const MARKER = "runtime-cloud-disk-secret-41c9";
const failed = (v: { checks: { id: string; ok: boolean }[] }) => v.checks.filter((c) => !c.ok).map((c) => c.id);

interface Guest {
  url: string;
  console(): string;
  waitFor(re: RegExp, ms: number): Promise<string>;
  stop(): Promise<void>;
}

describe.runIf(ready)(
  "the runtime's EC2 cloud disk: booted under UEFI with a vTPM, verified over attested TLS by the boot policy predicted from its disk, unsealed by operator shares only",
  () => {
    holdGuestSlots(1, "runtime-cloud-disk-boot"); // 1 guest(s) at once: see test/support/guest-slots.ts
    const cacheDir = path.join(homedir(), ".cache/buckypaper");
    let m: ImageManifest;
    let disk: DiskRecord;
    let diskPath: string;
    let manifestPath: string;
    let policy: MeasuredBootPolicy;
    let sim: SnpSimulator;
    let measurement: string;
    /** The instance: its vTPM state and its EBS data volume, kept across its boots. */
    let tpmDir: string;
    let dataDisk: string;
    let akPin: string;
    let otherAkPin: string;
    let init: { keys: string[]; root_token: string };
    const running = new Set<Guest>();

    beforeAll(async () => {
      const img = await buildImage({
        repoRoot,
        lockPath: path.join(repoRoot, "images/guest/packages.lock"),
        cacheDir,
        role: "runtime",
        cloud: "ec2",
        runtimePsp: "virtio-psp",
        progress: (l) => console.log(l),
      });
      m = img.manifest;
      manifestPath = img.manifestPath;
      disk = m.disk!;
      diskPath = path.join(img.dir, disk.path);
      // The deployer's prediction, from the manifest and the disk alone — as for a workload cloud disk.
      policy = predictFromDisk(manifestPath, m, "sha256").policy;

      sim = await createSnpSimulator({ product: "Genoa", rsaBits: 2048 });
      // What the PSP reports for this launch: firmware + vCPUs only (no kernel-hashes table in Debian's OVMF).
      const launch = measureLaunch({ firmware: DEBIAN_OVMF, vcpus: 1, vcpuType: KIT_GUEST_CPU });
      expect(launch.kernelMeasured).toBe(false);
      measurement = launch.measurement;

      // The instance's vTPM with its attestation key provisioned before the first boot (the runtime finds it
      // persisted and quotes with it): the pin the deployer registers.
      tpmDir = mkdtempSync(path.join(scratch, "instance-tpm-"));
      akPin = await withInstanceTpm(tpmDir, async (tcti) =>
        akSha256(await new Vtpm({ tcti }).attestationKey()).toString("hex"),
      );
      const other = await SwTpm.start();
      try {
        otherAkPin = akSha256(await new Vtpm({ tcti: other.tcti }).attestationKey()).toString("hex");
      } finally {
        await other.stop();
      }
      // The EBS data volume: blank.
      dataDisk = path.join(scratch, "data.raw");
      writeFileSync(dataDisk, "");
      truncateSync(dataDisk, 256 * 2 ** 20);
    }, 3_600_000);
    afterAll(async () => {
      for (const g of running) await g.stop().catch(() => {});
    });

    /** One boot of the instance (same vTPM, same data volume), the simulated PSP reporting the firmware-only digest. */
    async function boot(dataDisks = [dataDisk]): Promise<Guest> {
      const psp: SimulatedPsp = await startSimulatedPsp({
        sim,
        measurement,
        socketPath: path.join(mkdtempSync(path.join(scratch, "psp-")), "psp.sock"),
        kernelMeasured: false,
      });
      const tpm = await startInstanceTpm(tpmDir, scratch);
      const hostPort = await freePort();
      const argv = cloudDiskArgv({
        disk: diskPath,
        shape: "nvme",
        tpmSock: tpm.sock,
        // Nothing out; one forward of a host loopback port in to the runtime's listener (carries no trust).
        netOptions: runtimeGuestNetOptions({ hostPort, guestPort: RUNTIME_GUEST_PORT }),
        pspSocket: psp.socketPath,
        dataDisks,
      });
      const q: ChildProcess = spawn("qemu-system-x86_64", argv, { stdio: ["ignore", "pipe", "pipe"] });
      let text = "";
      q.stdout!.on("data", (c: Buffer) => (text += c.toString("latin1")));
      q.stderr!.on("data", (c: Buffer) => (text += c.toString("latin1")));
      const exited = new Promise<void>((r) => q.once("close", () => r()));
      const g: Guest = {
        url: `https://127.0.0.1:${hostPort}`,
        console: () => text,
        async waitFor(re, ms) {
          const until = Date.now() + ms;
          for (;;) {
            const hit = re.exec(text);
            if (hit) return hit[0];
            if (q.exitCode !== null || q.signalCode !== null || /powering off/.test(text))
              throw new Error(`the guest stopped before ${re}:\n${text.slice(-4000)}`);
            if (Date.now() > until) throw new Error(`no ${re} within ${ms} ms:\n${text.slice(-4000)}`);
            await new Promise((r) => setTimeout(r, 500));
          }
        },
        async stop() {
          q.kill("SIGKILL");
          await exited;
          tpm.child.kill();
          await psp.close();
          running.delete(g);
        },
      };
      running.add(g);
      return g;
    }

    const expecting = (vtpm: VtpmPolicy): RuntimeExpectation => {
      const e = runtimeExpectation(expectationFor(sim, [measurement]));
      return { ...e, policy: { ...e.policy, vtpm } };
    };
    async function verified(url: string): Promise<string> {
      const v = await verifyRuntime({
        url,
        expected: expecting({ measuredBoot: policy, akPins: [akPin] }),
        timeoutMs: 180_000,
      });
      console.log(`[runtime-disk] verify: ${v.checks.map((c) => `${c.id}=${c.ok}`).join(" ")}`);
      expect(v.reason).toBeUndefined();
      expect(v.ok).toBe(true);
      expect(v.measurement).toBe(measurement);
      for (const id of [
        "runtime.vtpm",
        "vtpm.ak-binding",
        "tpm.event-log-replay",
        "vtpm.ak-authenticated",
        "boot.applications",
        "boot.kernel-cmdline",
        "boot.pcrs",
        "binding.tls-key",
      ])
        expect(v.checks.find((c) => c.id === id)?.ok, id).toBe(true);
      return v.spkiSha256!;
    }
    /** One request on a connection pinned to the attested key (nothing is sent on any other). */
    async function call(url: string, pin: string, method: string, p: string, body?: unknown, token?: string) {
      const socket = await connectPinned(url, pin, 60_000);
      const res = await requestOver(socket, url, method, `/v1/${p}`, {
        headers: {
          accept: "application/json",
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
          ...(token ? { "x-vault-token": token } : {}),
        },
        ...(body !== undefined ? { body: Buffer.from(JSON.stringify(body)) } : {}),
        timeoutMs: 180_000,
      });
      return { status: res.status, body: res.text ? (JSON.parse(res.text) as Record<string, unknown>) : {} };
    }

    it(
      "first boot: the data volume formatted by itself; verified with the predicted policy and the AK pin (a policy from a one-byte different UKI and another TPM's AK refused by name); initialised and unsealed with operator shares",
      async () => {
        expect(m.role).toBe("runtime");
        expect(m.runtime).toMatchObject({
          psp: "virtio-psp",
          cloud: "ec2",
          unseal: "shares",
          vtpm: { device: "/dev/tpmrm0", ak: "runtime-ak" },
        });
        const g = await boot();
        const line = await g.waitFor(/bk-runtime: listening on [^\n]*/, BOOT_MS);
        const t0 = Date.now();
        console.log(`[runtime-disk] ${line.trim()}`);
        expect(line).toMatch(/sealed=true initialized=false/);
        expect(g.console()).toMatch(
          new RegExp(`buckypaper-init: root /dev/nvme\\dn1p2 verified \\(dm-verity ${m.verity.rootHash}`),
        );
        expect(g.console()).toMatch(
          /bk-runtime-data: first boot: formatting \/dev\/nvme\dn1 \(the one blank non-boot disk\) as bkdata/,
        );

        const pin = await verified(g.url);

        // The same runtime, expected with the policy predicted from a copy of the disk whose UKI command line differs
        // by one byte (…4294967295 → …4294967294): another build; refused by the boot-chain checks.
        const copy = path.join(scratch, "other-build.raw");
        copyFileSync(diskPath, copy);
        const esp = disk.partitions[0];
        const fd = openSync(copy, "r+");
        const region = Buffer.alloc((esp.lastLba - esp.firstLba + 1) * 512);
        readSync(fd, region, 0, region.length, esp.firstLba * 512);
        const at = region.indexOf(Buffer.from("nvme_core.io_timeout=4294967295"));
        expect(at).toBeGreaterThan(0);
        writeSync(fd, Buffer.from("4"), 0, 1, esp.firstLba * 512 + at + "nvme_core.io_timeout=429496729".length);
        closeSync(fd);
        const otherUki = ukiFromDiskFile(copy);
        const otherPolicy = predictFromDisk(
          manifestPath,
          {
            ...m,
            disk: { ...disk, uki: { ...disk.uki, sha256: createHash("sha256").update(otherUki).digest("hex") } },
          },
          "sha256",
          { diskPath: copy },
        ).policy;
        rmSync(copy, { force: true });
        expect(otherPolicy).not.toEqual(policy);
        const other = await verifyRuntime({
          url: g.url,
          expected: expecting({ measuredBoot: otherPolicy, akPins: [akPin] }),
          timeoutMs: 180_000,
        });
        console.log(`[runtime-disk] policy of another build: ${other.reason}; failed ${failed(other).join(" ")}`);
        expect(other.ok).toBe(false);
        expect(other.reason).toMatch(/^boot\./);
        expect(failed(other)).toEqual(["boot.applications", "boot.pcrs"]);

        // Another TPM's AK pinned (the runtime's genuine quote, but not by a key the deployer registered).
        const wrongAk = await verifyRuntime({
          url: g.url,
          expected: expecting({ measuredBoot: policy, akPins: [otherAkPin] }),
          timeoutMs: 180_000,
        });
        console.log(`[runtime-disk] another AK pinned: ${wrongAk.reason}`);
        expect(wrongAk.ok).toBe(false);
        expect(failed(wrongAk)).toEqual(["vtpm.ak-authenticated"]);

        // Initialised and unsealed by the operators' shares over the pinned connection.
        expect((await call(g.url, pin, "GET", "sys/init")).body.initialized).toBe(false);
        const r = await call(g.url, pin, "PUT", "sys/init", { secret_shares: 3, secret_threshold: 2 });
        expect(r.status).toBe(200);
        init = r.body as unknown as typeof init;
        expect(init.keys).toHaveLength(3);
        expect((await call(g.url, pin, "GET", "sys/seal-status")).body.sealed).toBe(true);
        for (const key of init.keys.slice(0, 2)) await call(g.url, pin, "PUT", "sys/unseal", { key });
        expect((await call(g.url, pin, "GET", "sys/seal-status")).body.sealed).toBe(false);
        const tok = init.root_token;
        expect(
          (await call(g.url, pin, "POST", "sys/mounts/secret", { type: "kv", options: { version: "2" } }, tok)).status,
        ).toBeLessThan(300);
        expect((await call(g.url, pin, "POST", "secret/data/app", { data: { v: MARKER } }, tok)).status).toBe(200);
        console.log(
          `[runtime-disk] verified, initialised, unsealed and used in ${Math.round((Date.now() - t0) / 1000)} s`,
        );
        await new Promise((res) => setTimeout(res, 3000));
        await g.stop();
        // The data volume holds the barrier's ciphertext only.
        const raw = readFileSync(dataDisk);
        expect(raw.includes(Buffer.from(MARKER))).toBe(false);
        expect(raw.includes(Buffer.from(init.root_token))).toBe(false);
      },
      BOOT_MS + 15 * 60_000,
    );

    it(
      "a reboot of the instance comes back sealed (no derived-key unseal on the clouds), on its data volume found by label; verified again, the shares unseal it",
      async () => {
        expect(init).toBeDefined();
        const g = await boot();
        const line = await g.waitFor(/bk-runtime: listening on [^\n]*/, BOOT_MS);
        console.log(`[runtime-disk] reboot: ${line.trim()}`);
        expect(line).toMatch(/sealed=true initialized=true/);
        expect(g.console()).toMatch(/bk-runtime-data: \/dev\/nvme\dn1 mounted at \/var\/lib\/buckypaper/);
        expect(g.console()).not.toMatch(/bk-runtime-data: first boot/);
        const pin = await verified(g.url);
        // Not a share short of the threshold…
        await call(g.url, pin, "PUT", "sys/unseal", { key: init.keys[2] });
        expect((await call(g.url, pin, "GET", "sys/seal-status")).body.sealed).toBe(true);
        // …but two of them.
        await call(g.url, pin, "PUT", "sys/unseal", { key: init.keys[0] });
        expect((await call(g.url, pin, "GET", "sys/seal-status")).body.sealed).toBe(false);
        const read = await call(g.url, pin, "GET", "secret/data/app", undefined, init.root_token);
        expect(read.status).toBe(200);
        expect(JSON.stringify(read.body)).toContain(MARKER);
        await g.stop();
      },
      BOOT_MS + 10 * 60_000,
    );

    /** A sparse file as a blank volume, or one formatted on the host with the runtime's data label. */
    function volume(name: string, label?: string): string {
      const f = path.join(scratch, `${name}.raw`);
      writeFileSync(f, "");
      truncateSync(f, 64 * 2 ** 20);
      if (label) {
        const r = spawnSync("mkfs.ext4", ["-q", "-F", "-L", label, f], { encoding: "utf8" });
        if (r.status !== 0) throw new Error(`mkfs.ext4: ${r.stderr}`);
      }
      return f;
    }

    it(
      "an ambiguous data volume is not guessed at: two blank disks, or two filesystems labelled bkdata, stop the runtime naming them",
      async () => {
        const cases: [string, string[], RegExp][] = [
          [
            "two blank volumes",
            [volume("blank-a"), volume("blank-b")],
            /bk-runtime-data: more than one blank disk \( ?\/dev\/nvme\dn1 \/dev\/nvme\dn1 ?\): attach exactly one data volume/,
          ],
          [
            "two volumes labelled bkdata",
            [volume("label-a", "bkdata"), volume("label-b", "bkdata")],
            /bk-runtime-data: more than one filesystem labelled bkdata \( ?\/dev\/nvme\dn1 \/dev\/nvme\dn1 ?\)/,
          ],
        ];
        for (const [what, disks, refusal] of cases) {
          const g = await boot(disks);
          try {
            const line = await g.waitFor(refusal, BOOT_MS);
            console.log(`[runtime-disk] ${what}: ${line}`);
            // The unit's start failed before the runtime ran: it never listened, nothing was formatted.
            expect(g.console()).not.toMatch(/bk-runtime: listening on/);
            expect(g.console()).not.toMatch(/bk-runtime-data: first boot/);
          } finally {
            await g.stop();
          }
        }
      },
      2 * BOOT_MS,
    );
  },
);
