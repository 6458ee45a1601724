// Boots the kit's cloud disk the way EC2 and GCE do — UEFI firmware (Debian's OVMF, pflash code + vars, no
// direct kernel boot) loading \EFI\BOOT\BOOTX64.EFI from the disk's ESP — with a real software TPM (swtpm) as the
// vTPM: the NVMe shape of EC2 Nitro and the virtio-scsi shape of GCE. The guest must reach its dm-verity root
// by GPT label. Then the measured-boot proof: a test hook in the initramfs (an extra newc archive inside the
// UKI, so this disk's UKI is not the production one — its prediction is taken from it the same way) quotes the
// boot PCRs with the test's nonce using the host's tpm2-tools and prints the quote, the AK and the firmware's
// TCG event log; the attestation library verifies the quote, replays the log to the quoted PCRs and checks the
// measured-boot policy predicted from the disk's UKI (PCR 4 Authenticode digest, PCR 11 of systemd-stub, the
// command line with the verity root hash). A copy of the disk whose UKI command line differs by one byte boots
// too (the firmware has no Secure Boot keys here) and its evidence fails that policy.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildDisk,
  buildImage,
  newcArchive,
  ukiFromDiskFile,
  type ImageManifest,
} from "../../../images/guest/index.js";
import type { DiskRecord } from "../../../images/guest/manifest.js";
import { predictFromDisk } from "../../../images/index.js";
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
  requireTool("tpm2-tools", haveCommand("tpm2", ["--version"])) &&
  ["objcopy", "mcopy", "unsquashfs"].every((t) =>
    requireTool(t, haveCommand(t, t === "unsquashfs" ? ["-h"] : ["--version"])),
  );

const scratch = mkdtempSync(path.join(tmpdir(), "bk-diskboot-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The hook: quote with a nonce read from the console, then print AK, quote, PCRs and the event log in base64. */
const HOOK = `#!/bin/sh
H=/bk-hook.d
t() { "$H/lib/ld-linux-x86-64.so.2" --library-path "$H/lib" "$H/bin/tpm2" "$@"; }
export LD_LIBRARY_PATH="$H/lib" TPM2TOOLS_TCTI=device:/dev/tpm0
mkdir -p /hook && cd /hook
mount -t securityfs securityfs /sys/kernel/security
echo "bk-hook: nonce?" >/dev/console
read -r nonce </dev/console
t createprimary -Q -C e -G ecc256:ecdsa-sha256:null -g sha256 \\
  -a "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign" -c ak.ctx >/dev/console 2>&1
t readpublic -Q -c ak.ctx -o ak.pub >/dev/console 2>&1
t quote -Q -c ak.ctx -l sha256:${PCRS.join(",")} -q "$nonce" -m quote.msg -s quote.sig -o pcrs.bin -F values -g sha256 >/dev/console 2>&1
cp /sys/kernel/security/tpm0/binary_bios_measurements eventlog.bin
for f in ak.pub quote.msg quote.sig pcrs.bin eventlog.bin; do
  echo "bk-hook-begin $f"
  base64 "$f"
  echo "bk-hook-end $f"
done >/dev/console
umount /sys/kernel/security
cd /
`;

/** The hook as a newc archive: the script, the host's tpm2 (tpm2-tools) and its libraries incl. the device TCTI. */
async function hookLayer(): Promise<Buffer> {
  const root = path.join(scratch, "hook");
  const lib = path.join(root, "bk-hook.d/lib");
  mkdirSync(lib, { recursive: true });
  mkdirSync(path.join(root, "bk-hook.d/bin"), { recursive: true });
  mkdirSync(path.join(root, "bin"), { recursive: true });
  copyFileSync("/usr/bin/tpm2", path.join(root, "bk-hook.d/bin/tpm2"));
  chmodSync(path.join(root, "bk-hook.d/bin/tpm2"), 0o755);
  const tcti = "/usr/lib/x86_64-linux-gnu/libtss2-tcti-device.so.0";
  const libs = new Set<string>([tcti]);
  for (const bin of ["/usr/bin/tpm2", tcti]) {
    const out = spawnSync("ldd", [bin], { encoding: "utf8" }).stdout;
    for (const m of out.matchAll(/(\/\S+)\s+\(0x/g)) libs.add(m[1]);
  }
  for (const l of libs) {
    copyFileSync(realpathSync(l), path.join(lib, path.basename(l)));
    chmodSync(path.join(lib, path.basename(l)), 0o755);
  }
  for (const a of ["base64", "cp"]) symlinkSync("busybox", path.join(root, "bin", a));
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

function tpmEvidence(e: Record<string, Buffer>): TpmEvidence {
  for (const k of ["ak.pub", "quote.msg", "quote.sig", "pcrs.bin", "eventlog.bin"])
    if (!e[k]?.length) throw new Error(`the hook printed no ${k}`);
  const pcrs: Record<number, Uint8Array> = {};
  PCRS.forEach((p, i) => (pcrs[p] = e["pcrs.bin"].subarray(i * 32, i * 32 + 32)));
  return {
    akPublic: e["ak.pub"],
    quote: e["quote.msg"],
    signature: e["quote.sig"],
    pcrs: { sha256: pcrs },
    eventLog: e["eventlog.bin"],
  };
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
    const cacheDir = path.join(homedir(), ".cache/buckypaper");
    let m: ImageManifest;
    let dir: string;
    let disk: DiskRecord;
    let policy: MeasuredBootPolicy;
    let manifestPath: string;

    beforeAll(async () => {
      const img = await buildImage({ repoRoot, lockPath: path.join(repoRoot, "images/guest/packages.lock"), cacheDir });
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
