// OpenSSH wire formats no library covers for us: public key lines, certificates
// (PROTOCOL.certkeys, *-cert-v01@openssh.com) signed by an Ed25519 CA, and the unencrypted
// "openssh-key-v1" private key container for generated Ed25519 host keys.
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from "node:crypto";

/** SSH "string": uint32 length ‖ bytes. */
function sshString(b: Uint8Array | string): Buffer {
  const body = typeof b === "string" ? Buffer.from(b, "utf8") : Buffer.from(b);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}
function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
function u64(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
}

export class SshFormatError extends Error {
  override name = "SshFormatError";
}

/** Reads consecutive SSH strings from a blob. */
export class SshReader {
  private off = 0;
  constructor(private readonly buf: Buffer) {}
  string(): Buffer {
    if (this.off + 4 > this.buf.length) throw new SshFormatError("truncated length");
    const n = this.buf.readUInt32BE(this.off);
    if (this.off + 4 + n > this.buf.length) throw new SshFormatError("truncated string");
    const out = this.buf.subarray(this.off + 4, this.off + 4 + n);
    this.off += 4 + n;
    return out;
  }
  get done(): boolean {
    return this.off === this.buf.length;
  }
  rest(): Buffer {
    return this.buf.subarray(this.off);
  }
}

export interface SshPublicKey {
  /** e.g. "ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa". */
  type: string;
  /** The full wire blob (string type ‖ key fields). */
  blob: Buffer;
  /** Key fields after the type string, as they appear in a certificate. */
  fields: Buffer;
}

const SUPPORTED = new Set([
  "ssh-ed25519",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "ssh-rsa",
]);

/** Parses an authorized_keys-style line "type base64 [comment]". */
export function parsePublicKeyLine(line: string): SshPublicKey {
  const parts = line.trim().split(/\s+/);
  if (parts.length < 2) throw new SshFormatError('expected "<type> <base64> [comment]"');
  const blob = Buffer.from(parts[1], "base64");
  const r = new SshReader(blob);
  const type = r.string().toString("utf8");
  if (type !== parts[0]) throw new SshFormatError(`key type "${parts[0]}" does not match the encoded type "${type}"`);
  if (!SUPPORTED.has(type)) throw new SshFormatError(`unsupported key type "${type}"`);
  const fields = r.rest();
  // Validate field structure (each key type is a sequence of strings/mpints).
  const fr = new SshReader(fields);
  const count = type === "ssh-ed25519" ? 1 : 2;
  for (let i = 0; i < count; i++) fr.string();
  if (!fr.done) throw new SshFormatError("trailing bytes after key fields");
  if (type === "ssh-ed25519" && new SshReader(fields).string().length !== 32)
    throw new SshFormatError("ed25519 key must be 32 bytes");
  return { type, blob, fields };
}

export function ed25519Raw(pub: KeyObject): Buffer {
  return Buffer.from(pub.export({ format: "jwk" }).x as string, "base64url");
}

export function ed25519PublicBlob(pub: KeyObject): Buffer {
  return Buffer.concat([sshString("ssh-ed25519"), sshString(ed25519Raw(pub))]);
}

export function publicKeyLine(blob: Buffer, comment?: string): string {
  const type = new SshReader(blob).string().toString("utf8");
  return `${type} ${blob.toString("base64")}${comment ? ` ${comment}` : ""}`;
}

export interface CertificateParams {
  subject: SshPublicKey;
  serial: bigint;
  certType: "user" | "host";
  keyId: string;
  principals: string[];
  validAfter: bigint;
  validBefore: bigint;
  criticalOptions: Record<string, string>;
  extensions: Record<string, string>;
  caPrivateKey: KeyObject;
}

/** Options/extensions: sorted by name; a non-empty value is itself wrapped in a string. */
function optionList(opts: Record<string, string>): Buffer {
  return Buffer.concat(
    Object.keys(opts)
      .sort()
      .map((k) => Buffer.concat([sshString(k), sshString(opts[k] === "" ? Buffer.alloc(0) : sshString(opts[k]))])),
  );
}

/** Builds and signs an OpenSSH certificate; returns the wire blob. */
export function signCertificate(p: CertificateParams): Buffer {
  const caBlob = ed25519PublicBlob(createPublicKey(p.caPrivateKey));
  const tbs = Buffer.concat([
    sshString(`${p.subject.type}-cert-v01@openssh.com`),
    sshString(randomBytes(32)),
    p.subject.fields,
    u64(p.serial),
    u32(p.certType === "user" ? 1 : 2),
    sshString(p.keyId),
    sshString(Buffer.concat(p.principals.map((x) => sshString(x)))),
    u64(p.validAfter),
    u64(p.validBefore),
    sshString(optionList(p.criticalOptions)),
    sshString(optionList(p.extensions)),
    sshString(""),
    sshString(caBlob),
  ]);
  const sig = sign(null, tbs, p.caPrivateKey);
  return Buffer.concat([tbs, sshString(Buffer.concat([sshString("ssh-ed25519"), sshString(sig)]))]);
}

/** A fresh Ed25519 key pair as (public line, OpenSSH private key PEM). */
export function generateEd25519(comment = ""): { publicKey: string; privateKey: string; keyObject: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const pubRaw = ed25519Raw(publicKey);
  const seed = Buffer.from(privateKey.export({ format: "jwk" }).d as string, "base64url");
  const pubBlob = ed25519PublicBlob(publicKey);
  const check = randomBytes(4);
  let priv = Buffer.concat([
    check,
    check,
    sshString("ssh-ed25519"),
    sshString(pubRaw),
    sshString(Buffer.concat([seed, pubRaw])),
    sshString(comment),
  ]);
  const pad: number[] = [];
  for (let i = 1; (priv.length + pad.length) % 8 !== 0; i++) pad.push(i);
  priv = Buffer.concat([priv, Buffer.from(pad)]);
  const body = Buffer.concat([
    Buffer.from("openssh-key-v1\0", "latin1"),
    sshString("none"),
    sshString("none"),
    sshString(""),
    u32(1),
    sshString(pubBlob),
    sshString(priv),
  ]);
  const b64 = body
    .toString("base64")
    .replace(/(.{70})/g, "$1\n")
    .replace(/\n$/, "");
  return {
    publicKey: publicKeyLine(pubBlob, comment || undefined),
    privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}\n-----END OPENSSH PRIVATE KEY-----\n`,
    keyObject: privateKey,
  };
}

/** Ed25519 private key from PKCS#8 PEM (how the CA key is stored). */
export function loadEd25519(pem: string): KeyObject {
  const k = createPrivateKey(pem);
  if (k.asymmetricKeyType !== "ed25519") throw new SshFormatError("CA private key must be Ed25519");
  return k;
}
