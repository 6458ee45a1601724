// The kit's cloud disk under Secure Boot with the customer's own keys, booted for real: Debian's OVMF Secure Boot
// build (OVMF_CODE_4M.secboot.fd: q35 with SMM, the flash's secure property on) with a vars file in which
// virt-firmware's virt-fw-vars enrolled this test's PK, KEK and db (Secure Boot on, deployed mode), and swtpm as the
// vTPM. The disk is built by buildDisk with `signing` (what `image build --sign-key/--sign-cert` does), plus a test
// hook in the initramfs (so its UKI is not the production one; the prediction is taken from it the same way) that
// runs the image's own agent (`enclaivelet vtpm-evidence`: tpm2-tools against /dev/tpmrm0, quote + event log).
// Checked on the host: the quote verifies, the log replays to it, PCR 7 is the value predicted from the enrolled
// variables and the db certificate (images/vtpm/secure-boot.ts), and the measured-boot policy predictFromDisk
// registers for a signed disk (Secure Boot on, the UKI verified by this db certificate — the authority event; the
// UKI's PCR 4 digest, its PCR 11, its command line) accepts every rule.
// Hostile: the same disk whose UKI is signed by another key (not in db) is refused by the firmware — it never
// starts, so no evidence exists at all; booted on a firmware with Secure Boot off (no keys enrolled) it runs, and its
// genuine evidence is refused by boot.secure-boot and boot.secure-boot-authority.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { holdGuestSlots } from "../../support/guest-slots.js";
import { buildDisk, buildImage, newcArchive, type ImageManifest } from "../../../images/guest/index.js";
import type { DiskRecord } from "../../../images/guest/manifest.js";
import { predictFromDisk, predictSecureBootPcr7, x509SignatureList } from "../../../images/index.js";
import { certificateDer } from "../../../images/vtpm/secure-boot.js";
import { decodeWireVtpm } from "../../../runtime/protocol/evidence.js";
import {
  appraiseMeasuredBoot,
  EV,
  parseEventLog,
  verifyTpmEvidence,
  type MeasuredBootPolicy,
  type TpmEvidence,
} from "../../../runtime/attestation/tpm/index.js";
import { KIT_GUEST_CPU } from "../../support/kit-guest.js";
import { haveCommand, requireTool } from "../../support/prereq.js";
import { repoRoot } from "../../support/shared.js";
import { dbKeyPair } from "../../support/db-key.js";
import { consoleBlocks, watchConsole } from "../../support/cloud-disk-guest.js";

const CODE = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
const VARS_TEMPLATE = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const OWNER = "1f0ba0c1-24f0-4bc3-9a5f-2a6f4d5c3e01";
const ready =
  requireTool("root (the image build runs mmdebstrap --mode=root)", process.getuid?.() === 0) &&
  requireTool("qemu-system-x86_64", haveCommand("qemu-system-x86_64", ["--version"])) &&
  requireTool("Debian's OVMF Secure Boot build (ovmf)", existsSync(CODE) && existsSync(VARS_TEMPLATE)) &&
  requireTool("swtpm", haveCommand("swtpm", ["--version"])) &&
  requireTool("virt-fw-vars (PyPI virt-firmware)", haveCommand("virt-fw-vars", ["--help"])) &&
  requireTool("osslsigncode (the UKI signer)", haveCommand("osslsigncode", ["--version"])) &&
  requireTool("openssl", haveCommand("openssl", ["version"])) &&
  ["objcopy", "mcopy", "unsquashfs"].every((t) =>
    requireTool(t, haveCommand(t, t === "unsquashfs" ? ["-h"] : ["--version"])),
  );

const scratch = mkdtempSync(path.join(tmpdir(), "bk-sbdisk-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const keyPair = (cn: string) => dbKeyPair(scratch, cn, 3650);

/** After the init verified the root: the image's agent quotes and prints its evidence (base64), then powers off. */
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
`;

async function hookLayer(): Promise<Buffer> {
  const root = path.join(scratch, "hook");
  mkdirSync(path.join(root, "bin"), { recursive: true });
  for (const a of ["base64", "chroot"]) symlinkSync("busybox", path.join(root, "bin", a));
  writeFileSync(path.join(root, "bk-hook"), HOOK);
  chmodSync(path.join(root, "bk-hook"), 0o755);
  return newcArchive(root);
}

interface Boot {
  console: string;
  evidence?: Buffer;
  seconds: number;
}

/** Boots `disk` under the Secure Boot OVMF with `vars` and a fresh swtpm until `until` or `timeoutMs`. */
async function bootDisk(disk: string, vars: string, nonce: Buffer, until: RegExp, timeoutMs: number): Promise<Boot> {
  const t0 = Date.now();
  const tpmDir = mkdtempSync(path.join(scratch, "tpm-"));
  const sock = path.join(tpmDir, "sock");
  const swtpm = spawn(
    "swtpm",
    ["socket", "--tpm2", "--tpmstate", `dir=${tpmDir}`, "--ctrl", `type=unixio,path=${sock}`, "--terminate"],
    { stdio: "ignore" },
  );
  for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
  const varsCopy = path.join(tpmDir, "vars.fd");
  copyFileSync(vars, varsCopy);
  const argv = [
    "-machine",
    "q35,smm=on,accel=tcg",
    "-global",
    "driver=cfi.pflash01,property=secure,value=on",
    "-global",
    "ICH9-LPC.disable_s3=1",
    "-drive",
    `if=pflash,format=raw,unit=0,file=${CODE},readonly=on`,
    "-drive",
    `if=pflash,format=raw,unit=1,file=${varsCopy}`,
    "-cpu",
    KIT_GUEST_CPU,
    "-m",
    "1024",
    "-smp",
    "1",
    "-nographic",
    "-no-reboot",
    "-nic",
    "none",
    "-chardev",
    `socket,id=chrtpm,path=${sock}`,
    "-tpmdev",
    "emulator,id=tpm0,chardev=chrtpm",
    "-device",
    "tpm-crb,tpmdev=tpm0",
    "-drive",
    `file=${disk},if=none,id=d0,format=raw,readonly=on`,
    "-device",
    "nvme,drive=d0,serial=bkdisk",
  ];
  const q: ChildProcess = spawn("qemu-system-x86_64", argv, { stdio: ["pipe", "pipe", "pipe"] });
  let asked = false;
  const text = await watchConsole(q, timeoutMs, (t) => {
    if (!asked && t.includes("bk-hook: nonce?")) {
      asked = true;
      q.stdin!.write(nonce.toString("hex") + "\n");
    }
    return until.test(t);
  });
  swtpm.kill();
  const evidence = consoleBlocks(text, "bk-hook")["vtpm.json"] as Buffer | undefined;
  return { console: text, seconds: Math.round((Date.now() - t0) / 1000), ...(evidence ? { evidence } : {}) };
}

const failed = (checks: { id: string; ok: boolean }[]) => checks.filter((c) => !c.ok).map((c) => c.id);
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe.runIf(ready)(
  "the cloud disk signed with the customer's db key boots under Secure Boot with those keys enrolled, and its PCR 7 is what was predicted",
  () => {
    holdGuestSlots(1, "secure-boot-disk");
    const cacheDir = path.join(homedir(), ".cache/buckypaper");
    let m: ImageManifest;
    let dir: string;
    let signed: DiskRecord;
    let rogue: DiskRecord;
    let policy: MeasuredBootPolicy;
    let vars: string;
    let enrolled: Record<string, Buffer>;
    const pk = keyPair("test PK");
    const kek = keyPair("test KEK");
    const db = keyPair("test db");
    const other = keyPair("not enrolled");

    beforeAll(async () => {
      const img = await buildImage({
        repoRoot,
        lockPath: path.join(repoRoot, "images/guest/packages.lock"),
        cacheDir,
        cloud: "ec2",
        format: "direct",
      });
      dir = img.dir;
      m = img.manifest;
      const layer = await hookLayer();
      const disk = (signing: { key: string; cert: string }) =>
        buildDisk({
          imageDir: dir,
          manifest: m,
          repoRoot,
          cacheDir,
          sourceDateEpoch: m.sourceDateEpoch,
          testLayers: [layer],
          signing,
        });
      signed = await disk(db);
      rogue = await disk(other);
      // The signature lives only in the certificate table: both disks' UKIs measure the same into PCR 4.
      expect(rogue.uki.authenticode).toEqual(signed.uki.authenticode);
      expect(rogue.uki.sha256).not.toBe(signed.uki.sha256);
      expect(signed.signature?.certSha256).toBe(
        createHash("sha256")
          .update(certificateDer(readFileSync(db.cert)))
          .digest("hex"),
      );
      // No key material next to the disk or in its record.
      expect(JSON.stringify(signed)).not.toMatch(/PRIVATE KEY/);
      expect(readFileSync(path.join(dir, signed.path.replace(/disk\.raw$/, "disk.json")), "utf8")).not.toMatch(
        /PRIVATE KEY/,
      );

      // The firmware's variables: PK, KEK, db enrolled by virt-fw-vars, Secure Boot on.
      vars = path.join(scratch, "vars.fd");
      const json = path.join(scratch, "vars.json");
      const r = spawnSync(
        "virt-fw-vars",
        [
          "-i",
          VARS_TEMPLATE,
          "-o",
          vars,
          "--set-pk",
          OWNER,
          pk.cert,
          "--add-kek",
          OWNER,
          kek.cert,
          "--add-db",
          OWNER,
          db.cert,
          "--secure-boot",
          "--output-json",
          json,
        ],
        { encoding: "utf8" },
      );
      expect(r.status, r.stderr).toBe(0);
      const dump = JSON.parse(readFileSync(json, "utf8")) as { variables: { name: string; data: string }[] };
      enrolled = Object.fromEntries(dump.variables.map((v) => [v.name, Buffer.from(v.data, "hex")]));
      // virt-firmware's EFI_SIGNATURE_LISTs are the ones images/vtpm/secure-boot.ts builds (an independent encoder).
      for (const [name, kp] of [
        ["PK", pk],
        ["KEK", kek],
        ["db", db],
      ] as const)
        expect(hex(enrolled[name])).toBe(hex(x509SignatureList(certificateDer(readFileSync(kp.cert)), OWNER)));

      const manifestPath = path.join(scratch, "manifest.json");
      writeFileSync(manifestPath, JSON.stringify({ ...m, disk: signed }));
      policy = predictFromDisk(path.join(dir, "manifest.json"), { ...m, disk: signed }, "sha256", {
        secureBoot: { variables: { PK: enrolled.PK, KEK: enrolled.KEK, db: enrolled.db, dbx: enrolled.dbx } },
      }).policy;
      expect(policy.secureBoot?.authorities).toEqual([signed.signature!.certSha256]);
      // A prediction for db certificates the disk's UKI is not signed by is refused, naming the field.
      expect(() =>
        predictFromDisk(path.join(dir, "manifest.json"), { ...m, disk: rogue }, "sha256", {
          secureBoot: { dbCertificates: [readFileSync(db.cert)] },
        }),
      ).toThrow(/manifest\.disk\.signature: .*its UKI is not signed by the db certificate/);
      expect(() =>
        predictFromDisk(
          path.join(dir, "manifest.json"),
          { ...m, disk: { ...signed, signature: undefined } },
          "sha256",
          {
            secureBoot: {},
          },
        ),
      ).toThrow(/manifest\.disk\.signature: Secure Boot with the db authority needs a signed UKI/);
    }, 3_600_000);

    it(
      "boots the signed disk; quote + log verify; PCR 7 equals the prediction; the db-authority policy accepts",
      { timeout: 1_500_000 },
      async () => {
        const nonce = randomBytes(32);
        const b = await bootDisk(path.join(dir, signed.path), vars, nonce, /bk-hook-end vtpm\.json/, 1_200_000);
        console.log(`[secure-boot-disk] signed: ${b.seconds} s`);
        expect(b.console, b.console.slice(-3000)).toContain("bk-hook-exit 0");
        const out = JSON.parse(b.evidence!.toString("utf8")) as { vtpm?: unknown };
        const ev: TpmEvidence = decodeWireVtpm(out.vtpm, "vtpm");
        const v = verifyTpmEvidence(ev, { nonce });
        expect(failed(v.checks)).toEqual([]);
        const log = parseEventLog(ev.eventLog!);
        const pcr7 = log.events.filter((e) => e.pcr === 7);
        console.log(`[secure-boot-disk] PCR 7 events: ${pcr7.map((e) => e.typeName).join(" ")}`);
        const predicted = predictSecureBootPcr7(
          { PK: enrolled.PK, KEK: enrolled.KEK, db: enrolled.db, dbx: enrolled.dbx },
          { certDer: certificateDer(readFileSync(db.cert)), owner: OWNER },
        );
        expect(v.quotedPcrs.sha256![7]).toBe(hex(predicted));
        expect(pcr7.filter((e) => e.type === EV.EFI_VARIABLE_AUTHORITY)).toHaveLength(1);
        // PCR 4: the UKI only — systemd-stub starts its kernel through a security override under Secure Boot, which
        // also skips the firmware's measurement of it (the prediction requires only the UKI then).
        const apps = log.events.filter((e) => e.pcr === 4 && e.type === EV.EFI_BOOT_SERVICES_APPLICATION);
        console.log(`[secure-boot-disk] PCR 4 boot applications: ${apps.map((e) => hex(e.digests.sha256!)).join(" ")}`);
        expect(apps.map((e) => hex(e.digests.sha256!))).toEqual([signed.uki.authenticode.sha256]);
        const boot = appraiseMeasuredBoot(v, policy);
        console.log(`[secure-boot-disk] ${boot.map((c) => `${c.id}=${c.ok}`).join(" ")}`);
        expect(boot.map((c) => c.id)).toEqual([
          "boot.separators",
          "boot.applications",
          "boot.kernel-cmdline",
          "boot.secure-boot",
          "boot.secure-boot-authority",
          "boot.pcrs",
        ]);
        expect(failed(boot), JSON.stringify(boot, null, 1)).toEqual([]);
        // The same evidence against a policy naming another db certificate: refused by name.
        const otherPolicy = {
          ...policy,
          secureBoot: {
            ...policy.secureBoot!,
            authorities: [
              createHash("sha256")
                .update(certificateDer(readFileSync(other.cert)))
                .digest("hex"),
            ],
          },
        };
        expect(failed(appraiseMeasuredBoot(v, otherPolicy))).toEqual(["boot.secure-boot-authority"]);
      },
    );

    it(
      "the same disk whose UKI is signed by a key not in db does not boot: the firmware refuses it",
      { timeout: 1_500_000 },
      async () => {
        const b = await bootDisk(
          path.join(dir, rogue.path),
          vars,
          randomBytes(32),
          /Access Denied|bk-hook: nonce\?|Linux version/,
          900_000,
        );
        console.log(`[secure-boot-disk] rogue: ${b.seconds} s; ${b.console.match(/.*Access Denied.*/)?.[0]}`);
        expect(b.console).toMatch(/Access Denied/);
        expect(b.console).not.toMatch(/Linux version|bk-hook/);
        expect(b.evidence).toBeUndefined();
      },
    );

    it(
      "the same rogue disk booted with Secure Boot off (no keys enrolled) runs, and the policy refuses it by the PCR 7 rules only",
      { timeout: 1_500_000 },
      async () => {
        const nonce = randomBytes(32);
        const b = await bootDisk(path.join(dir, rogue.path), VARS_TEMPLATE, nonce, /bk-hook-end vtpm\.json/, 1_200_000);
        console.log(`[secure-boot-disk] rogue, Secure Boot off: ${b.seconds} s`);
        expect(b.console, b.console.slice(-3000)).toContain("bk-hook-exit 0");
        const ev = decodeWireVtpm((JSON.parse(b.evidence!.toString("utf8")) as { vtpm?: unknown }).vtpm, "vtpm");
        const v = verifyTpmEvidence(ev, { nonce });
        expect(failed(v.checks)).toEqual([]);
        const boot = appraiseMeasuredBoot(v, policy);
        console.log(`[secure-boot-disk] rogue, Secure Boot off: ${boot.map((c) => `${c.id}=${c.ok}`).join(" ")}`);
        // The UKI's content is the registered one (the signature is outside its PCR 4 digest): what is refused is that
        // nothing verified it.
        expect(failed(boot)).toEqual(["boot.secure-boot", "boot.secure-boot-authority"]);
        expect(boot.find((c) => c.id === "boot.secure-boot-authority")!.detail).toMatch(/Secure Boot is disabled/);
      },
    );
  },
);
