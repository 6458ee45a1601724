// SSH host identity: host keys are generated in the guest (the private keys never leave it); their
// public halves go with the bundle request (`host_keys`) and come back as host certificates signed
// by the runtime's SSH CA. sshd learns about them through a drop-in. Certificates are rewritten only
// for new keys or when the current one expires within the renewal window.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { SshConfig } from "../config.js";
import { mustRun, type CommandRunner } from "../exec.js";
import { ProvisionError, underRoot, type FileWrite } from "./files.js";
import type { WireBundleSsh } from "../../protocol/bundle.js";

export const SSHD_DROPIN = "/etc/ssh/sshd_config.d/50-buckypaper-host-cert.conf";

/** valid_before (seconds) of an OpenSSH certificate line `<type>-cert-v01@openssh.com <b64> …`. */
export function sshCertValidBefore(line: string): number {
  const blob = Buffer.from(line.trim().split(/\s+/)[1] ?? "", "base64");
  let off = 0;
  const u32 = () => {
    const v = blob.readUInt32BE(off);
    off += 4;
    return v;
  };
  const str = () => {
    const n = u32();
    const s = blob.subarray(off, off + n);
    off += n;
    if (off > blob.length) throw new RangeError("truncated");
    return s;
  };
  const type = str().toString("latin1");
  str(); // nonce
  const fields = type.startsWith("ssh-ed25519") ? 1 : type.startsWith("ecdsa-") || type.startsWith("ssh-rsa") ? 2 : -1;
  if (fields < 0) throw new ProvisionError("ssh", `unsupported certificate type ${type}`);
  for (let i = 0; i < fields; i++) str();
  off += 8 + 4; // serial, cert type
  str(); // key id
  str(); // principals
  off += 8; // valid_after
  return Number(blob.readBigUInt64BE(off));
}

function keyFile(dir: string, t: string): string {
  return path.posix.join(dir, `ssh_host_${t}_key`);
}

/** Key line without its comment, for matching. */
const keyId = (line: string) => line.trim().split(/\s+/).slice(0, 2).join(" ");

export interface SshHostKeys {
  keys: { type: string; publicKey: string; generated: boolean }[];
  /** Writes for newly generated keys (staged with everything else). */
  writes: FileWrite[];
}

/** Loads the host keys, generating missing ones (in memory/tmp only until the commit). */
export async function prepareHostKeys(cfg: SshConfig, root: string, runner: CommandRunner): Promise<SshHostKeys> {
  const out: SshHostKeys = { keys: [], writes: [] };
  const tmp = await mkdtemp(path.join(tmpdir(), "enclaivelet-ssh-"));
  try {
    for (const t of cfg.keyTypes) {
      const kp = keyFile(cfg.dir, t);
      try {
        await readFile(underRoot(root, kp)); // both halves must exist
        out.keys.push({
          type: t,
          publicKey: keyId(await readFile(underRoot(root, kp + ".pub"), "utf8")),
          generated: false,
        });
        continue;
      } catch {
        /* generate below */
      }
      const f = path.join(tmp, t);
      await mustRun(runner, [
        "ssh-keygen",
        "-q",
        "-t",
        t,
        ...(t === "rsa" ? ["-b", "3072"] : []),
        "-N",
        "",
        "-C",
        "",
        "-f",
        f,
      ]);
      const pub = keyId(await readFile(f + ".pub", "utf8"));
      out.keys.push({ type: t, publicKey: pub, generated: true });
      out.writes.push({
        path: kp,
        content: await readFile(f),
        mode: 0o600,
        owner: "root",
        group: "root",
        what: `ssh host key (${t})`,
      });
      out.writes.push({
        path: kp + ".pub",
        content: Buffer.from(pub + "\n"),
        mode: 0o644,
        owner: "root",
        group: "root",
        what: `ssh host public key (${t})`,
      });
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return out;
}

/** The bundle's SSH part (runtime/protocol/bundle.ts). */
export type BundleSsh = WireBundleSsh;

export async function planSsh(
  cfg: SshConfig,
  root: string,
  keys: SshHostKeys,
  bundle: BundleSsh | undefined,
  now = Date.now(),
): Promise<{ writes: FileWrite[]; renewed: string[]; kept: string[] }> {
  const writes = [...keys.writes];
  const renewed: string[] = [];
  const kept: string[] = [];
  for (const k of keys.keys) {
    const certPath = keyFile(cfg.dir, k.type) + "-cert.pub";
    if (!k.generated) {
      try {
        const existing = await readFile(underRoot(root, certPath), "utf8");
        if (sshCertValidBefore(existing) * 1000 - now > cfg.renewBeforeSeconds * 1000) {
          kept.push(certPath);
          continue;
        }
      } catch {
        /* missing or unreadable: take the new one */
      }
    }
    const cert = bundle?.host_certificates?.find(
      (c) => c.public_key && keyId(c.public_key) === k.publicKey,
    )?.signed_key;
    if (!cert)
      throw new ProvisionError(
        "ssh",
        `the bundle has no host certificate for the ${k.type} host key (does the workload define secrets.ssh?)`,
      );
    writes.push({
      path: certPath,
      content: Buffer.from(cert.trim() + "\n"),
      mode: 0o644,
      owner: "root",
      group: "root",
      what: `ssh host certificate (${k.type})`,
    });
    renewed.push(certPath);
  }
  const dropin = keys.keys.map((k) => `HostCertificate ${keyFile(cfg.dir, k.type)}-cert.pub\n`).join("");
  writes.push({
    path: SSHD_DROPIN,
    content: Buffer.from(
      `# Written by the Buckypaper enclaivelet: host certificates signed by the runtime's SSH CA.\n${dropin}`,
    ),
    mode: 0o644,
    owner: "root",
    group: "root",
    what: "sshd host certificate drop-in",
  });
  return { writes, renewed, kept };
}
