// A real guest from the kit image whose host asks cloud-init to run the user-data before the agent and slips in
// code of its own — the two NoCloud holes of docs/security.md, closed in the image (images/guest/configure.ts):
//   - dsmode local, from the NoCloud seed's meta-data AND from the DMI system serial (QEMU
//     `-smbios type=1,serial=ds=nocloud;dsmode=local`, which outranks even the kernel command line in cloud-init
//     22.4). A stock NoCloud would make cloud-init-local.service run boothooks and the init modules (bootcmd,
//     write_files, …) before the enclaivelet attests; the kit's NoCloud is pinned to net dsmode;
//   - a NoCloud `vendor-data` file (a boothook, a shell script, a cloud-config runcmd): never in the registration,
//     never consumed (vendor_data/vendor_data2 disabled).
//   - an SSH key in the seed's meta-data (`public-keys`): stock cloud-init installs it for the default user, a login
//     the host chose into a guest that holds the secrets; the image sets allow_public_ssh_keys false.
// The registered user-data's bootcmd prints whether the agent had already provisioned (its env file exists) when
// it ran. Expected: provisioned; the bootcmd ran once, AFTER the agent; no vendor-data marker ever on the console,
// until cloud-final's final message. BK_HOSTILE_SEED_IMAGE=<a built image's directory> boots that image instead of
// building the current one: on an image from before the fix (stock NoCloud, vendor-data on) this file fails — the
// bootcmd prints BEFORE, from cloud-init-local, and the vendor-data markers appear.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { holdGuestSlots } from "../../support/guest-slots.js";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Document, parse } from "yaml";
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
// cloud-final's final message (cc_final_message writes it to the console): every stage that could have consumed
// vendor-data has run by then.
const FINAL = /Cloud-init v\. \S+ finished at/;
const ENV_FILE = "/etc/web/app.env";
// Markers computed by the shell, so that their text appears on the console only if the command ran.
const BOOTCMD_MARK = /^BK-USERDATA-BOOTCMD-(AFTER|BEFORE)-AGENT$/gm;
const VENDOR_MARK = /BK-VENDOR-(BOOTHOOK|SCRIPT|RUNCMD)-42/;
// What the host puts on the seed and in the SMBIOS table: nothing of it is in the launch digest or the registration.
const hostileMetaData = (hostKey: string) =>
  `${noCloudMetaData("hostile-1", "web")}dsmode: local\npublic-keys:\n  - ${hostKey}\n`;
const HOSTILE_SMBIOS = ["-smbios", "type=1,serial=ds=nocloud;dsmode=local"];
const HOSTILE_VENDOR_DATA = [
  'Content-Type: multipart/mixed; boundary="BKVENDOR"',
  "MIME-Version: 1.0",
  "",
  "--BKVENDOR",
  "Content-Type: text/cloud-boothook",
  "",
  "#!/bin/sh",
  "echo BK-VENDOR-BOOTHOOK-$((6*7)) > /dev/console",
  "--BKVENDOR",
  "Content-Type: text/x-shellscript",
  "",
  "#!/bin/sh",
  "echo BK-VENDOR-SCRIPT-$((6*7)) > /dev/console",
  "--BKVENDOR",
  "Content-Type: text/cloud-config",
  "",
  "#cloud-config",
  "runcmd:",
  '  - [sh, -c, "echo BK-VENDOR-RUNCMD-$((6*7)) > /dev/console"]',
  "--BKVENDOR--",
  "",
].join("\n");

describe.runIf(ready)("a real guest whose host asks for dsmode local and adds vendor-data", () => {
  holdGuestSlots(1, "qemu-hostile-seed"); // 1 guest(s) at once: see test/support/guest-slots.ts
  let work: string;
  let image: ImageBuildResult;
  let stack: EnclaiveletStack;
  let guest: RunningGuest;
  let outcome = "";
  let finished = "";
  let sshPort = 0;
  let hostKey = "";

  beforeAll(async () => {
    const other = process.env.BK_HOSTILE_SEED_IMAGE;
    if (other) {
      const manifestPath = path.join(other, "manifest.json");
      const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as ImageManifest;
      image = { dir: other, manifestPath, manifest, cached: true, seconds: 0 };
      console.log(`image: ${other} (BK_HOSTILE_SEED_IMAGE), not the current recipe's`);
      return;
    }
    // Cached by input hash; after a change of the recipe or the agent only the finishing steps and squashfs run.
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
    work = mkdtempSync(path.join(os.tmpdir(), "bk-hostile-seed-"));
    // The host's own login key, offered through the seed's meta-data.
    hostKey = path.join(work, "host_id");
    const kg = spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "host-admin", "-f", hostKey]);
    expect(kg.status).toBe(0);
    sshPort = await freePort();
    const m = image.manifest;
    const file = (k: "kernel" | "initrd" | "rootfs" | "firmware") => path.join(image.dir, m.files[k]!.path);
    const expected = snpDigestsFromManifest(image.manifestPath, { vcpus: [1], vcpu: CPU, vmm: "qemu" })
      .get(1)!
      .toString("hex");
    const sim = await createSnpSimulator({ product: "Genoa", rsaBits: 2048 });
    stack = await startEnclaiveletStack({ sim, tlsHosts: [GUEST_RUNTIME_ADDR], webMeasurement: expected });
    const runtimePort = Number(new URL(stack.rt.url).port);
    const rendered = renderUserData({
      platform: "qemu",
      tee: "snp",
      runtimeUrl: `https://${GUEST_RUNTIME_ADDR}:${runtimePort}`,
      runtimeCaSha256: stack.caSha256,
      workloadId: "web",
      agent: { kind: "image" },
      evidenceProvider: "virtio-psp",
      hostname: "web",
      provision: { envFiles: [{ path: ENV_FILE, vars: { DB_PASSWORD: "web/db#password" }, mode: "0600" }] },
    });
    // The deployer's own bootcmd, part of the registered user-data: did the agent provision before it ran?
    const doc = parse(rendered.text, { version: "1.1" }) as { bootcmd: unknown[] };
    doc.bootcmd.push([
      "sh",
      "-c",
      `echo "BK-USERDATA-BOOTCMD-$(if [ -e ${ENV_FILE} ]; then echo AFTER; else echo BEFORE; fi)-AGENT" > /dev/console`,
    ]);
    const userData = `#cloud-config\n${new Document(doc, { version: "1.1" }).toString({ lineWidth: 0 })}`;
    await stack.admin("PUT", "nitride/workloads/web", {
      platforms: ["snp"],
      reference_values: {
        snp_measurements: [expected],
        user_data_sha256: createHash("sha256").update(userData).digest("hex"),
      },
      secrets: { kv: ["secret/data/web/db"] },
    });

    const dir = path.join(work, "hostile");
    const disks = prepareGuestDisks({
      dir,
      baseImage: file("rootfs"),
      userData,
      metaData: hostileMetaData(readFileSync(`${hostKey}.pub`, "utf8").trim()),
      hostileVendorData: HOSTILE_VENDOR_DATA,
    });
    const argv = qemuGuestArgv({
      name: "hostile",
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
    // The host's addition to the component's argv: a DMI serial asking NoCloud for dsmode local.
    argv.push(...HOSTILE_SMBIOS);
    const t0 = Date.now();
    guest = await launchGuest({ name: "hostile", argv, sim, stateDir: dir });
    outcome = await guest.waitForConsole(OUTCOME, 900_000);
    console.log(`hostile: ${Math.round((Date.now() - t0) / 1000)} s from QEMU start to: ${outcome.slice(0, 120)}`);
    finished = await guest.waitForConsole(FINAL, 600_000);
    console.log(`hostile: ${Math.round((Date.now() - t0) / 1000)} s from QEMU start to cloud-init's final message`);
    expect(guest.launch.measurement).toBe(expected); // the serial and the seed are not in the launch digest
  }, 1_800_000);

  afterAll(async () => {
    await guest?.stop();
    await stack?.rt.close();
    if (work && process.env.BK_KEEP_GUESTS !== "1") rmSync(work, { recursive: true, force: true });
    else if (work) console.log(`kept ${work}`);
  });

  it("the guest attested and was provisioned despite the host's dsmode local", () => {
    const text = guest.console();
    // the host's DMI serial really reached the guest's cloud-init, which pinned the mode instead of obeying it
    expect(text).toMatch(/dsmode 'local' from the host's meta-data ignored: pinned to 'net'/);
    expect(outcome).toMatch(/"event":"done"/);
    expect(text).toMatch(/"event":"attest.ok"/);
    expect(text).not.toMatch(/web-db-s3cret/);
    expect(finished).toMatch(FINAL);
  });

  it("the registered user-data's bootcmd ran once, after the agent had provisioned (not in cloud-init-local)", () => {
    const text = guest.console();
    const marks = [...text.matchAll(BOOTCMD_MARK)].map((x) => x[1]);
    expect(marks).toEqual(["AFTER"]);
    expect(text.indexOf("BK-USERDATA-BOOTCMD-AFTER-AGENT")).toBeGreaterThan(text.search(/"event":"done"/));
  });

  it("the host's vendor-data never ran: no boothook, no script, no runcmd", () => {
    expect(guest.console()).not.toMatch(VENDOR_MARK);
  });

  it("the host's meta-data SSH key logs in as no one: sshd answers, the key is refused", async () => {
    const known = path.join(work, "known_hosts_any");
    writeFileSync(known, "");
    const ssh = (user: string) =>
      spawnSync(
        "ssh",
        [
          "-i",
          hostKey,
          "-p",
          String(sshPort),
          "-o",
          `UserKnownHostsFile=${known}`,
          "-o",
          "StrictHostKeyChecking=no", // the host key is not what this case checks
          "-o",
          "BatchMode=yes",
          "-o",
          "IdentitiesOnly=yes",
          "-o",
          "ConnectTimeout=30",
          `${user}@127.0.0.1`,
          "echo HOST-KEY-LOGGED-IN",
        ],
        { encoding: "utf8", timeout: 120_000 },
      );
    // sshd starts after the agent: wait until it answers (a refusal by sshd, not a closed port, is the point).
    let r = ssh("debian");
    for (let i = 0; i < 24 && !/Permission denied|HOST-KEY-LOGGED-IN/.test(r.stderr + r.stdout); i++) {
      await new Promise((res) => setTimeout(res, 5000));
      r = ssh("debian");
    }
    expect(r.stdout).not.toContain("HOST-KEY-LOGGED-IN");
    expect(r.stderr).toMatch(/Permission denied \(publickey\)/); // keys only: no password prompt either
    const root = ssh("root");
    expect(root.stdout).not.toContain("HOST-KEY-LOGGED-IN");
    expect(root.stderr).toMatch(/Permission denied/);
  }, 600_000);
});
