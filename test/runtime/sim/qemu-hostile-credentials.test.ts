// A real guest from the kit image whose host hands systemd credentials in through the VMM — the hole of
// docs/security.md "systemd system credentials from SMBIOS type 11 and fw_cfg", closed in the image
// (images/guest/credentials.ts):
//   - an SMBIOS type 11 OEM string `io.systemd.credential:ssh.authorized_keys.root=<the host's key>` (Debian's
//     provision.conf would write it to /root/.ssh/authorized_keys in sysinit.target);
//   - a QEMU fw_cfg file `opt/io.systemd.credentials/tmpfiles.extra` whose tmpfiles line creates /run/bk-cred-marker
//     as root.
// Neither is in the launch digest. Expected: the guest attests and is provisioned as usual; the host's key does not
// log in as root; no marker; PID 1 imported nothing (/run/credentials/@system empty); no unit keeps a credential setting. The
// deployer's own user (`debian`, its key in the registered user-data) looks inside over ssh.
// BK_HOSTILE_CREDS_IMAGE=<a built image's directory> boots that image instead of building the current one: on an
// image from before the fix this file fails (the host's key logs in as root and reads the provisioned secret; the
// marker exists).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { holdGuestSlots } from "../../support/guest-slots.js";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { renderUserData, noCloudMetaData } from "../../../runtime/guest/cloud-init/index.js";
import { qemuGuestArgv } from "../../../components/qemu/settings.js";
import { Tee } from "../../../components/common/types.js";
import { createSnpSimulator } from "../../../runtime/sim/snp.js";
import {
  buildImage,
  snpDigestsFromManifest,
  type ImageBuildResult,
  type ImageManifest,
} from "../../../images/guest/index.js";
import {
  defaultCacheDir,
  launchGuest,
  guestNetOptions,
  prepareGuestDisks,
  GUEST_RUNTIME_ADDR,
  type RunningGuest,
} from "../../../runtime/sim/qemu/index.js";
import { startEnclaiveletStack, type EnclaiveletStack } from "../guest/stack.js";
import { KIT_FIRMWARE as FIRMWARE, KIT_GUEST_CPU as CPU, kitGuestReady } from "../../support/kit-guest.js";
import { freePort } from "../../support/net.js";
import { repoRoot } from "../../support/shared.js";

const ready = kitGuestReady("a real guest from the kit image");

const OUTCOME = /"event":"(done|failed)"/;
const ENV_FILE = "/etc/web/app.env";
const MARKER = "/run/bk-cred-marker";
// systemd 252's units in the kit rootfs that load a credential (images/guest/credentials.ts copies them to /etc without).
const CONSUMERS = [
  "systemd-tmpfiles-setup.service",
  "systemd-tmpfiles-setup-dev.service",
  "systemd-tmpfiles-clean.service",
  "systemd-sysusers.service",
  "systemd-firstboot.service",
  "systemd-sysctl.service",
].join(" ");

describe.runIf(ready)("a real guest whose host passes systemd credentials by SMBIOS type 11 and fw_cfg", () => {
  holdGuestSlots(1, "qemu-hostile-credentials"); // 1 guest(s) at once: see test/support/guest-slots.ts
  let work: string;
  let image: ImageBuildResult;
  let stack: EnclaiveletStack;
  let guest: RunningGuest;
  let outcome = "";
  let sshPort = 0;
  let userKey = "";
  let hostKey = "";
  let look = "";

  const ssh = (key: string, user: string, cmd: string) =>
    spawnSync(
      "ssh",
      [
        "-i",
        key,
        "-p",
        String(sshPort),
        "-o",
        "IdentitiesOnly=yes",
        // The guest's host key is not what this file is about (qemu-guest.test.ts checks it against the SSH CA).
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=60",
        `${user}@127.0.0.1`,
        cmd,
      ],
      { encoding: "utf8", timeout: 180_000 },
    );

  beforeAll(async () => {
    const other = process.env.BK_HOSTILE_CREDS_IMAGE;
    if (other) {
      const manifestPath = path.join(other, "manifest.json");
      const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as ImageManifest;
      image = { dir: other, manifestPath, manifest, cached: true, seconds: 0 };
      console.log(`image: ${other} (BK_HOSTILE_CREDS_IMAGE), not the current recipe's`);
      return;
    }
    image = await buildImage({
      repoRoot,
      lockPath: path.join(repoRoot, "images/guest/packages.lock"),
      cacheDir: defaultCacheDir(),
      firmware: FIRMWARE,
      progress: (l) => console.log(l),
    });
    console.log(`image: ${image.cached ? "cached" : "built"} in ${image.seconds} s (${image.dir})`);
  }, 3_600_000);

  beforeAll(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), "bk-hostile-creds-"));
    const m = image.manifest;
    const file = (k: "kernel" | "initrd" | "rootfs" | "firmware") => path.join(image.dir, m.files[k]!.path);
    const expected = snpDigestsFromManifest(image.manifestPath, { vcpus: [1], vcpu: CPU, vmm: "qemu" })
      .get(1)!
      .toString("hex");
    const sim = await createSnpSimulator({ product: "Genoa", rsaBits: 2048 });
    stack = await startEnclaiveletStack({ sim, tlsHosts: [GUEST_RUNTIME_ADDR], webMeasurement: expected });
    const runtimePort = Number(new URL(stack.rt.url).port);
    userKey = path.join(work, "user");
    hostKey = path.join(work, "host");
    for (const k of [userKey, hostKey]) spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", k]);
    const rendered = renderUserData({
      platform: "qemu",
      tee: "snp",
      runtimeUrl: `https://${GUEST_RUNTIME_ADDR}:${runtimePort}`,
      runtimeCaSha256: stack.caSha256,
      workloadId: "web",
      agent: { kind: "image" },
      evidenceProvider: "virtio-psp",
      hostname: "web",
      sshAuthorizedKeys: [readFileSync(`${userKey}.pub`, "utf8").trim()],
      provision: { envFiles: [{ path: ENV_FILE, vars: { DB_PASSWORD: "web/db#password" }, mode: "0600" }] },
    });
    await stack.admin("PUT", "nitride/workloads/web", {
      platforms: ["snp"],
      reference_values: {
        snp_measurements: [expected],
        user_data_sha256: createHash("sha256").update(rendered.text).digest("hex"),
      },
      secrets: { kv: ["secret/data/web/db"] },
    });

    const dir = path.join(work, "creds");
    const disks = prepareGuestDisks({
      dir,
      baseImage: file("rootfs"),
      userData: rendered.text,
      metaData: noCloudMetaData("creds-1", "web"),
    });
    sshPort = await freePort();
    const argv = qemuGuestArgv({
      name: "creds",
      tee: Tee.SevSnp,
      sevObject: false,
      vcpus: 1,
      memoryMb: 1024,
      cpuModel: CPU,
      firmwarePath: file("firmware"),
      kernelPath: file("kernel"),
      initrdPath: file("initrd"),
      append: m.cmdline,
      ...disks,
      userNetOptions: guestNetOptions({ runtimePort, sshHostPort: sshPort }),
    });
    // The host's additions to the component's argv: two credentials through the VMM, neither measured.
    const hostPub = readFileSync(`${hostKey}.pub`, "utf8").trim();
    argv.push(
      "-smbios",
      `type=11,value=io.systemd.credential:ssh.authorized_keys.root=${hostPub}`,
      "-fw_cfg",
      `name=opt/io.systemd.credentials/tmpfiles.extra,string=f ${MARKER} 0644 root root - pwned`,
    );
    const t0 = Date.now();
    guest = await launchGuest({ name: "creds", argv, sim, stateDir: dir });
    outcome = await guest.waitForConsole(OUTCOME, 900_000);
    console.log(`creds: ${Math.round((Date.now() - t0) / 1000)} s from QEMU start to: ${outcome.slice(0, 120)}`);
    expect(guest.launch.measurement).toBe(expected); // SMBIOS and fw_cfg are not in the launch digest

    // sshd starts after the agent: give it a moment under TCG.
    let r = ssh(userKey, "debian", "true");
    for (let i = 0; i < 36 && r.status !== 0; i++) {
      await new Promise((res) => setTimeout(res, 5000));
      r = ssh(userKey, "debian", "true");
    }
    expect(r.status, r.stderr).toBe(0);
    // What the deployer's user sees inside (sudo: cloud-init's default user), one labelled line per fact.
    r = ssh(
      userKey,
      "debian",
      [
        `echo "cmdline: $(cat /proc/cmdline)"`,
        `echo "smbios11: $(sudo cat /sys/firmware/dmi/entries/11-*/raw 2>/dev/null | grep -a -c io.systemd.credential)"`,
        `echo "fwcfg: $(ls /sys/firmware/qemu_fw_cfg/by_name/opt/io.systemd.credentials 2>/dev/null | tr '\\n' ' ')"`,
        `echo "module: $(grep -c ^qemu_fw_cfg /proc/modules)"`,
        `echo "creds: $(sudo ls -A /run/credentials/@system 2>/dev/null | tr '\\n' ' ')"`,
        `echo "rootkeys: $(sudo cat /root/.ssh/authorized_keys 2>/dev/null | grep -c '${hostPub.split(" ")[1]}')"`,
        `echo "marker: $(cat ${MARKER} 2>&1)"`,
        `echo "units: $(sudo systemctl cat ${CONSUMERS} | grep -c ^ExecStart=)"`,
        `echo "settings: $(sudo systemctl cat ${CONSUMERS} | grep -c -E '^(LoadCredential|SetCredential|ImportCredential)')"`,
        `echo "pid1: $( (sudo journalctl -b -o cat; sudo dmesg) | grep -i credential | grep -v 'ommand line:' | tr '\\n' '|')"`,
        `echo "env: $(sudo stat -c '%a %U' ${ENV_FILE})"`,
      ].join("; "),
    );
    look = r.stdout;
    console.log(`inside the guest (as debian):\n${look}${r.stderr}`);
  }, 1_800_000);

  afterAll(async () => {
    await guest?.stop();
    await stack?.rt.close();
    if (work && process.env.BK_KEEP_GUESTS !== "1") rmSync(work, { recursive: true, force: true });
    else if (work) console.log(`kept ${work}`);
  });

  const fact = (label: string) => look.match(new RegExp(`^${label}: (.*)$`, "m"))?.[1].trim();

  it("the guest attested and was provisioned as usual; the host's SMBIOS string reached the guest", () => {
    expect(outcome).toMatch(/"event":"done"/);
    expect(guest.console()).toMatch(/"event":"attest.ok"/);
    expect(guest.console()).not.toMatch(/web-db-s3cret/);
    expect(fact("env")).toBe("600 root");
    // the credential really was offered: the SMBIOS type 11 entry is in the guest's DMI tables
    expect(Number(fact("smbios11"))).toBeGreaterThan(0);
  });

  it("the host's key does not log in as root", () => {
    const r = ssh(hostKey, "root", `id -un; cat ${ENV_FILE}`);
    console.log(`ssh root@ with the host's key: status ${r.status}; ${r.stdout}${r.stderr}`.trim());
    expect(r.stdout).not.toMatch(/web-db-s3cret/);
    expect(r.stdout).not.toMatch(/^root$/m);
    expect(r.status).not.toBe(0);
    expect(fact("rootkeys")).toBe("0");
  });

  it("PID 1 imported no credential: none in /run/credentials/@system, no fw_cfg, no tmpfiles.extra marker", () => {
    expect(fact("cmdline")).toContain("systemd.import_credentials=no");
    expect(fact("pid1")).toMatch(/systemd\.import_credentials=no is set, skipping importing of credentials/);
    expect(fact("creds")).toBe("");
    expect(fact("module")).toBe("0");
    expect(fact("fwcfg")).toBe("");
    expect(fact("marker")).toMatch(/No such file or directory/);
    expect(Number(fact("units"))).toBeGreaterThanOrEqual(6); // systemctl cat did show the six units
    expect(fact("settings")).toBe("0"); // the consumers' copies in /etc keep no credential setting
  });
});
