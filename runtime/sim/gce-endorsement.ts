// A simulated Google launch-endorsement signer for tests and the local stack: a self-signed "GCE-cc-tcb-root"
// and a signing key, producing VMLaunchEndorsement bytes in exactly the wire format Google publishes
// (runtime/attestation/gce/abi.ts). Its root is trusted only where a configuration lists it (trust.gce.tcbRoots);
// nothing about it is Google's.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { constants, createPrivateKey, sign, webcrypto } from "node:crypto";

const { subtle } = webcrypto;

/** Protobuf wire writer (the test side of gce/proto.ts). */
export const pb = {
  varint(v: number | bigint): Buffer {
    let n = BigInt(v);
    const out: number[] = [];
    do {
      let byte = Number(n & 0x7fn);
      n >>= 7n;
      if (n) byte |= 0x80;
      out.push(byte);
    } while (n);
    return Buffer.from(out);
  },
  tag: (field: number, wire: number) => pb.varint((field << 3) | wire),
  uint: (field: number, v: number | bigint) =>
    BigInt(v) === 0n ? Buffer.alloc(0) : Buffer.concat([pb.tag(field, 0), pb.varint(v)]),
  bytes: (field: number, b: Uint8Array | string) => {
    const x = typeof b === "string" ? Buffer.from(b) : Buffer.from(b);
    return Buffer.concat([pb.tag(field, 2), pb.varint(x.length), x]);
  },
};

export interface SimulatedGolden {
  timestamp?: Date;
  clSpec?: bigint;
  commit?: Uint8Array;
  /** SHA-384 of the "UEFI" (any 48 bytes). */
  digest?: Uint8Array;
  sevSnp?: {
    svn: number;
    measurements: Record<number, Uint8Array | string>;
    familyId?: Uint8Array;
    imageId?: Uint8Array;
    policy?: bigint;
  };
  tdx?: { svn: number; measurements: { ramGib?: number; earlyAccept?: boolean; mrtd: Uint8Array | string }[] };
}

export interface GceEndorsementSimulator {
  /** The simulated root (PEM), what a test configures as trust.gce.tcbRoots. */
  rootPem: string;
  rootDer: Uint8Array;
  /** Serialized VMGoldenMeasurement (before signing), exposed so tests can mutate and re-sign. */
  golden(g: SimulatedGolden): Buffer;
  /** Signs serialized golden bytes into a VMLaunchEndorsement. */
  endorse(golden: Uint8Array): Buffer;
  /** golden + endorse. */
  sign(g: SimulatedGolden): Buffer;
}

const hexOr = (v: Uint8Array | string) => (typeof v === "string" ? Buffer.from(v, "hex") : Buffer.from(v));

export async function createGceEndorsementSimulator(
  opts: { notBefore?: Date; years?: number } = {},
): Promise<GceEndorsementSimulator> {
  const alg = {
    name: "RSASSA-PKCS1-v1_5",
    modulusLength: 2048,
    publicExponent: new Uint8Array([1, 0, 1]),
    hash: "SHA-256",
  };
  const [rootKeys, signKeys] = (await Promise.all([
    subtle.generateKey(alg, true, ["sign", "verify"]),
    subtle.generateKey(alg, true, ["sign", "verify"]),
  ])) as webcrypto.CryptoKeyPair[];
  const notBefore = opts.notBefore ?? new Date(Date.now() - 24 * 3600 * 1000);
  const notAfter = new Date(notBefore.getTime() + (opts.years ?? 10) * 365.25 * 24 * 3600 * 1000);
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "CN=GCE-cc-tcb-root (SIMULATED), O=buckypaper test",
    notBefore,
    notAfter,
    keys: rootKeys,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: "02",
    subject: "CN=gce-uefi-signer (SIMULATED), O=buckypaper test",
    issuer: root.subject,
    notBefore,
    notAfter,
    publicKey: signKeys.publicKey,
    signingKey: rootKeys.privateKey,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    ],
  });
  const pkcs8 = Buffer.from(await subtle.exportKey("pkcs8", signKeys.privateKey));
  const signer = createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
  const rootPem = root.toString("pem");
  const golden = (g: SimulatedGolden): Buffer => {
    const ts = g.timestamp ?? new Date();
    const parts: Buffer[] = [
      pb.bytes(
        1,
        Buffer.concat([pb.uint(1, Math.floor(ts.getTime() / 1000)), pb.uint(2, (ts.getTime() % 1000) * 1e6)]),
      ),
      pb.uint(2, g.clSpec ?? 0n),
      ...(g.commit ? [pb.bytes(3, g.commit)] : []),
      pb.bytes(4, new Uint8Array(leaf.rawData)),
      pb.bytes(5, g.digest ?? Buffer.alloc(48, 0x5a)),
      pb.bytes(6, rootPem),
    ];
    if (g.sevSnp) {
      const s = g.sevSnp;
      const entries = Object.entries(s.measurements).map(([k, v]) =>
        pb.bytes(2, Buffer.concat([pb.uint(1, Number(k)), pb.bytes(2, hexOr(v))])),
      );
      parts.push(
        pb.bytes(
          7,
          Buffer.concat([
            pb.uint(1, s.svn),
            ...entries,
            pb.bytes(3, s.familyId ?? Buffer.from("f73a6949e8f3473b9553e40e056fa3a2", "hex")),
            pb.bytes(4, s.imageId ?? Buffer.alloc(16, 1)),
            pb.uint(5, s.policy ?? 0x70000n),
          ]),
        ),
      );
    }
    if (g.tdx)
      parts.push(
        pb.bytes(
          8,
          Buffer.concat([
            pb.uint(1, g.tdx.svn),
            ...g.tdx.measurements.map((m) =>
              pb.bytes(
                2,
                Buffer.concat([
                  pb.uint(1, m.ramGib ?? 0),
                  pb.uint(2, m.earlyAccept ? 1 : 0),
                  pb.bytes(3, hexOr(m.mrtd)),
                ]),
              ),
            ),
          ]),
        ),
      );
    return Buffer.concat(parts);
  };
  const endorse = (serialized: Uint8Array): Buffer => {
    const sig = sign("sha256", serialized, { key: signer, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
    return Buffer.concat([pb.bytes(1, serialized), pb.bytes(2, sig)]);
  };
  return {
    rootPem,
    rootDer: new Uint8Array(root.rawData),
    golden,
    endorse,
    sign: (g) => endorse(golden(g)),
  };
}
