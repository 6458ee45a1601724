// A customer's Secure Boot db key pair for tests: a self-signed RSA certificate made by openssl (as a customer would
// make one), its key beside it, and the SHA-256 of the certificate's DER — what `secureBoot.authorities` lists.
import { createHash, X509Certificate } from "node:crypto";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";

export interface DbKeyPair {
  key: string;
  cert: string;
  /** SHA-256 (hex) of the certificate's DER. */
  sha256: string;
}

/** Writes `<cn>.key` and `<cn>.crt` (the CN with non-word characters as dashes) into `dir`. Needs openssl. */
export function dbKeyPair(dir: string, cn: string, days = 30): DbKeyPair {
  const base = path.join(dir, cn.replace(/\W/g, "-"));
  const key = `${base}.key`;
  const cert = `${base}.crt`;
  const r = spawnSync("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    String(days),
    "-subj",
    `/CN=${cn}/`,
  ]);
  if (r.status !== 0) throw new Error(`openssl: ${r.stderr}`);
  const sha256 = createHash("sha256")
    .update(new X509Certificate(readFileSync(cert)).raw)
    .digest("hex");
  return { key, cert, sha256 };
}
