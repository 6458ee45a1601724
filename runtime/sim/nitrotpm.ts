// A simulated NitroTPM attestation-document issuer for tests and the local stack: the same COSE_Sign1 / CBOR
// layout AWS produces (module_id, digest, timestamp, nitrotpm_pcrs, certificate, cabundle, public_key,
// user_data, nonce), signed ES384 by a leaf under a TEST root (root → intermediate → leaf). Documents it makes
// verify only when the verifier lists its root in trust.aws.testRoots. Never imported by server code.
import "reflect-metadata";
import { webcrypto, randomBytes, sign, createPrivateKey } from "node:crypto";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: "ECDSA", namedCurve: "P-384", hash: "SHA-384" } as const;

type Item = number | string | Uint8Array | null | Item[] | Map<string | number, Item>;

function head(major: number, n: number): Buffer {
  if (n < 24) return Buffer.from([(major << 5) | n]);
  if (n < 0x100) return Buffer.from([(major << 5) | 24, n]);
  if (n < 0x10000) return Buffer.from([(major << 5) | 25, n >> 8, n & 0xff]);
  if (n < 0x100000000) {
    const b = Buffer.alloc(5);
    b[0] = (major << 5) | 26;
    b.writeUInt32BE(n, 1);
    return b;
  }
  const b = Buffer.alloc(9);
  b[0] = (major << 5) | 27;
  b.writeBigUInt64BE(BigInt(n), 1);
  return b;
}

/** A small CBOR encoder for building documents (the verifier's decoder lives in runtime/attestation/aws). */
export function cbor(v: Item): Buffer {
  if (v === null) return Buffer.from([0xf6]);
  if (typeof v === "number") return v >= 0 ? head(0, v) : head(1, -1 - v);
  if (typeof v === "string") {
    const t = Buffer.from(v, "utf8");
    return Buffer.concat([head(3, t.length), t]);
  }
  if (v instanceof Uint8Array) return Buffer.concat([head(2, v.length), v]);
  if (Array.isArray(v)) return Buffer.concat([head(4, v.length), ...v.map(cbor)]);
  return Buffer.concat([head(5, v.size), ...[...v].flatMap(([k, x]) => [cbor(k), cbor(x)])]);
}

export interface NitroDocumentFields {
  moduleId?: string;
  timestamp?: number;
  /** PCR index → SHA-384 value. */
  pcrs: Record<number, Uint8Array>;
  publicKey?: Uint8Array;
  userData?: Uint8Array;
  nonce?: Uint8Array;
  /** Replace/extend payload fields verbatim (negative tests). */
  extra?: Record<string, Item>;
}

export interface SimulatedNitroPki {
  /** Root certificate DER: put it in trust.aws.testRoots. */
  rootDer: Uint8Array;
  /** Signs a document as a NitroTPM would answer nitro-tpm-attest. */
  document(f: NitroDocumentFields): Buffer;
}

const serial = () => "01" + randomBytes(15).toString("hex");

async function cert(
  subject: string,
  issuer: { name: string; key: webcrypto.CryptoKey } | undefined,
  keys: webcrypto.CryptoKeyPair,
  ca: boolean,
  notBefore: Date,
  notAfter: Date,
  keyUsage?: number | null,
): Promise<x509.X509Certificate> {
  const usage =
    keyUsage === undefined
      ? ca
        ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign
        : x509.KeyUsageFlags.digitalSignature
      : keyUsage;
  const extensions: x509.Extension[] = [new x509.BasicConstraintsExtension(ca, ca ? 2 : undefined, true)];
  if (usage !== null) extensions.push(new x509.KeyUsagesExtension(usage, true));
  if (!issuer)
    return x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: subject,
      notBefore,
      notAfter,
      keys,
      signingAlgorithm: ALG,
      extensions,
    });
  return x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject,
    issuer: issuer.name,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: issuer.key,
    signingAlgorithm: ALG,
    extensions,
  });
}

/**
 * A test root → intermediate → leaf hierarchy; the leaf is valid `leafHours` around `now` (AWS: ~3 h).
 * `keyUsage` overrides a certificate's keyUsage bits (null: no keyUsage extension) for negative tests.
 */
export async function simulatedNitroPki(
  opts: { now?: Date; leafHours?: number; keyUsage?: { intermediate?: number | null; leaf?: number | null } } = {},
): Promise<SimulatedNitroPki> {
  const now = opts.now ?? new Date();
  const gen = async () =>
    (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const [rk, ik, lk] = [await gen(), await gen(), await gen()];
  const day = 86400_000;
  const root = await cert(
    "CN=test.nitro-enclaves, O=Buckypaper test",
    undefined,
    rk,
    true,
    new Date(now.getTime() - day),
    new Date(now.getTime() + 3650 * day),
  );
  const inter = await cert(
    "CN=test-zonal.nitro-enclaves",
    { name: root.subject, key: rk.privateKey },
    ik,
    true,
    new Date(now.getTime() - day),
    new Date(now.getTime() + 30 * day),
    opts.keyUsage?.intermediate,
  );
  const h = (opts.leafHours ?? 3) * 3600_000;
  const leaf = await cert(
    "CN=i-0123456789abcdef0-tpm.test",
    { name: inter.subject, key: ik.privateKey },
    lk,
    false,
    new Date(now.getTime() - h / 2),
    new Date(now.getTime() + h / 2),
    opts.keyUsage?.leaf,
  );
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", lk.privateKey));
  const leafKey = createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
  return {
    rootDer: new Uint8Array(root.rawData),
    document(f) {
      const payload = new Map<string, Item>([
        ["module_id", f.moduleId ?? "i-0123456789abcdef0-tpm0123456789abcdef"],
        ["digest", "SHA384"],
        ["timestamp", f.timestamp ?? now.getTime()],
        ["nitrotpm_pcrs", new Map(Object.entries(f.pcrs).map(([k, v]) => [Number(k), v] as [number, Item]))],
        ["certificate", new Uint8Array(leaf.rawData)],
        ["cabundle", [new Uint8Array(root.rawData), new Uint8Array(inter.rawData)]],
        ["public_key", f.publicKey ?? null],
        ["user_data", f.userData ?? null],
        ["nonce", f.nonce ?? null],
      ]);
      for (const [k, v] of Object.entries(f.extra ?? {})) payload.set(k, v);
      const prot = cbor(new Map([[1, -35]]));
      const body = cbor(payload);
      const tbs = cbor(["Signature1", prot, new Uint8Array(0), body]);
      const sig = sign("sha384", tbs, { key: leafKey, dsaEncoding: "ieee-p1363" });
      return cbor([prot, new Map(), body, sig]);
    },
  };
}
