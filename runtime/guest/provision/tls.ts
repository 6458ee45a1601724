// TLS material from the bundle: Nitride issues a key and certificate from the workload's PKI role
// and seals them to the attested ephemeral key. They are written only when the current certificate
// is missing, does not match its key, or expires within the renewal window — so a reboot or the
// renewal timer rewrites nothing until renewal is due.
import { readFile } from "node:fs/promises";
import { createPrivateKey, createPublicKey, X509Certificate } from "node:crypto";
import type { TlsConfig } from "../config.js";
import { ProvisionError, underRoot, type FileWrite } from "./files.js";
import type { WireBundleTls } from "../../protocol/bundle.js";

/** The bundle's TLS part (runtime/protocol/bundle.ts). */
export type IssuedTls = WireBundleTls;

export async function currentCertStillGood(cfg: TlsConfig, root: string, now = Date.now()): Promise<boolean> {
  try {
    const cert = new X509Certificate(await readFile(underRoot(root, cfg.certPath)));
    const key = createPrivateKey(await readFile(underRoot(root, cfg.keyPath)));
    if (!cert.publicKey.equals(createPublicKey(key))) return false;
    return Date.parse(cert.validTo) - now > cfg.renewBeforeSeconds * 1000;
  } catch {
    return false;
  }
}

export async function planTls(
  cfg: TlsConfig,
  root: string,
  issued: IssuedTls | undefined,
  now = Date.now(),
): Promise<{ writes: FileWrite[]; renewed: boolean }> {
  if (await currentCertStillGood(cfg, root, now)) return { writes: [], renewed: false };
  if (!issued)
    throw new ProvisionError("tls", "the bundle has no TLS certificate (does the workload define secrets.pki?)");
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(issued.certificate);
    if (!cert.publicKey.equals(createPublicKey(createPrivateKey(issued.private_key))))
      throw new ProvisionError("tls", "the issued certificate does not match the issued key");
  } catch (e) {
    if (e instanceof ProvisionError) throw e;
    throw new ProvisionError("tls", "the bundle's TLS certificate or key does not parse");
  }
  const chain = issued.ca_chain?.length ? issued.ca_chain : issued.issuing_ca ? [issued.issuing_ca] : [];
  const owner = { owner: cfg.owner, group: cfg.group };
  const writes: FileWrite[] = [
    // A named group (e.g. the web server's) may read the key; nobody else.
    {
      path: cfg.keyPath,
      content: Buffer.from(issued.private_key.trim() + "\n"),
      mode: cfg.group ? 0o640 : 0o600,
      ...owner,
      what: "tls private key",
    },
    {
      path: cfg.certPath,
      content: Buffer.from(issued.certificate.trim() + "\n"),
      mode: 0o644,
      ...owner,
      what: "tls certificate",
    },
  ];
  if (cfg.chainPath && chain.length)
    writes.push({
      path: cfg.chainPath,
      content: Buffer.from(chain.map((c) => c.trim()).join("\n") + "\n"),
      mode: 0o644,
      ...owner,
      what: "tls issuing chain",
    });
  return { writes, renewed: true };
}
