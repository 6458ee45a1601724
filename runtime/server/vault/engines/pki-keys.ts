// Key generation and (de)serialisation for the PKI engine: WebCrypto keys for @peculiar/x509 signing,
// PKCS#8 for storage, and Vault's output formats (SEC1 "EC PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY").
import { createPrivateKey, webcrypto } from "node:crypto";

// The DOM lib is not loaded (Node only): name WebCrypto types through node:crypto.
export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;
export type SignAlg = webcrypto.Algorithm | webcrypto.EcdsaParams;
import { LogicalError } from "../backend.js";

export type KeyType = "ec" | "rsa" | "ed25519";
export interface KeySpec {
  type: KeyType;
  bits: number;
}

type Alg = webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams | { name: "Ed25519" };

export function keySpec(typeValue: unknown, bitsValue: unknown): KeySpec {
  const type = (typeValue ?? "ec") as string;
  const bits = bitsValue === undefined || bitsValue === null || bitsValue === "" ? 0 : Number(bitsValue);
  if (!Number.isInteger(bits)) throw new LogicalError(400, "key_bits: must be an integer");
  switch (type) {
    case "ec": {
      const b = bits || 256;
      if (b !== 256 && b !== 384) throw new LogicalError(400, "key_bits: ec keys must be 256 or 384");
      return { type, bits: b };
    }
    case "rsa": {
      const b = bits || 2048;
      if (![2048, 3072, 4096].includes(b)) throw new LogicalError(400, "key_bits: rsa keys must be 2048, 3072 or 4096");
      return { type, bits: b };
    }
    case "ed25519":
      return { type, bits: 0 };
    default:
      throw new LogicalError(400, `key_type: unsupported "${type}" (ec, rsa, ed25519)`);
  }
}

export function algorithmFor(spec: KeySpec): Alg {
  if (spec.type === "ec") return { name: "ECDSA", namedCurve: spec.bits === 384 ? "P-384" : "P-256" };
  if (spec.type === "rsa")
    return {
      name: "RSASSA-PKCS1-v1_5",
      modulusLength: spec.bits,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    };
  return { name: "Ed25519" };
}

/** The signature algorithm a key of this spec signs certificates with. */
export function signingAlgorithm(spec: KeySpec): SignAlg {
  if (spec.type === "ec")
    return { name: "ECDSA", hash: spec.bits === 384 ? "SHA-384" : "SHA-256" } as webcrypto.EcdsaParams;
  if (spec.type === "rsa") return { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } as webcrypto.Algorithm;
  return { name: "Ed25519" };
}

export async function generateKeyPair(spec: KeySpec): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(algorithmFor(spec), true, ["sign", "verify"])) as CryptoKeyPair;
}

export async function exportPkcs8(key: CryptoKey): Promise<Buffer> {
  return Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
}

export async function importSigningKey(pkcs8: Buffer, spec: KeySpec): Promise<CryptoKey> {
  return webcrypto.subtle.importKey("pkcs8", pkcs8, algorithmFor(spec), false, ["sign"]);
}

/** PEM in Vault's default form for the type (SEC1 for EC, PKCS#1 for RSA, PKCS#8 for Ed25519), or PKCS#8. */
export function privateKeyPem(pkcs8: Buffer, spec: KeySpec, format: "default" | "pkcs8"): string {
  const k = createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
  if (format === "pkcs8" || spec.type === "ed25519") return k.export({ format: "pem", type: "pkcs8" }) as string;
  return k.export({ format: "pem", type: spec.type === "ec" ? "sec1" : "pkcs1" }) as string;
}

/** Infers a KeySpec from a public key's WebCrypto algorithm (for CSR signing checks). */
export function specOfAlgorithm(
  alg: webcrypto.KeyAlgorithm & { namedCurve?: string; modulusLength?: number },
): KeySpec {
  if (alg.name === "ECDSA")
    return { type: "ec", bits: alg.namedCurve === "P-384" ? 384 : alg.namedCurve === "P-521" ? 521 : 256 };
  if (alg.name === "RSASSA-PKCS1-v1_5" || alg.name === "RSA-PSS") return { type: "rsa", bits: alg.modulusLength ?? 0 };
  if (alg.name === "Ed25519") return { type: "ed25519", bits: 0 };
  throw new LogicalError(400, `csr: unsupported public key algorithm ${alg.name}`);
}
