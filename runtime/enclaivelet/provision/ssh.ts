// SSH host identity: host keys are generated in the guest (the private keys never leave it) and
// the runtime's SSH CA signs their public halves into host certificates (Vault `ssh/sign/<role>`,
// cert_type=host). sshd learns about them through a drop-in. Re-signed only near expiry.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { SshConfig } from "../config.js";
import { mustRun, type CommandRunner } from "../exec.js";
import type { FileWrite } from "./files.js";
import { ProvisionError, underRoot } from "./files.js";

export type SignSshKey = (publicKeyLine: string) => Promise<string>;

export const SSHD_DROPIN = "/etc/ssh/sshd_config.d/50-buckypaper-host-cert.conf";

/** valid_before (seconds) of an OpenSSH certificate line `<type>-cert-v01@openssh.com <b64> …`. */
export function sshCertValidBefore(line: string): number {
  const blob = Buffer.from(line.trim().split(/\s+/)[1] ?? "", "base64");
  let off = 0;
  const u32 = () => { const v = blob.readUInt32BE(off); off += 4; return v; };
  const str = () => { const n = u32(); const s = blob.subarray(off, off + n); off += n; if (off > blob.length) throw new RangeError("truncated"); return s; };
  const type = str().toString("latin1");
  str(); // nonce
  const fields = type.startsWith("ssh-ed25519") ? 1 : type.startsWith("ecdsa-") ? 2 : type.startsWith("ssh-rsa") ? 2 : -1;
  if (fields < 0) throw new ProvisionError("ssh", `unsupported certificate type ${type}`);
  for (let i = 0; i < fields; i++) str();
  off += 8 + 4; // serial, type
  str(); // key id
  str(); // principals
  off += 8; // valid_after
  return Number(blob.readBigUInt64BE(off));
}

function keyFile(dir: string, t: string): string {
  return path.posix.join(dir, `ssh_host_${t}_key`);
}

export async function planSsh(cfg: SshConfig, root: string, runner: CommandRunner, sign: SignSshKey, now = Date.now()): Promise<{ writes: FileWrite[]; renewed: string[]; kept: string[] }> {
  const writes: FileWrite[] = [];
  const renewed: string[] = [];
  const kept: string[] = [];
  const tmp = await mkdtemp(path.join(tmpdir(), "enclaivelet-ssh-"));
  try {
    for (const t of cfg.keyTypes) {
      const keyPath = keyFile(cfg.dir, t);
      let pub: string;
      try {
        pub = (await readFile(underRoot(root, keyPath + ".pub"), "utf8")).trim();
        await readFile(underRoot(root, keyPath)); // both halves must exist
      } catch {
        const f = path.join(tmp, t);
        await mustRun(runner, ["ssh-keygen", "-q", "-t", t, ...(t === "rsa" ? ["-b", "3072"] : []), "-N", "", "-C", "", "-f", f]);
        pub = (await readFile(f + ".pub", "utf8")).trim();
        writes.push({ path: keyPath, content: await readFile(f), mode: 0o600, owner: "root", group: "root", what: `ssh host key (${t})` });
        writes.push({ path: keyPath + ".pub", content: Buffer.from(pub + "\n"), mode: 0o644, owner: "root", group: "root", what: `ssh host public key (${t})` });
      }
      const certPath = keyPath + "-cert.pub";
      const newKey = writes.some((w) => w.path === keyPath);
      let fresh = false;
      if (!newKey) {
        try {
          const existing = await readFile(underRoot(root, certPath), "utf8");
          fresh = sshCertValidBefore(existing) * 1000 - now > cfg.renewBeforeSeconds * 1000;
        } catch {
          fresh = false; // missing or unreadable: sign anew
        }
      }
      if (fresh) {
        kept.push(certPath);
        continue;
      }
      const cert = (await sign(pub)).trim();
      writes.push({ path: certPath, content: Buffer.from(cert + "\n"), mode: 0o644, owner: "root", group: "root", what: `ssh host certificate (${t})` });
      renewed.push(certPath);
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  const dropin = cfg.keyTypes.map((t) => `HostCertificate ${keyFile(cfg.dir, t)}-cert.pub\n`).join("");
  writes.push({ path: SSHD_DROPIN, content: Buffer.from(`# Written by the Buckypaper enclaivelet: host certificates signed by the runtime's SSH CA.\n${dropin}`), mode: 0o644, owner: "root", group: "root", what: "sshd host certificate drop-in" });
  return { writes, renewed, kept };
}
