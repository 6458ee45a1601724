// systemd system credentials from the VMM, closed in the kit image (both roles; docs/security.md, docs/images.md).
// systemd 252's PID 1 imports credentials into /run/credentials/@system from sources no launch measurement covers:
// SMBIOS type 11 OEM strings (`io.systemd.credential:NAME=VALUE`), QEMU fw_cfg (`opt/io.systemd.credentials/NAME`,
// after PID 1 itself loads qemu_fw_cfg) and the ESP's credentials that systemd-stub hands over. Units of the
// rootfs then act on them as root in sysinit.target: tmpfiles (`tmpfiles.extra`, provision.conf's
// `ssh.authorized_keys.root`), sysusers/firstboot (`passwd.*.root`), sysctl (`sysctl.extra`)…
// Closed in layers, each enough on its own for what it covers:
//   1. `systemd.import_credentials=no` on the measured kernel command line (manifest.ts): PID 1 imports nothing
//      (also not the kernel command line's own systemd.set_credential=, which the kit does not use);
//   2. `module_blacklist=qemu_fw_cfg` on that line and a modprobe.d `install … /bin/false`: no fw_cfg in sysfs;
//   3. every unit of the rootfs that loads a credential is copied to /etc/systemd/system without those lines
//      (found by a scan at build time, so a consumer a package update adds is caught too); a drop-in under
//      /usr/lib that sets one fails the build;
//   4. provision.conf masked (/etc/tmpfiles.d → /dev/null) and sshd refusing root logins (PermitRootLogin no).
import { existsSync } from "node:fs";
import { lstat, mkdir, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";

/** The word that stops systemd's PID 1 importing credentials: required of every vTPM-predicted boot, kit or not. */
export const IMPORT_CREDENTIALS_OFF = "systemd.import_credentials=no";

/** Kernel command line words of every kit image (kernelCmdline, diskCmdline): measured with the rest of the line. */
export const CREDENTIAL_CMDLINE = `${IMPORT_CREDENTIALS_OFF} module_blacklist=qemu_fw_cfg`;

/** The unit settings through which a service receives a credential (252 has the first four; the last from 254). */
const CREDENTIAL_SETTING =
  /^\s*(LoadCredential|LoadCredentialEncrypted|SetCredential|SetCredentialEncrypted|ImportCredential)\s*=/;

const UNIT_DIRS = ["usr/lib/systemd/system", "lib/systemd/system", "etc/systemd/system"];
const MODPROBE_CONF =
  "# buckypaper: fw_cfg is the VMM's, unmeasured (systemd credentials)\ninstall qemu_fw_cfg /bin/false\n";
const SSHD_CONF =
  "# buckypaper: no root logins (a key the host slipped in for root must not work)\nPermitRootLogin no\n";

export interface CredentialConsumers {
  /** Units copied to /etc/systemd/system without their credential settings (sorted names). */
  units: string[];
}

async function walk(dir: string, out: string[]): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await walk(p, out);
    else if (e.isFile()) out.push(p);
  }
}

/** The lines of a unit file that give the service a credential. */
export function credentialLines(unitText: string): string[] {
  return unitText.split("\n").filter((l) => CREDENTIAL_SETTING.test(l));
}

/** Closes the credential consumers of the tree (layers 2–4 above; layer 1 is on the command line). */
export async function closeCredentialConsumers(root: string): Promise<CredentialConsumers> {
  const found = new Map<string, string>(); // unit name → its text without the credential lines
  const seen = new Set<string>();
  for (const d of UNIT_DIRS) {
    const dir = path.join(root, d);
    if (!existsSync(dir)) continue;
    const real = (await lstat(dir)).isSymbolicLink() ? null : dir; // /lib → /usr/lib on a merged-/usr tree
    if (!real || seen.has(real)) continue;
    seen.add(real);
    const files: string[] = [];
    await walk(dir, files);
    for (const f of files) {
      const text = await readFile(f, "utf8").catch(() => "");
      const lines = credentialLines(text);
      if (!lines.length) continue;
      const rel = path.relative(dir, f);
      // A drop-in (or a unit in a subdirectory) cannot be replaced by a copy of its own: refuse to build.
      if (path.dirname(rel) !== ".")
        throw new Error(
          `image build: ${path.join(d, rel)} gives a credential (${lines[0].trim()}); handle it in images/guest/credentials.ts`,
        );
      found.set(
        rel,
        text
          .split("\n")
          .filter((l) => !CREDENTIAL_SETTING.test(l))
          .join("\n"),
      );
    }
  }
  const etc = path.join(root, "etc/systemd/system");
  await mkdir(etc, { recursive: true });
  for (const [name, text] of found) {
    await rm(path.join(etc, name), { force: true });
    await writeFile(
      path.join(etc, name),
      `# buckypaper: ${name} without its credentials (images/guest/credentials.ts)\n${text}`,
    );
  }
  await mkdir(path.join(root, "etc/tmpfiles.d"), { recursive: true });
  await rm(path.join(root, "etc/tmpfiles.d/provision.conf"), { force: true });
  await symlink("/dev/null", path.join(root, "etc/tmpfiles.d/provision.conf"));
  await mkdir(path.join(root, "etc/modprobe.d"), { recursive: true });
  await writeFile(path.join(root, "etc/modprobe.d/buckypaper-fw-cfg.conf"), MODPROBE_CONF);
  await mkdir(path.join(root, "etc/ssh/sshd_config.d"), { recursive: true });
  await writeFile(path.join(root, "etc/ssh/sshd_config.d/10-buckypaper-no-root.conf"), SSHD_CONF);
  return { units: [...found.keys()].sort() };
}
