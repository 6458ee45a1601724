// A simulated Google EK/AK CA for tests and the local stack: issues AK certificates shaped like GCE's (root →
// leaf, key usage digitalSignature, the instance-identity extension 1.3.6.1.4.1.11129.2.1.21) for a vTPM AK's
// public key. Trusted only where a configuration lists its root (trust.gce.simulatedAkRoots).
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { webcrypto, type KeyObject } from "node:crypto";
import { GCE_INSTANCE_INFO_OID } from "../attestation/gce/ak-cert.js";

const { subtle } = webcrypto;

export interface SimulatedGceInstance {
  zone: string;
  projectNumber: bigint;
  projectId: string;
  instanceId: bigint;
  instanceName: string;
  isProduction?: boolean;
}

const tlv = (tag: number, v: Buffer): Buffer => {
  const len =
    v.length < 0x80
      ? Buffer.from([v.length])
      : v.length < 0x100
        ? Buffer.from([0x81, v.length])
        : Buffer.from([0x82, v.length >> 8, v.length & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, v]);
};
const utf8 = (s: string) => tlv(0x0c, Buffer.from(s, "utf8"));
const int = (n: bigint) => {
  let h = n.toString(16);
  if (h.length % 2) h = "0" + h;
  let b = Buffer.from(h, "hex");
  if (b[0] & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return tlv(0x02, b);
};

/** DER of the instance-identity extension value (go-tpm-tools server/verify.go gceInstanceInfo). */
export function encodeGceInstanceInfo(i: SimulatedGceInstance): Buffer {
  const props = tlv(
    0xa0,
    tlv(
      0x30,
      Buffer.concat([tlv(0xa0, int(0n)), tlv(0xa1, tlv(0x01, Buffer.from([i.isProduction === false ? 0 : 0xff])))]),
    ),
  );
  return tlv(
    0x30,
    Buffer.concat([
      utf8(i.zone),
      int(i.projectNumber),
      utf8(i.projectId),
      int(i.instanceId),
      utf8(i.instanceName),
      props,
    ]),
  );
}

export interface GceAkCaSimulator {
  rootPem: string;
  rootDer: Uint8Array;
  /** An AK certificate (DER) for `ak` (a node public KeyObject, RSA or EC P-256). */
  issue(ak: KeyObject, instance: SimulatedGceInstance): Promise<Uint8Array>;
}

export async function createGceAkCaSimulator(): Promise<GceAkCaSimulator> {
  const alg = {
    name: "RSASSA-PKCS1-v1_5",
    modulusLength: 2048,
    publicExponent: new Uint8Array([1, 0, 1]),
    hash: "SHA-256",
  };
  const keys = (await subtle.generateKey(alg, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const notBefore = new Date(Date.now() - 24 * 3600 * 1000);
  const notAfter = new Date(notBefore.getTime() + 30 * 365 * 24 * 3600 * 1000);
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "CN=EK/AK CA Root (SIMULATED), O=buckypaper test",
    notBefore,
    notAfter,
    keys,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
    ],
  });
  let serial = 2;
  return {
    rootPem: root.toString("pem"),
    rootDer: new Uint8Array(root.rawData),
    async issue(ak, instance) {
      const spki = ak.export({ type: "spki", format: "der" });
      const isEc = ak.asymmetricKeyType === "ec";
      const publicKey = await subtle.importKey(
        "spki",
        spki,
        isEc ? { name: "ECDSA", namedCurve: "P-256" } : { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
        true,
        ["verify"],
      );
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: (serial++).toString(16).padStart(2, "0"),
        subject: `L=${instance.zone}, O=Google Compute Engine, OU=${instance.projectId}, CN=${instance.instanceId}`,
        issuer: root.subject,
        notBefore,
        notAfter,
        publicKey,
        signingKey: keys.privateKey,
        signingAlgorithm: alg,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.Extension(GCE_INSTANCE_INFO_OID, false, new Uint8Array(encodeGceInstanceInfo(instance))),
        ],
      });
      return new Uint8Array(cert.rawData);
    },
  };
}
