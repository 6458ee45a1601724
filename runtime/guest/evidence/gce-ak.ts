// Google's vTPM attestation key on a GCE Shielded/Confidential VM. The AK does not exist in the vTPM as a stored
// object: Google writes its *template* (a TPMT_PUBLIC) and the AK certificate its EK/AK CA issued for the key that
// template yields into NV (ECC P-256: template 0x01c10003, certificate 0x01c10002; RSA 2048: 0x01c10001 and
// 0x01c10000 — go-tpm-tools client/handles.go). TPM2_CreatePrimary under the endorsement hierarchy is
// deterministic for a template and seed, so creating the primary from that exact template gives the certified key.
//
// tpm2-tools 5.x has no "template from file" for tpm2_createprimary, so the template is parsed here and spelled as
// its options (-G alg:scheme-hash:null, -g nameAlg, -a attributes, -L authPolicy, -u unique). Only templates that
// those options reproduce exactly are accepted (an AK's symmetric and kdf are NULL, RSA's exponent default), and the
// caller checks the created key's TPMT_PUBLIC against the template and the certificate's key, so a template the
// options could not express ends in a named error, never in a silently different key.
import { TpmReader } from "../../attestation/tpm/abi.js";

export interface GceAkIndices {
  kind: "ecc" | "rsa";
  certificate: number;
  template: number;
}

/** ECC first (what go-tpm-tools' GceAttestationKeyECC uses), then RSA. */
export const GCE_AK_NV: readonly GceAkIndices[] = [
  { kind: "ecc", certificate: 0x01c10002, template: 0x01c10003 },
  { kind: "rsa", certificate: 0x01c10000, template: 0x01c10001 },
];

const HASHES: Record<number, string> = { 0x0004: "sha1", 0x000b: "sha256", 0x000c: "sha384", 0x000d: "sha512" };
const SCHEMES: Record<number, string> = { 0x0014: "rsassa", 0x0016: "rsapss", 0x0018: "ecdsa" };
const CURVES: Record<number, string> = { 0x0003: "ecc256", 0x0004: "ecc384" };
const TPM_ALG_NULL = 0x0010;

export interface AkTemplate {
  /** tpm2_createprimary options that reproduce the template (without -C/-c). */
  options: string[];
  /** The unique field in the TSS in-memory layout tpm2_createprimary -u reads (little-endian size, then the buffer;
   *  ECC: both coordinates in 128-byte buffers). Checked against a raw TPM2_CreatePrimary in the tests. */
  unique: Buffer;
  /** authPolicy digest (may be empty). */
  authPolicy: Buffer;
  /** The TPMT_PUBLIC bytes up to (not including) unique: what the created key's public area must start with. */
  prefix: Buffer;
}

/** The TSS2 TPM2B_* struct layout: UINT16 size (host order, little-endian here) + a fixed-size buffer. */
function tssTpm2b(data: Uint8Array, capacity: number): Buffer {
  const out = Buffer.alloc(2 + capacity);
  out.writeUInt16LE(data.length, 0);
  Buffer.from(data).copy(out, 2);
  return out;
}

/** Parses Google's AK template (a bare TPMT_PUBLIC, trailing NV padding refused) into tpm2_createprimary options. */
export function parseAkTemplate(tpmt: Uint8Array): AkTemplate {
  const r = new TpmReader(tpmt, "gce_ak_template");
  const type = r.u16("type");
  const nameAlg = HASHES[r.u16("nameAlg")];
  if (!nameAlg) r.fail("nameAlg", "not SHA-1/256/384/512");
  const attributes = r.u32("objectAttributes");
  const authPolicy = Buffer.from(r.tpm2b("authPolicy", 64));
  if (r.u16("parameters.symmetric") !== TPM_ALG_NULL)
    r.fail("parameters.symmetric", "an attestation key's symmetric algorithm must be NULL");
  const schemeId = r.u16("parameters.scheme");
  const scheme = SCHEMES[schemeId];
  if (!scheme) r.fail("parameters.scheme", `0x${schemeId.toString(16)} is not RSASSA, RSAPSS or ECDSA`);
  const schemeHash = HASHES[r.u16("parameters.scheme.hashAlg")];
  if (!schemeHash) r.fail("parameters.scheme.hashAlg", "not SHA-1/256/384/512");
  let alg: string;
  let unique: Buffer;
  if (type === 0x0023) {
    const curve = CURVES[r.u16("parameters.curveID")];
    if (!curve) r.fail("parameters.curveID", "not NIST P-256 or P-384");
    if (r.u16("parameters.kdf") !== TPM_ALG_NULL) r.fail("parameters.kdf", "must be NULL");
    alg = curve;
    const prefixEnd = r.p;
    const x = r.tpm2b("unique.x", 128);
    const y = r.tpm2b("unique.y", 128);
    r.end("template");
    unique = Buffer.concat([tssTpm2b(x, 128), tssTpm2b(y, 128)]);
    return finish(prefixEnd);
  }
  if (type === 0x0001) {
    const bits = r.u16("parameters.keyBits");
    if (bits !== 2048 && bits !== 3072) r.fail("parameters.keyBits", `${bits} (2048 or 3072 expected)`);
    if (r.u32("parameters.exponent") !== 0)
      r.fail("parameters.exponent", "must be 0 (the default 65537): tpm2_createprimary cannot set another");
    alg = `rsa${bits}`;
    const prefixEnd = r.p;
    const n = r.tpm2b("unique", 512);
    r.end("template");
    // The union's RSA member is the first: tpm2_createprimary reads at most 512 bytes, so the buffer is cut
    // after the modulus (the size word says how much of it counts).
    unique = tssTpm2b(n, n.length);
    return finish(prefixEnd);
  }
  return r.fail("type", `0x${type.toString(16)} is not RSA or ECC`);

  function finish(prefixEnd: number): AkTemplate {
    return {
      options: [
        "-g",
        nameAlg,
        "-G",
        `${alg}:${scheme}-${schemeHash}:null`,
        "-a",
        `0x${attributes.toString(16).padStart(8, "0")}`,
      ],
      unique,
      authPolicy,
      prefix: Buffer.from(tpmt.subarray(0, prefixEnd)),
    };
  }
}

/**
 * The DER certificate at the start of an NV index's contents: NV indices are sized by whoever defined them, so a
 * certificate may be followed by padding. Only the outer SEQUENCE's own length is trusted.
 */
export function derPrefix(nv: Uint8Array): Buffer {
  const b = Buffer.from(nv);
  if (b.length < 2 || b[0] !== 0x30) throw new Error("does not start with a DER SEQUENCE");
  let len: number;
  let head: number;
  if (b[1] < 0x80) {
    len = b[1];
    head = 2;
  } else {
    const n = b[1] & 0x7f;
    if (n < 1 || n > 3 || b.length < 2 + n) throw new Error("bad DER length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[2 + i];
    head = 2 + n;
  }
  if (head + len > b.length) throw new Error(`DER length ${head + len} exceeds the ${b.length} bytes read`);
  return b.subarray(0, head + len);
}
