// The NitroTPM attestation document (AWS EC2 NitroTPM, "nitro-tpm-attest"): a COSE_Sign1 (RFC 9052) in
// CBOR, ES384, whose payload has the same layout as a Nitro Enclaves attestation document except that the
// PCRs are the NitroTPM's SHA-384 bank under `nitrotpm_pcrs` (an enclave document has `pcrs`, and is refused
// here so the two can never be confused). Parsing only: nothing here is trusted before verify.ts checked
// the signature and the certificate chain.
import { EvidenceFormatError } from "../types.js";
import { decodeCbor, type CborMap, type CborValue } from "./cbor.js";

/** COSE algorithm ES384 (ECDSA P-384 with SHA-384), the only one AWS uses. */
export const COSE_ALG_ES384 = -35;

export interface NitroDocument {
  /** The raw COSE_Sign1 parts the signature covers. */
  protectedHeader: Uint8Array;
  payload: Uint8Array;
  signature: Uint8Array;
  /** e.g. "i-0082f89b039c97a0f-tpm00000000000000": the instance the NitroTPM belongs to. */
  moduleId: string;
  digest: "SHA384";
  /** Milliseconds since the Unix epoch, as AWS states it. */
  timestamp: number;
  /** NitroTPM PCR index → SHA-384 value. */
  pcrs: Map<number, Uint8Array>;
  /** Leaf certificate (DER) that signed the document. */
  certificate: Uint8Array;
  /** CA bundle (DER), root first, as AWS orders it. */
  cabundle: Uint8Array[];
  publicKey?: Uint8Array;
  userData?: Uint8Array;
  nonce?: Uint8Array;
}

const PAYLOAD_KEYS = [
  "module_id",
  "digest",
  "timestamp",
  "nitrotpm_pcrs",
  "certificate",
  "cabundle",
  "public_key",
  "user_data",
  "nonce",
];

function fail(field: string, why: string): never {
  throw new EvidenceFormatError(`nitro_document.${field}: ${why}`, `nitro_document.${field}`);
}

function bytes(v: CborValue | undefined, field: string, min: number, max: number): Uint8Array {
  if (!(v instanceof Uint8Array)) return fail(field, "expected a byte string");
  if (v.length < min || v.length > max) fail(field, `${v.length} bytes (allowed ${min}..${max})`);
  return v;
}

/** Optional request fields: absent, null or a byte string of at most `max` bytes (AWS: 1024 / 512 / 512). */
function optBytes(v: CborValue | undefined, field: string, max: number): Uint8Array | undefined {
  if (v === undefined || v === null) return undefined;
  return bytes(v, field, 0, max);
}

function map(v: CborValue, field: string): CborMap {
  if (!(v instanceof Map)) return fail(field, "expected a map");
  return v;
}

/** Parses a COSE_Sign1 NitroTPM attestation document (tagged with 18 or not). Throws EvidenceFormatError. */
export function parseNitroDocument(b: Uint8Array): NitroDocument {
  const top = decodeCbor(b, "nitro_document", 18);
  if (!Array.isArray(top) || top.length !== 4) fail("cose", "not a COSE_Sign1 array of 4 items");
  const [prot, unprot, payloadRaw, sigRaw] = top;
  const protectedHeader = bytes(prot, "cose.protected", 1, 64);
  const headers = map(decodeCbor(protectedHeader, "nitro_document.cose.protected"), "cose.protected");
  for (const k of headers.keys()) if (k !== 1) fail("cose.protected", `unexpected header ${JSON.stringify(k)}`);
  if (headers.get(1) !== COSE_ALG_ES384)
    fail("cose.protected.alg", `${JSON.stringify(headers.get(1))} is not ES384 (${COSE_ALG_ES384})`);
  // Nothing unsigned may ride along: AWS sends an empty unprotected header.
  if (map(unprot, "cose.unprotected").size !== 0) fail("cose.unprotected", "must be empty");
  const payload = bytes(payloadRaw, "cose.payload", 1, 64 * 1024);
  const signature = bytes(sigRaw, "cose.signature", 96, 96);

  const p = map(decodeCbor(payload, "nitro_document.payload"), "payload");
  for (const k of p.keys()) {
    if (k === "pcrs") fail("pcrs", "this is a Nitro Enclaves document (pcrs), not a NitroTPM one (nitrotpm_pcrs)");
    if (typeof k !== "string" || !PAYLOAD_KEYS.includes(k))
      fail("payload", `unknown field ${JSON.stringify(k)} (allowed: ${PAYLOAD_KEYS.join(", ")})`);
  }
  const moduleId = p.get("module_id");
  if (typeof moduleId !== "string" || moduleId.length === 0 || moduleId.length > 128)
    fail("module_id", "expected a non-empty text string");
  const digest = p.get("digest");
  if (digest !== "SHA384") fail("digest", `${JSON.stringify(digest)} is not "SHA384"`);
  const timestamp = p.get("timestamp");
  if (typeof timestamp !== "number" || timestamp <= 0) fail("timestamp", "expected milliseconds since the epoch");
  const rawPcrs = map(p.get("nitrotpm_pcrs") ?? fail("nitrotpm_pcrs", "missing"), "nitrotpm_pcrs");
  if (rawPcrs.size === 0) fail("nitrotpm_pcrs", "no PCRs");
  const pcrs = new Map<number, Uint8Array>();
  for (const [k, v] of rawPcrs) {
    if (typeof k !== "number" || !Number.isInteger(k) || k < 0 || k > 23)
      fail("nitrotpm_pcrs", `${JSON.stringify(k)} is not a PCR index 0..23`);
    pcrs.set(k, bytes(v, `nitrotpm_pcrs.${k}`, 48, 48));
  }
  const certificate = bytes(p.get("certificate"), "certificate", 1, 4096);
  const bundle = p.get("cabundle");
  if (!Array.isArray(bundle) || bundle.length === 0 || bundle.length > 8)
    fail("cabundle", "expected 1..8 certificates");
  const cabundle = bundle.map((c, i) => bytes(c, `cabundle[${i}]`, 1, 4096));
  return {
    protectedHeader,
    payload,
    signature,
    moduleId,
    digest,
    timestamp,
    pcrs,
    certificate,
    cabundle,
    publicKey: optBytes(p.get("public_key"), "public_key", 1024),
    userData: optBytes(p.get("user_data"), "user_data", 1024),
    nonce: optBytes(p.get("nonce"), "nonce", 1024),
  };
}

/** The EC2 instance id a NitroTPM document's module_id names ("i-…-tpm…"), if it has that form. */
export function instanceIdOf(doc: Pick<NitroDocument, "moduleId">): string | undefined {
  return /^(i-[0-9a-f]{8,17})-tpm[0-9a-f]*$/.exec(doc.moduleId)?.[1];
}
