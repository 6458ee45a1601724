// TLS material: an ECDSA P-256 key generated in the guest and a CSR signed by the runtime's PKI role
// (Vault `pki/sign/<role>`), so the private key never leaves the VM. Re-issued when the current
// certificate is missing, does not match the key, or expires within the renewal window.
import "reflect-metadata";
import { readFile } from "node:fs/promises";
import { createPrivateKey, createPublicKey, generateKeyPairSync, webcrypto, X509Certificate } from "node:crypto";
import * as x509 from "@peculiar/x509";
import type { TlsConfig } from "../config.js";
import { ProvisionError, underRoot, type FileWrite } from "./files.js";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export interface SignedCert {
  certificate: string;
  issuing_ca?: string;
  ca_chain?: string[];
}

export type SignCsr = (csrPem: string) => Promise<SignedCert>;

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

export async function planTls(cfg: TlsConfig, root: string, sign: SignCsr, now = Date.now()): Promise<{ writes: FileWrite[]; renewed: boolean }> {
  if (await currentCertStillGood(cfg, root, now)) return { writes: [], renewed: false };
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const pkcs8 = privateKey.export({ type: "pkcs8", format: "der" });
  const pubDer = createPublicKey(privateKey).export({ type: "spki", format: "der" });
  const keys = {
    privateKey: await webcrypto.subtle.importKey("pkcs8", pkcs8, alg, false, ["sign"]),
    publicKey: await webcrypto.subtle.importKey("spki", pubDer, alg, true, ["verify"]),
  } as webcrypto.CryptoKeyPair;
  const sans = [...new Set([cfg.commonName, ...cfg.altNames])];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${cfg.commonName.replace(/([,+"\\<>;=])/g, "\\$1")}`,
    keys,
    signingAlgorithm: alg,
    extensions: [new x509.SubjectAlternativeNameExtension(sans.map((n) => (/^[0-9.:]+$/.test(n) ? { type: "ip" as const, value: n } : { type: "dns" as const, value: n })))],
  });
  const signed = await sign(csr.toString("pem"));
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(signed.certificate);
  } catch {
    throw new ProvisionError("tls", "the PKI answer holds no parseable certificate");
  }
  if (!cert.publicKey.equals(createPublicKey(privateKey))) throw new ProvisionError("tls", "the issued certificate is not for our key");
  const keyPem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const chain = signed.ca_chain?.length ? signed.ca_chain : signed.issuing_ca ? [signed.issuing_ca] : [];
  const owner = { owner: cfg.owner, group: cfg.group };
  const writes: FileWrite[] = [
    { path: cfg.keyPath, content: Buffer.from(keyPem), mode: 0o600, ...owner, what: "tls private key" },
    { path: cfg.certPath, content: Buffer.from(signed.certificate.trim() + "\n"), mode: 0o644, ...owner, what: "tls certificate" },
  ];
  if (cfg.chainPath && chain.length) writes.push({ path: cfg.chainPath, content: Buffer.from(chain.map((c) => c.trim()).join("\n") + "\n"), mode: 0o644, ...owner, what: "tls issuing chain" });
  return { writes, renewed: true };
}
