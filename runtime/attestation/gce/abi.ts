// Google Compute Engine launch endorsements (google/gce-tcb-verifier proto/endorsement.proto): Google signs,
// per UEFI firmware release, the expected SEV-SNP MEASUREMENT for every vCPU count and the TDX MRTDs.
//   VMLaunchEndorsement { 1 serialized_uefi_golden: bytes, 2 signature: bytes }
//   VMGoldenMeasurement { 1 timestamp: Timestamp, 2 cl_spec: uint64, 3 commit: bytes, 4 cert: bytes (DER signer),
//                         5 digest: bytes (SHA-384 of the UEFI), 6 ca_bundle: bytes (PEM, root … last intermediate),
//                         7 sev_snp: VMSevSnp, 8 tdx: VMTdx }
//   VMSevSnp { 1 svn: uint32, 2 measurements: map<uint32 vCPUs, bytes 48>, 3 family_id: bytes 16,
//              4 image_id: bytes 16, 5 policy: uint64, 6 ca_bundle: bytes, 7 svsm_measurement: bytes 48 }
//   VMTdx { 1 svn: uint32, 2 measurements: repeated { 1 ram_gib: uint32, 2 early_accept: bool, 3 mrtd: bytes 48 } }
// Sizes the proto file documents in comments are enforced here.
import { EvidenceFormatError } from "../types.js";
import { WIRE, boolOf, bytesOf, readMessage, uintOf, type ProtoField } from "./proto.js";

export interface LaunchEndorsement {
  /** The signed bytes (a serialized VMGoldenMeasurement). */
  serializedGolden: Uint8Array;
  /** RSA-PSS/SHA-256 signature over serializedGolden by golden.cert. */
  signature: Uint8Array;
  golden: GoldenMeasurement;
}

export interface GoldenMeasurement {
  /** When Google signed it (absent in very old endorsements). */
  timestamp?: Date;
  clSpec: bigint;
  commit: Uint8Array;
  /** DER certificate of the signing key. */
  cert: Uint8Array;
  /** SHA-384 of the UEFI binary. */
  digest: Uint8Array;
  /** PEM certificates, root … the intermediate that signed `cert` (often just the root). */
  caBundle: string;
  sevSnp?: SevSnpGolden;
  tdx?: TdxGolden;
  /** Field numbers this parser does not know (signed, so harmless; listed for audit). */
  unknownFields: number[];
}

export interface SevSnpGolden {
  svn: number;
  /** vCPU (VMSA) count → expected MEASUREMENT (48 bytes). */
  measurements: Map<number, Uint8Array>;
  familyId: Uint8Array;
  imageId: Uint8Array;
  policy: bigint;
  caBundle: string;
  /** Launch measurement with Google's SVSM (empty when not endorsed). */
  svsmMeasurement: Uint8Array;
}

export interface TdxGolden {
  svn: number;
  measurements: { ramGib: number; earlyAccept: boolean; mrtd: Uint8Array }[];
}

const W = "gce_endorsement";
const MAX_ENDORSEMENT = 256 * 1024;

function sized(f: ProtoField | undefined, where: string, sizes: number[]): Uint8Array {
  const b = bytesOf(f);
  if (!sizes.includes(b.length))
    throw new EvidenceFormatError(`${where}: ${b.length} bytes (expected ${sizes.join(" or ")})`, where, f?.at);
  return b;
}

function pemText(f: ProtoField | undefined, where: string): string {
  const b = bytesOf(f);
  // Printable ASCII plus tab, LF and CR only.
  if (b.some((c) => (c < 0x20 || c > 0x7e) && c !== 0x09 && c !== 0x0a && c !== 0x0d))
    throw new EvidenceFormatError(`${where}: not PEM text (non-printable bytes)`, where, f?.at);
  const s = Buffer.from(b).toString("latin1");
  return s;
}

function parseTimestamp(b: Uint8Array, where: string): Date {
  const m = readMessage(
    b,
    { 1: { name: "seconds", wire: WIRE.VARINT }, 2: { name: "nanos", wire: WIRE.VARINT } },
    where,
  );
  // google.protobuf.Timestamp: seconds in [0001-01-01, 9999-12-31]; here only sane signing times are accepted.
  const seconds = m.one.seconds?.int ?? 0n;
  if (seconds > 253402300799n) throw new EvidenceFormatError(`${where}.seconds: ${seconds} is out of range`, where);
  const nanos = uintOf(m.one.nanos, `${where}.nanos`, 999_999_999);
  return new Date(Number(seconds) * 1000 + Math.floor(nanos / 1e6));
}

function parseSevSnp(b: Uint8Array, where: string): SevSnpGolden {
  const m = readMessage(
    b,
    {
      1: { name: "svn", wire: WIRE.VARINT },
      2: { name: "measurements", wire: WIRE.LEN, repeated: true },
      3: { name: "family_id", wire: WIRE.LEN },
      4: { name: "image_id", wire: WIRE.LEN },
      5: { name: "policy", wire: WIRE.VARINT },
      6: { name: "ca_bundle", wire: WIRE.LEN },
      7: { name: "svsm_measurement", wire: WIRE.LEN },
    },
    where,
  );
  const measurements = new Map<number, Uint8Array>();
  (m.many.measurements ?? []).forEach((e, i) => {
    const f = `${where}.measurements[${i}]`;
    // map<uint32, bytes> entries are messages { 1 key, 2 value }.
    const kv = readMessage(
      e.bytes!,
      { 1: { name: "key", wire: WIRE.VARINT }, 2: { name: "value", wire: WIRE.LEN } },
      f,
    );
    const vcpus = uintOf(kv.one.key, `${f}.key`);
    if (vcpus === 0) throw new EvidenceFormatError(`${f}.key: 0 vCPUs`, `${f}.key`, e.at);
    if (measurements.has(vcpus))
      throw new EvidenceFormatError(`${f}.key: ${vcpus} vCPUs listed twice`, `${f}.key`, e.at);
    measurements.set(vcpus, sized(kv.one.value, `${f}.value`, [48]));
  });
  return {
    svn: uintOf(m.one.svn, `${where}.svn`),
    measurements,
    familyId: sized(m.one.family_id, `${where}.family_id`, [0, 16]),
    imageId: sized(m.one.image_id, `${where}.image_id`, [0, 16]),
    policy: m.one.policy?.int ?? 0n,
    caBundle: pemText(m.one.ca_bundle, `${where}.ca_bundle`),
    svsmMeasurement: sized(m.one.svsm_measurement, `${where}.svsm_measurement`, [0, 48]),
  };
}

function parseTdx(b: Uint8Array, where: string): TdxGolden {
  const m = readMessage(
    b,
    { 1: { name: "svn", wire: WIRE.VARINT }, 2: { name: "measurements", wire: WIRE.LEN, repeated: true } },
    where,
  );
  return {
    svn: uintOf(m.one.svn, `${where}.svn`),
    measurements: (m.many.measurements ?? []).map((e, i) => {
      const f = `${where}.measurements[${i}]`;
      const x = readMessage(
        e.bytes!,
        {
          1: { name: "ram_gib", wire: WIRE.VARINT },
          2: { name: "early_accept", wire: WIRE.VARINT },
          3: { name: "mrtd", wire: WIRE.LEN },
        },
        f,
      );
      return {
        ramGib: uintOf(x.one.ram_gib, `${f}.ram_gib`),
        earlyAccept: boolOf(x.one.early_accept, `${f}.early_accept`),
        mrtd: sized(x.one.mrtd, `${f}.mrtd`, [48]),
      };
    }),
  };
}

/** VMGoldenMeasurement (the signed payload). */
export function parseGoldenMeasurement(b: Uint8Array, where = `${W}.serialized_uefi_golden`): GoldenMeasurement {
  const m = readMessage(
    b,
    {
      1: { name: "timestamp", wire: WIRE.LEN },
      2: { name: "cl_spec", wire: WIRE.VARINT },
      3: { name: "commit", wire: WIRE.LEN },
      4: { name: "cert", wire: WIRE.LEN },
      5: { name: "digest", wire: WIRE.LEN },
      6: { name: "ca_bundle", wire: WIRE.LEN },
      7: { name: "sev_snp", wire: WIRE.LEN },
      8: { name: "tdx", wire: WIRE.LEN },
    },
    where,
  );
  const cert = bytesOf(m.one.cert);
  if (cert.length === 0) throw new EvidenceFormatError(`${where}.cert: missing signer certificate`, `${where}.cert`);
  const commit = bytesOf(m.one.commit);
  if (commit.length > 64) throw new EvidenceFormatError(`${where}.commit: ${commit.length} bytes`, `${where}.commit`);
  return {
    ...(m.one.timestamp ? { timestamp: parseTimestamp(m.one.timestamp.bytes!, `${where}.timestamp`) } : {}),
    clSpec: m.one.cl_spec?.int ?? 0n,
    commit,
    cert,
    digest: sized(m.one.digest, `${where}.digest`, [0, 48]),
    caBundle: pemText(m.one.ca_bundle, `${where}.ca_bundle`),
    ...(m.one.sev_snp ? { sevSnp: parseSevSnp(m.one.sev_snp.bytes!, `${where}.sev_snp`) } : {}),
    ...(m.one.tdx ? { tdx: parseTdx(m.one.tdx.bytes!, `${where}.tdx`) } : {}),
    unknownFields: m.unknown,
  };
}

/** VMLaunchEndorsement as published at gs://gce_tcb_integrity/ovmf_x64_csm/{sevsnp,tdx}/<hex>.binarypb. */
export function parseLaunchEndorsement(b: Uint8Array): LaunchEndorsement {
  if (b.length > MAX_ENDORSEMENT)
    throw new EvidenceFormatError(`${W}: ${b.length} bytes (at most ${MAX_ENDORSEMENT})`, W);
  const m = readMessage(
    b,
    { 1: { name: "serialized_uefi_golden", wire: WIRE.LEN }, 2: { name: "signature", wire: WIRE.LEN } },
    W,
  );
  if (m.unknown.length)
    throw new EvidenceFormatError(`${W}: unknown field(s) ${m.unknown.join(", ")} outside the signed payload`, W);
  const serializedGolden = bytesOf(m.one.serialized_uefi_golden);
  const signature = bytesOf(m.one.signature);
  if (serializedGolden.length === 0) throw new EvidenceFormatError(`${W}.serialized_uefi_golden: missing`, W);
  if (signature.length < 256 || signature.length > 1024)
    throw new EvidenceFormatError(
      `${W}.signature: ${signature.length} bytes (an RSA-2048..8192 signature expected)`,
      `${W}.signature`,
    );
  return { serializedGolden, signature, golden: parseGoldenMeasurement(serializedGolden) };
}
