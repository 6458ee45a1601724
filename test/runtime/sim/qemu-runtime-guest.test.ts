// The vHSM runtime itself in a real QEMU guest booted from the kit image's runtime role
// (ensureRuntimeGuestImage: the runtime artifact, its config and unit in the dm-verity root; cloud-init
// and sshd masked) with the AmdSev firmware, so the launch digest covers firmware, kernel, initrd and
// the command line carrying the verity root hash — the runtime's code. Attested TLS and the derived-key
// seal both go over the virtio-serial simulated PSP; SQLite on the data disk. The host verifies it with
// verifyRuntime against the measurement it computes from the QEMU argv (equal to the manifest's) and the
// HOST_DATA it launched the instance with — no copied fingerprint — and only then initialises and uses
// it over connections pinned to the attested key. A wrong expected measurement or HOST_DATA is refused
// before anything is sent. The same launch on the same simulated chip unseals by itself after a reboot;
// the disk copied to another chip (as another instance, with other HOST_DATA: refused by the deployer's
// expectation), or booted with a changed kernel command line (another measurement, another derived key),
// stays sealed until the Shamir recovery shares unseal it; a modified block of the root filesystem
// never boots (dm-verity) and never asks the PSP for anything.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { holdGuestSlots } from "../../support/guest-slots.js";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { noCloudMetaData } from "../../../runtime/guest/cloud-init/index.js";
import { qemuGuestArgv } from "../../../components/qemu/settings.js";
import { Tee } from "../../../components/common/types.js";
import { createSnpSimulator, type SnpSimulator } from "../../../runtime/sim/snp.js";
import { measureLaunch } from "../../../runtime/sim/localvm/index.js";
import { snpDigestsFromManifest } from "../../../images/guest/index.js";
import {
  ensureRuntimeGuestImage,
  launchGuest,
  runtimeGuestNetOptions,
  prepareGuestDisks,
  bootInputsOf,
  RUNTIME_GUEST_PORT,
  type RuntimeGuestImage,
  type RunningGuest,
} from "../../../runtime/sim/qemu/index.js";
import {
  AttestedRuntimes,
  RuntimeAttestationError,
  connectPinned,
  requestOver,
  runtimeExpectation,
  verifyRuntime,
} from "../../../runtime/client/attested-tls.js";
import { expectationFor } from "../attested-runtime-support.js";
import { KIT_FIRMWARE as FIRMWARE, KIT_GUEST_CPU as CPU, VERITY_STOP, kitGuestReady } from "../../support/kit-guest.js";
import { freePort } from "../../support/net.js";
import { repoRoot } from "../../support/shared.js";

const BOOT_MS = 20 * 60_000;
const ready = kitGuestReady("the vHSM runtime in a real guest from the kit image", [
  ["a built dist/", existsSync(path.join(repoRoot, "dist/runtime/server/http/main.js"))],
]);

const MARKER = "runtime-guest-secret-7f3a";
const OTHER_MEASUREMENT = "ee".repeat(48);
/** HOST_DATA: SHA-256 of the instance identity the deployer chose at deploy time. */
const hostDataOf = (identity: string) => createHash("sha256").update(identity).digest();
const INSTANCE = hostDataOf("buckypaper-test/vhsm/instance-1");
const OTHER_INSTANCE = hostDataOf("someone-else/vhsm/instance-1");
/** The host's NoCloud seed: a runtime image must never run it (cloud-init is masked). */
const HOST_USER_DATA = "#cloud-config\nruncmd:\n  - [sh, -c, 'echo HOST-RUNCMD-RAN > /dev/console']\n";

describe.runIf(ready)("the vHSM runtime in a real QEMU guest", () => {
  holdGuestSlots(2, "qemu-runtime-guest"); // 2 guest(s) at once: see test/support/guest-slots.ts
  let work: string;
  let img: RuntimeGuestImage;
  let chipA: SnpSimulator;
  let chipB: SnpSimulator;
  let init: { keys: string[]; root_token: string };
  const running = new Set<RunningGuest>();

  interface LaunchChange {
    append?: string;
    rootImage?: string;
  }
  const argvFor = (hostPort: number, disks: ReturnType<typeof prepareGuestDisks>, change: LaunchChange = {}) =>
    qemuGuestArgv({
      name: "vhsm",
      tee: Tee.SevSnp,
      sevObject: false,
      vcpus: 1,
      memoryMb: 1024,
      cpuModel: CPU,
      firmwarePath: img.firmware,
      kernelPath: img.kernel,
      initrdPath: img.initrd,
      append: change.append ?? img.append,
      ...disks,
      userNetOptions: runtimeGuestNetOptions({ hostPort, guestPort: RUNTIME_GUEST_PORT }),
    });
  /** What the PSP will measure, computed from the argv before the VM exists (as the components do). */
  const expectedFor = (change?: LaunchChange) =>
    measureLaunch(bootInputsOf(argvFor(1, { diskPath: "x", seedIsoPath: "y", dataDiskPath: "z" }, change))).measurement;

  /** Starts the runtime guest whose state lives in `dir` (its data disk is kept across boots), launched
   *  with `hostData` as HOST_DATA (the deployer's choice for this instance). */
  async function start(name: string, dir: string, sim: SnpSimulator, hostData: Buffer, change?: LaunchChange) {
    const hostPort = await freePort();
    const disks = prepareGuestDisks({
      dir,
      baseImage: change?.rootImage ?? img.rootImage,
      userData: HOST_USER_DATA,
      metaData: noCloudMetaData(`${name}-1`, "vhsm"),
      dataDiskGb: 1,
    });
    const guest = await launchGuest({
      name,
      argv: argvFor(hostPort, disks, change),
      sim,
      stateDir: dir,
      snp: { hostData },
    });
    running.add(guest);
    return { guest, url: `https://127.0.0.1:${hostPort}`, dataDisk: disks.dataDiskPath! };
  }
  async function boot(name: string, dir: string, sim: SnpSimulator, hostData = INSTANCE, change?: LaunchChange) {
    const g = await start(name, dir, sim, hostData, change);
    const line = await g.guest.waitForConsole(/bk-runtime: listening on/, BOOT_MS);
    return { ...g, line };
  }
  async function stop(g: RunningGuest) {
    await g.stop();
    running.delete(g);
  }
  /** One request on a connection pinned to the attested key (nothing is sent on any other). */
  async function call(url: string, pin: string, method: string, p: string, body?: unknown, token?: string) {
    const socket = await connectPinned(url, pin, 30_000);
    const res = await requestOver(socket, url, method, `/v1/${p}`, {
      headers: {
        accept: "application/json",
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
        ...(token ? { "x-vault-token": token } : {}),
      },
      ...(body !== undefined ? { body: Buffer.from(JSON.stringify(body)) } : {}),
      timeoutMs: 120_000,
    });
    return { status: res.status, body: res.text ? (JSON.parse(res.text) as Record<string, unknown>) : {} };
  }
  /** The deployer's expectation: this measurement AND this instance's HOST_DATA. */
  const expectation = (sim: SnpSimulator, m: string, hostData = INSTANCE) =>
    runtimeExpectation({ ...expectationFor(sim, [m]), snpHostData: hostData.toString("hex") });
  async function verified(url: string, sim: SnpSimulator, m: string, hostData = INSTANCE) {
    const v = await verifyRuntime({ url, expected: expectation(sim, m, hostData), timeoutMs: 120_000 });
    expect(v.reason).toBeUndefined();
    expect(v.ok).toBe(true);
    expect(v.measurement).toBe(m);
    return v.spkiSha256!;
  }

  beforeAll(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), "bk-qemu-runtime-"));
    const progress = (l: string) => console.log(l);
    // Cached per runtime build; a new one costs squashfs + verity over the kit image's installed tree.
    img = await ensureRuntimeGuestImage({ packageRoot: repoRoot, progress, firmware: FIRMWARE });
    [chipA, chipB] = await Promise.all([
      createSnpSimulator({ product: "Milan", rsaBits: 2048 }),
      createSnpSimulator({ product: "Milan", rsaBits: 2048 }),
    ]);
  }, 3_600_000);
  afterAll(async () => {
    for (const g of running) await g.stop().catch(() => {});
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it(
    "first boot: verified against the argv's measurement (a wrong one is refused first), then initialised and used",
    async () => {
      const expected = expectedFor();
      // What the deployer computes from the manifest alone equals what the PSP measures from QEMU's files;
      // the firmware measures kernel, initrd and the command line (with the verity root hash).
      expect(img.manifest.role).toBe("runtime");
      expect(img.manifest.firmware?.measuredDirectBoot).toBe(true);
      expect(img.append).toContain(`bk.roothash=${img.manifest.verity.rootHash}`);
      const fromManifest = snpDigestsFromManifest(img.manifestPath, { vcpus: [1], vcpu: CPU, vmm: "qemu" });
      expect(fromManifest.get(1)!.toString("hex")).toBe(expected);
      const { guest, url, line, dataDisk } = await boot("vhsm", path.join(work, "vhsm"), chipA);
      const t0 = Date.now();
      expect(guest.launch.kernelMeasured).toBe(true);
      expect(guest.launch.measurement).toBe(expected);
      expect(guest.psp.hostData).toBe(INSTANCE.toString("hex"));
      expect(guest.console()).toContain(
        `buckypaper-init: root /dev/vda verified (dm-verity ${img.manifest.verity.rootHash})`,
      );
      expect(line).toMatch(/sealed=true initialized=false/);
      // A wrong expected measurement: refused, and nothing goes to the runtime but the evidence request.
      const wrong = await verifyRuntime({ url, expected: expectation(chipA, OTHER_MEASUREMENT), timeoutMs: 120_000 });
      expect(wrong.ok).toBe(false);
      expect(wrong.reason).toMatch(/^policy\.measurement:/);
      await expect(new AttestedRuntimes(120_000).connect(url, expectation(chipA, OTHER_MEASUREMENT))).rejects.toThrow(
        RuntimeAttestationError,
      );
      // The right image but another instance's HOST_DATA: refused as well.
      const otherInstance = await verifyRuntime({
        url,
        expected: expectation(chipA, expected, OTHER_INSTANCE),
        timeoutMs: 120_000,
      });
      expect(otherInstance.ok).toBe(false);
      expect(otherInstance.reason).toMatch(/^policy\.host-data:/);
      const pin = await verified(url, chipA, expected);
      expect((await call(url, pin, "GET", "sys/init")).body.initialized).toBe(false);

      const r = await call(url, pin, "PUT", "sys/init", { secret_shares: 3, secret_threshold: 2 });
      expect(r.status).toBe(200);
      init = r.body as unknown as typeof init;
      expect(init.keys).toHaveLength(3);
      for (const key of init.keys.slice(0, 2)) await call(url, pin, "PUT", "sys/unseal", { key });
      expect((await call(url, pin, "GET", "sys/seal-status")).body.sealed).toBe(false);
      const tok = init.root_token;
      expect(
        (await call(url, pin, "POST", "sys/mounts/secret", { type: "kv", options: { version: "2" } }, tok)).status,
      ).toBeLessThan(300);
      expect((await call(url, pin, "POST", "secret/data/app", { data: { v: MARKER } }, tok)).status).toBe(200);
      const read = await call(url, pin, "GET", "secret/data/app", undefined, tok);
      expect(JSON.stringify(read.body)).toContain(MARKER);
      console.log(`runtime guest: verified, initialised and used in ${Math.round((Date.now() - t0) / 1000)} s`);
      // The host's NoCloud seed never ran: cloud-init is masked in the runtime image.
      expect(guest.console()).not.toMatch(/^HOST-RUNCMD-RAN/m);
      // Let SQLite's commit reach the disk image, then power off.
      await new Promise((res) => setTimeout(res, 3000));
      await stop(guest);
      const raw = readFileSync(dataDisk);
      expect(raw.includes(Buffer.from(MARKER))).toBe(false);
      expect(raw.includes(Buffer.from(init.root_token))).toBe(false);
    },
    BOOT_MS + 10 * 60_000,
  );

  it(
    "a reboot of the same launch on the same chip unseals by itself",
    async () => {
      expect(init).toBeDefined();
      const { guest, url, line } = await boot("vhsm", path.join(work, "vhsm"), chipA);
      expect(line).toMatch(/sealed=false initialized=true/);
      const pin = await verified(url, chipA, expectedFor());
      const read = await call(url, pin, "GET", "secret/data/app", undefined, init.root_token);
      expect(read.status).toBe(200);
      expect(JSON.stringify(read.body)).toContain(MARKER);
      await stop(guest);
    },
    BOOT_MS + 5 * 60_000,
  );

  it(
    "the disk copied to another chip as another instance, or booted with a changed kernel command line, stays sealed (the recovery shares unseal it); a modified root filesystem never boots",
    async () => {
      expect(init).toBeDefined();
      const src = path.join(work, "vhsm", "data.qcow2");
      // The kernel command line is measured with the AmdSev firmware: another line is another
      // MEASUREMENT, so another derived key — whatever the line says.
      const changed: LaunchChange = { append: `${img.append} bk.tamper=1` };
      expect(expectedFor(changed)).not.toBe(expectedFor());
      // One byte of the last data block (squashfs's tables, read when the root is mounted): the digest
      // does not change (the rootfs is bound by the root hash on the command line); dm-verity stops it.
      const m = img.manifest.verity;
      const badRoot = path.join(work, "rootfs-modified.img");
      const bytes = readFileSync(img.rootImage);
      bytes[(m.dataBlocks - 1) * m.dataBlockSize + 100] ^= 0x01;
      writeFileSync(badRoot, bytes);
      const cases = [
        { name: "other-chip", sim: chipB, hostData: OTHER_INSTANCE, change: undefined, m: expectedFor() },
        { name: "changed-cmdline", sim: chipA, hostData: INSTANCE, change: changed, m: expectedFor(changed) },
      ];
      const copyDisk = (name: string) => {
        const dir = path.join(work, name);
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        copyFileSync(src, path.join(dir, "data.qcow2"));
        return dir;
      };
      // Three guests at once; the modified root stops in the initramfs.
      const modified = await start("rootfs-modified", copyDisk("rootfs-modified"), chipA, INSTANCE, {
        rootImage: badRoot,
      });
      await Promise.all([
        (async () => {
          const outcome = await modified.guest.waitForConsole(VERITY_STOP, BOOT_MS);
          expect(outcome).toMatch(VERITY_STOP);
          expect(modified.guest.launch.measurement).toBe(expectedFor());
          await stop(modified.guest);
          expect(modified.guest.console()).not.toMatch(/bk-runtime/);
          expect(modified.guest.psp.requests).toHaveLength(0);
        })(),
        ...cases.map(async (c) => {
          const { guest, url, line } = await boot(c.name, copyDisk(c.name), c.sim, c.hostData, c.change);
          expect(line, c.name).toMatch(/sealed=true initialized=true/);
          // The deployer's expectation (its measurement, its instance) refuses both: the copy on another
          // chip is another instance (HOST_DATA), the changed launch another measurement.
          const v = await verifyRuntime({ url, expected: expectation(c.sim, expectedFor()), timeoutMs: 120_000 });
          expect(v.ok, c.name).toBe(false);
          expect(v.reason, c.name).toMatch(c.change ? /^policy\.measurement:/ : /^policy\.host-data:/);
          // The PSP answered the derived-key request (a kernel-measured launch): the key just differs.
          expect(
            guest.psp.requests.some((r) => r.kind === "key" && r.ok),
            c.name,
          ).toBe(true);
          // Genuine evidence of what it is, so the operator can decide to recover it.
          const pin = await verified(url, c.sim, c.m, c.hostData);
          expect((await call(url, pin, "GET", "sys/seal-status")).body.sealed, c.name).toBe(true);
          expect((await call(url, pin, "GET", "secret/data/app", undefined, init.root_token)).status, c.name).toBe(503);
          for (const key of [init.keys[2], init.keys[0]]) await call(url, pin, "PUT", "sys/unseal", { key });
          expect((await call(url, pin, "GET", "sys/seal-status")).body.sealed, c.name).toBe(false);
          const read = await call(url, pin, "GET", "secret/data/app", undefined, init.root_token);
          expect(JSON.stringify(read.body), c.name).toContain(MARKER);
          await stop(guest);
        }),
      ]);
    },
    BOOT_MS + 10 * 60_000,
  );
});
