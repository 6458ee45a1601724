// TPM2_MakeCredential in software (TCG TPM 2.0 Library Part 1 §24 "Credential Protection", Part 3
// TPM2_MakeCredential / TPM2_ActivateCredential): the verifier encrypts a secret to an endorsement key (EK) for
// one object Name (the AK's), and only the TPM that holds that EK's private key AND has an object of that Name
// loaded can open it (TPM2_ActivateCredential). No maintained JS library offers this format, so it is written
// here with node:crypto, step by step as the spec gives it:
//   seed           RSA EK: random, |seed| = digest size of the EK's nameAlg, sent RSA-OAEP(nameAlg, label "IDENTITY\0")
//                  ECC EK: KDFe(nameAlg, Z, "IDENTITY", ephemeral.x, EK.x) with Z = ECDH(ephemeral, EK).x (Part 1 §11.4.10.3),
//                  sent as the ephemeral TPMS_ECC_POINT
//   symKey         KDFa(nameAlg, seed, "STORAGE", Name(AK), "", EK symmetric keyBits)
//   encIdentity    CFB(EK's symmetric cipher, symKey, IV = 0) over TPM2B_DIGEST(credential)
//   HMACkey        KDFa(nameAlg, seed, "INTEGRITY", "", "", digest size)
//   outerHMAC      HMAC(nameAlg, HMACkey, encIdentity ‖ Name(AK))
//   credentialBlob TPM2B_ID_OBJECT = size ‖ TPM2B_DIGEST(outerHMAC) ‖ encIdentity
//   secret         TPM2B_ENCRYPTED_SECRET (the OAEP ciphertext, or the marshalled ephemeral point)
// The TPM refuses activation (TPM_RC_INTEGRITY) when the HMAC does not match, i.e. when the Name it has loaded is
// not the one the credential was made for, or when any byte of the blob changed.
import { constants, createCipheriv, createECDH, createHash, createHmac, publicEncrypt, randomBytes } from "node:crypto";
import { HASH_ALGS, TPMA_OBJECT, parseTpmPublic, type HashName, type TpmPublic } from "./abi.js";

export class CredentialError extends Error {
  override name = "CredentialError";
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

const TPM_ALG_AES = 0x0006;
const TPM_ALG_CFB = 0x0043;
const ECC_CURVES: Record<string, { ecdh: string; bytes: number }> = {
  "P-256": { ecdh: "prime256v1", bytes: 32 },
  "P-384": { ecdh: "secp384r1", bytes: 48 },
  "P-521": { ecdh: "secp521r1", bytes: 66 },
};

const u16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const tpm2b = (b: Uint8Array) => Buffer.concat([u16(b.length), b]);
/** A label as the spec uses it: the ASCII string and its terminating NUL octet. */
const label = (s: string) => Buffer.from(`${s}\0`, "ascii");

const digestBytes = (h: HashName) => Object.values(HASH_ALGS).find((a) => a.name === h)!.bytes;

/** KDFa (Part 1 §11.4.10.2, SP 800-108 counter mode with HMAC): `bits` of key from `key`. */
export function kdfa(
  hash: HashName,
  key: Uint8Array,
  use: string,
  contextU: Uint8Array,
  contextV: Uint8Array,
  bits: number,
): Buffer {
  const out: Buffer[] = [];
  let have = 0;
  for (let i = 1; have * 8 < bits; i++) {
    const block = createHmac(hash, key)
      .update(u32(i))
      .update(label(use))
      .update(contextU)
      .update(contextV)
      .update(u32(bits))
      .digest();
    out.push(block);
    have += block.length;
  }
  const k = Buffer.concat(out).subarray(0, Math.ceil(bits / 8));
  if (bits % 8) k[0] &= 0xff >> (8 - (bits % 8));
  return k;
}

/** KDFe (Part 1 §11.4.10.3, SP 800-56A concatenation KDF): `bits` of key from the ECDH x coordinate `z`. */
export function kdfe(
  hash: HashName,
  z: Uint8Array,
  use: string,
  partyU: Uint8Array,
  partyV: Uint8Array,
  bits: number,
): Buffer {
  const out: Buffer[] = [];
  let have = 0;
  for (let i = 1; have * 8 < bits; i++) {
    const block = createHash(hash).update(u32(i)).update(z).update(label(use)).update(partyU).update(partyV).digest();
    out.push(block);
    have += block.length;
  }
  const k = Buffer.concat(out).subarray(0, Math.ceil(bits / 8));
  if (bits % 8) k[0] &= 0xff >> (8 - (bits % 8));
  return k;
}

/**
 * The EK as TPM2_MakeCredential needs it: a restricted decryption key (RSA or ECC) with an AES-CFB symmetric
 * definition — what every TCG EK template (and GetInstanceTpmEkPub) gives. Names the field that does not fit.
 */
export function credentialEk(tpmt: Uint8Array, where = "ek_public"): TpmPublic {
  let ek: TpmPublic;
  try {
    ek = parseTpmPublic(tpmt, { sized: false, where });
  } catch (e) {
    throw new CredentialError(where, `is not a TPMT_PUBLIC: ${(e as Error).message}`);
  }
  const a = ek.objectAttributes;
  if (!(a & TPMA_OBJECT.restricted) || !(a & TPMA_OBJECT.decrypt) || a & TPMA_OBJECT.sign)
    throw new CredentialError(
      `${where}.objectAttributes`,
      "must be a restricted decryption key (restricted=1, decrypt=1, sign=0), as an EK is",
    );
  const s = ek.symmetric;
  if (!s || s.alg !== TPM_ALG_AES || s.mode !== TPM_ALG_CFB || ![128, 192, 256].includes(s.keyBits))
    throw new CredentialError(
      `${where}.parameters.symmetric`,
      "must be AES-128/192/256 in CFB mode (the EK templates' storage cipher)",
    );
  return ek;
}

/**
 * Can this AK's Name be trusted to stand for a key inside the TPM that activates the credential? The TPM
 * activates for any loaded object whose ADMIN role is satisfied, including a public-only copy loaded with
 * TPM2_LoadExternal — so a software TPM's AK whose ADMIN role is a policy anyone can satisfy could be "activated"
 * by the real TPM. With adminWithPolicy CLEAR the ADMIN role needs the authValue, which a public-only object does
 * not have (TPM_RC_AUTH_UNAVAILABLE); with fixedTPM SET the key cannot have been imported or loaded with its
 * private part from outside (TPM2_Import / LoadExternal refuse fixedTPM). Restricted signing: what makes the
 * quote trustworthy at all.
 */
export function credentialAkProblems(ak: TpmPublic): string[] {
  const a = ak.objectAttributes;
  const problems: string[] = [];
  if (!(a & TPMA_OBJECT.fixedTPM)) problems.push("fixedTPM=0 (it could have been imported from outside the TPM)");
  if (a & TPMA_OBJECT.adminWithPolicy)
    problems.push(
      "adminWithPolicy=1 (a public-only copy loaded into another TPM could be activated through its policy)",
    );
  if (!(a & TPMA_OBJECT.restricted) || !(a & TPMA_OBJECT.sign) || a & TPMA_OBJECT.decrypt)
    problems.push("not a restricted signing key");
  return problems;
}

export interface MadeCredential {
  /** TPM2B_ID_OBJECT. */
  credentialBlob: Buffer;
  /** TPM2B_ENCRYPTED_SECRET. */
  encryptedSecret: Buffer;
}

export interface MakeCredentialOptions {
  /** Tests only: a fixed seed (RSA EK) instead of a random one. */
  seed?: Uint8Array;
  /** Tests only: a fixed ephemeral ECDH private key (ECC EK), big-endian scalar. */
  ephemeralPrivateKey?: Uint8Array;
}

/** The seed and its encryption to the EK (RSA: OAEP; ECC: one-pass ECDH + KDFe). */
function seedFor(ek: TpmPublic, o: MakeCredentialOptions): { seed: Buffer; encryptedSecret: Buffer } {
  const size = digestBytes(ek.nameAlg);
  if (ek.type === "rsa") {
    const seed = Buffer.from(o.seed ?? randomBytes(size));
    if (seed.length !== size) throw new CredentialError("seed", `must be ${size} bytes for nameAlg ${ek.nameAlg}`);
    const ct = publicEncrypt(
      { key: ek.key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: ek.nameAlg, oaepLabel: label("IDENTITY") },
      seed,
    );
    return { seed, encryptedSecret: tpm2b(ct) };
  }
  const jwk = ek.key.export({ format: "jwk" });
  const curve = ECC_CURVES[String(jwk.crv)];
  if (!curve) throw new CredentialError("ek_public.parameters.curveID", `curve ${String(jwk.crv)} is not supported`);
  const ekX = Buffer.from(jwk.x!, "base64url");
  const ekY = Buffer.from(jwk.y!, "base64url");
  const ecdh = createECDH(curve.ecdh);
  if (o.ephemeralPrivateKey) ecdh.setPrivateKey(Buffer.from(o.ephemeralPrivateKey));
  else ecdh.generateKeys();
  const point = ecdh.getPublicKey(); // 04 ‖ x ‖ y, each padded to the curve size
  const eX = point.subarray(1, 1 + curve.bytes);
  const eY = point.subarray(1 + curve.bytes);
  const z = ecdh.computeSecret(Buffer.concat([Buffer.from([4]), ekX, ekY]));
  const seed = kdfe(ek.nameAlg, z, "IDENTITY", eX, ekX, size * 8);
  // TPMS_ECC_POINT in a TPM2B_ENCRYPTED_SECRET.
  return { seed, encryptedSecret: tpm2b(Buffer.concat([tpm2b(eX), tpm2b(eY)])) };
}

/**
 * TPM2_MakeCredential for `ek` (credentialEk) and the object Name `objectName` (the AK's TPM Name): only a TPM
 * holding that EK and an object of that Name can recover `credential` (≤ the EK nameAlg's digest size).
 */
export function makeCredential(
  ek: TpmPublic,
  objectName: Uint8Array,
  credential: Uint8Array,
  o: MakeCredentialOptions = {},
): MadeCredential {
  const size = digestBytes(ek.nameAlg);
  if (credential.length === 0 || credential.length > size)
    throw new CredentialError("credential", `must be 1..${size} bytes (the EK nameAlg's digest size)`);
  const nameAlg = HASH_ALGS[(objectName[0] << 8) | objectName[1]];
  if (!nameAlg || objectName.length !== 2 + nameAlg.bytes)
    throw new CredentialError("objectName", "is not a TPM Name (nameAlg ‖ digest)");
  const sym = ek.symmetric;
  if (!sym || sym.alg !== TPM_ALG_AES || sym.mode !== TPM_ALG_CFB)
    throw new CredentialError("ek_public.parameters.symmetric", "must be AES in CFB mode (use credentialEk)");
  const { seed, encryptedSecret } = seedFor(ek, o);
  const symKey = kdfa(ek.nameAlg, seed, "STORAGE", objectName, Buffer.alloc(0), sym.keyBits);
  const cipher = createCipheriv(`aes-${sym.keyBits}-cfb`, symKey, Buffer.alloc(16));
  const encIdentity = Buffer.concat([cipher.update(tpm2b(credential)), cipher.final()]);
  const hmacKey = kdfa(ek.nameAlg, seed, "INTEGRITY", Buffer.alloc(0), Buffer.alloc(0), size * 8);
  const outerHmac = createHmac(ek.nameAlg, hmacKey).update(encIdentity).update(objectName).digest();
  return { credentialBlob: tpm2b(Buffer.concat([tpm2b(outerHmac), encIdentity])), encryptedSecret };
}

/** The algorithm id of an EK's key type, for messages. */
export const ekKind = (ek: TpmPublic): string =>
  ek.type === "rsa"
    ? `RSA-${ek.key.asymmetricKeyDetails?.modulusLength ?? "?"}`
    : `ECC ${String(ek.key.export({ format: "jwk" }).crv)}`;
