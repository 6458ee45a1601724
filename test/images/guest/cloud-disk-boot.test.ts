// Boots the kit's cloud disk the way EC2 and GCE do — UEFI firmware (Debian's OVMF, pflash code + vars, no
// direct kernel boot) loading \EFI\BOOT\BOOTX64.EFI from the disk's ESP — with a real software TPM (swtpm) as the
// vTPM: the NVMe shape of EC2 Nitro and the virtio-scsi shape of GCE. The disk is the EC2 variant of the image
// (`image build --cloud ec2`). The guest must reach its dm-verity root by GPT label. Then the measured-boot proof,
// collected by the image itself: a test hook in the initramfs (an extra newc archive inside the UKI, so this disk's
// UKI is not the production one — its prediction is taken from it the same way) carries no tools of its own; it
// chroots into the verified root and runs the agent's `enclaivelet vtpm-evidence --nonce HEX` — the same
// Vtpm.collect + wireVtpm that `enclaivelet run` attaches to its SNP/TDX evidence, with the image's tpm2-tools
// against /dev/tpmrm0 (persisted EK + AK, quote over the boot PCRs, the firmware's TCG event log) — and prints its
// JSON. (`run` itself needs an SNP/TDX report, which TCG has not: the subcommand is the vTPM half of it.) The host
// decodes it with the runtime's wire decoder and the attestation library verifies the quote, replays the log to the
// quoted PCRs and checks the measured-boot policy predicted from the disk's UKI (PCR 4 Authenticode digest, PCR 11
// of systemd-stub, the command line with the verity root hash). A copy of the disk whose UKI command line differs
// by one byte boots too (the firmware has no Secure Boot keys here) and its evidence fails that policy.
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
import { haveCommand, requireTool } from "../../support/prereq.js";
import { repoRoot } from "../../support/shared.js";

const OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const PCRS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 14];
const ready =
  requireTool("root (the image build runs mmdebstrap --mode=root)", process.getuid?.() === 0) &&
  requireTool("qemu-system-x86_64", haveCommand("qemu-system-x86_64", ["--version"])) &&
  requireTool("Debian's OVMF 4M pflash (ovmf)", existsSync(OVMF_CODE) && existsSync(OVMF_VARS)) &&
  requireTool("swtpm", haveCommand("swtpm", ["--version"])) &&
  ["objcopy", "mcopy", "unsquashfs"].every((t) =>
    requireTool(t, haveCommand(t, t === "unsquashfs" ? ["-h"] : ["--version"])),
  );

const scratch = mkdtempSync(path.join(tmpdir(), "bk-diskboot-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/**
 * The hook: after the init verified the root and mounted it at /newroot, run the image's own agent there against the
 * vTPM with a nonce read from the console, and print its JSON in base64 (kernel lines may interleave on the console).
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
}

/** Boots `disk` under OVMF + swtpm until systemd starts (or `timeoutMs`); answers the hook's nonce prompt. */
async function bootDisk(
  disk: string,
  shape: "nvme" | "virtio-scsi",
  nonce: Buffer | undefined,
  until: RegExp,
  timeoutMs: number,
): Promise<Boot> {
  const dir = mkdtempSync(path.join(scratch, "vm-"));
  copyFileSync(OVMF_VARS, path.join(dir, "vars.fd"));
  mkdirSync(path.join(dir, "tpm"));
  const sock = path.join(dir, "tpm", "sock");
  const swtpm = spawn(
    "swtpm",
    [
      "socket",
      "--tpm2",
      "--tpmstate",
      `dir=${path.join(dir, "tpm")}`,
      "--ctrl",
      `type=unixio,path=${sock}`,
      "--terminate",
    ],
    {
      stdio: "ignore",
    },
  );
  for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
  const drive =
    shape === "nvme"
      ? ["-drive", `file=${disk},if=none,id=d0,format=raw,readonly=on`, "-device", "nvme,drive=d0,serial=bkdisk"]
      : [
          "-device",
          "virtio-scsi-pci,id=scsi0",
          "-drive",
          `file=${disk},if=none,id=d0,format=raw,readonly=on`,
          "-device",
          "scsi-hd,drive=d0,bus=scsi0.0",
        ];
  const argv = [
    "-machine",
    "q35,accel=tcg",
    "-m",
    "1024",
    "-smp",
    "1",
    "-nographic",
    "-no-reboot",
    "-drive",
    `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`,
    "-drive",
    `if=pflash,format=raw,unit=1,file=${path.join(dir, "vars.fd")}`,
    "-chardev",
    `socket,id=chrtpm,path=${sock}`,
    "-tpmdev",
    "emulator,id=tpm0,chardev=chrtpm",
    "-device",
    "tpm-crb,tpmdev=tpm0",
    ...drive,
    "-nic",
    "none",
  ];
  const q: ChildProcess = spawn("qemu-system-x86_64", argv, { stdio: ["pipe", "pipe", "pipe"] });
  let text = "";
  let asked = false;
  const done = new Promise<void>((resolve) => {
    const timer = setTimeout(() => q.kill("SIGKILL"), timeoutMs);
    const onData = (c: Buffer) => {
      text += c.toString("latin1");
      if (!asked && nonce && text.includes("bk-hook: nonce?")) {
        asked = true;
        q.stdin!.write(nonce.toString("hex") + "\n");
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
  return { console: text, ...(Object.keys(evidence).length ? { evidence } : {}) };
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

/** systemd reached sysinit.target: the boot-phase units (systemd-pcrphase*) would have started by then. */
const SYSINIT = /Reached target .*System Initialization/;

const failed = (checks: { id: string; ok: boolean }[]) => checks.filter((c) => !c.ok).map((c) => c.id);

describe.runIf(ready)(
  "the cloud disk boots under UEFI with a vTPM, and its measured boot is what was predicted",
  () => {
    holdGuestSlots(1, "cloud-disk-boot"); // 1 guest(s) at once: see test/support/guest-slots.ts
    const cacheDir = path.join(homedir(), ".cache/buckypaper");
    let m: ImageManifest;
    let dir: string;
    let disk: DiskRecord;
    let policy: MeasuredBootPolicy;
    let manifestPath: string;

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
    }, 3_600_000);

    it(
      "EC2 shape (NVMe): reaches the verified root by label; quote + event log satisfy the policy predicted from the disk's UKI",
      { timeout: 900_000 },
      async () => {
        // The manifest names the locked tools the agent's evidence runs (images/guest/lock.ts VTPM_PACKAGES).
        const lock = parseLock(readFileSync(path.join(repoRoot, "images/guest/packages.lock"), "utf8"));
        expect(m.enclaivelet?.vtpmTools).toEqual(Object.fromEntries(VTPM_PACKAGES.map((p) => [p, lock.debs.get(p)])));
        expect(m.enclaivelet?.userDataSource).toBe("ec2");
        const nonce = randomBytes(32);
        const b = await bootDisk(path.join(dir, disk.path), "nvme", nonce, SYSINIT, 600_000);
        expect(b.console).toMatch(/nvme0n1: p1 p2 p3/);
        expect(b.console).toContain(
          `buckypaper-init: root /dev/nvme0n1p2 verified (dm-verity ${m.verity.rootHash}, hash tree /dev/nvme0n1p3)`,
        );
        expect(b.console).toMatch(SYSINIT);
        // systemd 252's PCR 11 boot-phase barriers would extend PCR 11 after the quote the agent takes in the real
        // system (outside the firmware log): the UKI's command line masks them, so they never start.
        expect(b.console).toContain("systemd.mask=systemd-pcrphase.service");
        const units = b.console.split("\n").filter((l) => !l.includes("systemd.mask="));
        expect(units.filter((l) => /pcrphase|PCR Barrier/i.test(l))).toEqual([]);
        // The agent in the verified root quoted with the image's tpm2-tools (the hook carries none).
        expect(b.console, b.console.slice(-3000)).toContain("bk-hook-exit 0");
        expect(b.evidence, b.console.slice(-3000)).toBeDefined();
        const r = appraise(tpmEvidence(b.evidence!), nonce, policy);
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
      },
    );

    it(
      "GCE shape (virtio-scsi), UKI command line changed by one byte on the disk: boots, and fails the policy",
      { timeout: 900_000 },
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
        const b = await bootDisk(copy, "virtio-scsi", nonce, /systemd\[1\]: systemd \d+/, 600_000);
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
      },
    );
  },
);
