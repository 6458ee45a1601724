// The runtime CA: created at `runtime init` (or dev start with --tls), it signs the listener's
// certificate. Guests pin the CA certificate's SHA-256 fingerprint instead of trusting the web PKI.
import "reflect-metadata";
import { createHash, webcrypto, X509Certificate, randomBytes } from "node:crypto";
import { isIP } from "node:net";
import * as x509 from "@peculiar/x509";
import { pemEncode } from "../../attestation/pem.js";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: "ECDSA", namedCurve: "P-384", hash: "SHA-384" } as const;

export interface CaMaterial {
  certPem: string;
  keyPem: string;
}
export interface ServerCert {
  certPem: string;
  keyPem: string;
}

async function keyPem(key: webcrypto.CryptoKey): Promise<string> {
  return pemEncode("PRIVATE KEY", new Uint8Array(await webcrypto.subtle.exportKey("pkcs8", key)));
}

async function importKey(pem: string): Promise<webcrypto.CryptoKey> {
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64");
  return await webcrypto.subtle.importKey("pkcs8", der, { name: "ECDSA", namedCurve: "P-384" }, false, ["sign"]);
}

const serial = () => "01" + randomBytes(15).toString("hex");

export async function createRuntimeCa(commonName = "Buckypaper runtime CA"): Promise<CaMaterial> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${commonName}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 10 * 365 * 86400_000),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString("pem") + "\n", keyPem: await keyPem(keys.privateKey) };
}

/** What a TLS server's leaf certificate carries, whoever signs it: not a CA, signing only, serverAuth,
 *  and the host names / IP addresses it answers for. */
export function serverLeafExtensions(names: string[]): x509.Extension[] {
  return [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
    new x509.SubjectAlternativeNameExtension(
      names.map((n) => (isIP(n) ? { type: "ip" as const, value: n } : { type: "dns" as const, value: n })),
    ),
  ];
}

/** Issues the listener certificate for the given host names / IP addresses. */
export async function issueServerCert(ca: CaMaterial, hosts: string[]): Promise<ServerCert> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await importKey(ca.keyPem);
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const names = [...new Set(hosts.length ? hosts : ["localhost", "127.0.0.1"])];
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${names[0]}`,
    issuer: caCert.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 397 * 86400_000),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: ALG,
    extensions: [...serverLeafExtensions(names), await x509.AuthorityKeyIdentifierExtension.create(caCert, false)],
  });
  return { certPem: cert.toString("pem") + "\n" + ca.certPem, keyPem: await keyPem(keys.privateKey) };
}

/** SHA-256 of the certificate's DER, lowercase hex — what guests pin. */
export function certFingerprint(pem: string): string {
  return createHash("sha256").update(new X509Certificate(pem).raw).digest("hex");
}
