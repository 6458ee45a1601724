// The kit image's closing of systemd credentials (images/guest/credentials.ts), checked on a scratch tree and on the
// real Debian tree the image build keeps in the cache. The booted result is test/runtime/sim/qemu-hostile-credentials.test.ts.
import { existsSync, readdirSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CREDENTIAL_CMDLINE, closeCredentialConsumers, credentialLines } from "../../../images/guest/credentials.js";
import { kernelCmdline } from "../../../images/guest/manifest.js";
import { defaultCacheDir } from "../../../runtime/sim/qemu/index.js";

const scratch: string[] = [];
afterAll(async () => {
  for (const d of scratch) await rm(d, { recursive: true, force: true });
});
async function tree(): Promise<string> {
  const r = await mkdtemp(path.join(tmpdir(), "bk-creds-"));
  scratch.push(r);
  return r;
}

const TMPFILES_SETUP = [
  "[Unit]",
  "Description=Create Volatile Files and Directories",
  "[Service]",
  "Type=oneshot",
  "ExecStart=systemd-tmpfiles --create --remove --boot --exclude-prefix=/dev",
  "LoadCredential=tmpfiles.extra",
  "  SetCredential=x:y",
  "ImportCredential=passwd.*",
  "",
].join("\n");

describe("closeCredentialConsumers on a scratch merged-/usr tree", () => {
  it("copies every credential-loading unit to /etc without those lines, masks provision.conf, fw_cfg, root ssh", async () => {
    const r = await tree();
    await mkdir(path.join(r, "usr/lib/systemd/system"), { recursive: true });
    await symlink("usr/lib", path.join(r, "lib"));
    await writeFile(path.join(r, "usr/lib/systemd/system/systemd-tmpfiles-setup.service"), TMPFILES_SETUP);
    await writeFile(path.join(r, "usr/lib/systemd/system/plain.service"), "[Service]\nExecStart=/bin/true\n");
    const { units } = await closeCredentialConsumers(r);
    expect(units).toEqual(["systemd-tmpfiles-setup.service"]);
    const copy = await readFile(path.join(r, "etc/systemd/system/systemd-tmpfiles-setup.service"), "utf8");
    expect(credentialLines(copy)).toEqual([]);
    expect(copy).toContain("ExecStart=systemd-tmpfiles --create --remove --boot --exclude-prefix=/dev");
    expect(existsSync(path.join(r, "etc/systemd/system/plain.service"))).toBe(false);
    expect(await readlink(path.join(r, "etc/tmpfiles.d/provision.conf"))).toBe("/dev/null");
    expect(await readFile(path.join(r, "etc/modprobe.d/buckypaper-fw-cfg.conf"), "utf8")).toMatch(
      /^install qemu_fw_cfg \/bin\/false$/m,
    );
    expect(await readFile(path.join(r, "etc/ssh/sshd_config.d/10-buckypaper-no-root.conf"), "utf8")).toMatch(
      /^PermitRootLogin no$/m,
    );
  });

  it("refuses a drop-in that gives a credential (a copy of the unit cannot remove it)", async () => {
    const r = await tree();
    await mkdir(path.join(r, "usr/lib/systemd/system/getty@.service.d"), { recursive: true });
    await writeFile(path.join(r, "usr/lib/systemd/system/getty@.service.d/x.conf"), "[Service]\nLoadCredential=a\n");
    await expect(closeCredentialConsumers(r)).rejects.toThrow(/getty@\.service\.d\/x\.conf gives a credential/);
  });

  it("the measured command line turns PID 1's import off and blacklists qemu_fw_cfg", () => {
    const cmdline = kernelCmdline("/dev/vda", { rootHash: "ab".repeat(32), hashOffset: 4096 } as never);
    expect(cmdline.split(" ")).toEqual(expect.arrayContaining(CREDENTIAL_CMDLINE.split(" ")));
    expect(CREDENTIAL_CMDLINE).toContain("systemd.import_credentials=no");
  });
});

// The installed Debian tree of the image build (mmdebstrap, kept by images/guest/build.ts as base-*/root).
const images = path.join(defaultCacheDir(), "images");
const bases = existsSync(images)
  ? readdirSync(images)
      .filter((n) => n.startsWith("base-") && existsSync(path.join(images, n, "done")))
      .map((n) => path.join(images, n, "root"))
  : [];
if (!bases.length) console.log("skipped: no installed tree of an image build in the cache (buckypaper image build)");

describe.runIf(bases.length > 0)("closeCredentialConsumers on the image build's real Debian 12 tree", () => {
  it("finds systemd 252's consumers and leaves none with a credential", async () => {
    const r = await tree();
    // The real /usr, a scratch /etc: the function reads units and writes only under /etc.
    await symlink(path.join(bases[0], "usr"), path.join(r, "usr"));
    await symlink("usr/lib", path.join(r, "lib"));
    const { units } = await closeCredentialConsumers(r);
    expect(units).toEqual(
      expect.arrayContaining([
        "systemd-firstboot.service",
        "systemd-sysctl.service",
        "systemd-sysusers.service",
        "systemd-tmpfiles-clean.service",
        "systemd-tmpfiles-setup-dev.service",
        "systemd-tmpfiles-setup.service",
      ]),
    );
    for (const u of units)
      expect(credentialLines(await readFile(path.join(r, "etc/systemd/system", u), "utf8")), u).toEqual([]);
    expect(existsSync(path.join(bases[0], "usr/lib/tmpfiles.d/provision.conf"))).toBe(true); // what the mask covers
  });
});
