// The Azure CVM formats: the HCL report and its runtime-claims JSON (here); TPMS_ATTEST is in tpm.ts.
// Azure confidential VM "HCL report" (vTPM NV index 0x01400001), as produced by the paravisor (HCL):
// header, the hardware report (SEV-SNP ATTESTATION_REPORT or TDX TDREPORT), then the IGVM request data
// whose variable part is the runtime-claims JSON. The hardware REPORT_DATA = hash(runtime JSON) ‖ 0…,
// which is the only thing binding the (unsigned) JSON, and through it the vTPM AK, to the hardware.
import { createHash, createPublicKey, type KeyObject } from "node:crypto";
import { EvidenceFormatError } from "../types.js";

export const HCL_SIGNATURE = "HCLA";
export const HCL_HW_REPORT_OFFSET = 0x20;
export const HCL_HW_REPORT_SIZE = 0x4a0;
export const IGVM_DATA_OFFSET = 0x4c0;
const IGVM_HEADER_SIZE = 20;
export const REPORT_TYPE_SNP = 2;
export const REPORT_TYPE_TDX = 4;
const HASH_TYPES: Record<number, { name: string; bytes: number }> = {
  1: { name: "sha256", bytes: 32 },
  2: { name: "sha384", bytes: 48 },
  3: { name: "sha512", bytes: 64 },
};

export interface HclReport {
  version: number;
  reportSize: number;
  requestType: number;
  status: number;
  /** "snp" (report_type 2) or "tdx" (report_type 4). */
  type: "snp" | "tdx";
  /** SNP: the 1184-byte report; TDX: the 1024-byte TDREPORT. */
  hardwareReport: Uint8Array;
  hashType: number;
  /** The runtime-claims JSON bytes exactly as hashed into REPORT_DATA. */
  runtimeData: Uint8Array;
  runtimeClaims: RuntimeClaims;
}

export interface RuntimeClaims {
  keys: Array<Record<string, unknown> & { kid?: string; kty?: string }>;
  "vm-configuration"?: Record<string, unknown>;
  "user-data"?: string;
  [k: string]: unknown;
}

const u32 = (b: Uint8Array, off: number) => b[off] + b[off + 1] * 0x100 + b[off + 2] * 0x10000 + b[off + 3] * 0x1000000;

export function parseHclReport(bytes: Uint8Array): HclReport {
  const need = (end: number, field: string) => {
    if (bytes.length < end)
      throw new EvidenceFormatError(
        `hcl_report.${field}: report has ${bytes.length} bytes, needs ${end}`,
        `hcl_report.${field}`,
      );
  };
  need(IGVM_DATA_OFFSET + IGVM_HEADER_SIZE, "header");
  if (Buffer.from(bytes.subarray(0, 4)).toString("latin1") !== HCL_SIGNATURE) {
    throw new EvidenceFormatError("hcl_report.signature: not 'HCLA'", "hcl_report.signature", 0);
  }
  const dataSize = u32(bytes, IGVM_DATA_OFFSET);
  const reportType = u32(bytes, IGVM_DATA_OFFSET + 8);
  const hashType = u32(bytes, IGVM_DATA_OFFSET + 12);
  const varSize = u32(bytes, IGVM_DATA_OFFSET + 16);
  if (reportType !== REPORT_TYPE_SNP && reportType !== REPORT_TYPE_TDX) {
    throw new EvidenceFormatError(
      `hcl_report.report_type: ${reportType} (2 = SNP, 4 = TDX)`,
      "hcl_report.report_type",
      IGVM_DATA_OFFSET + 8,
    );
  }
  if (!HASH_TYPES[hashType])
    throw new EvidenceFormatError(
      `hcl_report.report_data_hash_type: ${hashType} (1..3)`,
      "hcl_report.report_data_hash_type",
      IGVM_DATA_OFFSET + 12,
    );
  if (dataSize !== varSize + IGVM_HEADER_SIZE) {
    throw new EvidenceFormatError(
      `hcl_report.data_size: ${dataSize} ≠ 20 + variable_data_size ${varSize}`,
      "hcl_report.data_size",
      IGVM_DATA_OFFSET,
    );
  }
  const varOff = IGVM_DATA_OFFSET + IGVM_HEADER_SIZE;
  need(varOff + varSize, "variable_data");
  const runtimeData = bytes.subarray(varOff, varOff + varSize);
  let runtimeClaims: RuntimeClaims;
  try {
    // Hash the exact bytes, but tolerate NUL padding inside the declared size when reading the JSON.
    runtimeClaims = JSON.parse(Buffer.from(runtimeData).toString("utf8").replace(/\0+$/, "")) as RuntimeClaims;
  } catch {
    throw new EvidenceFormatError(
      "hcl_report.variable_data: runtime claims are not JSON",
      "hcl_report.variable_data",
      varOff,
    );
  }
  if (typeof runtimeClaims !== "object" || runtimeClaims === null || !Array.isArray(runtimeClaims.keys)) {
    throw new EvidenceFormatError(
      "hcl_report.variable_data: runtime claims have no 'keys' array",
      "hcl_report.variable_data",
      varOff,
    );
  }
  const type = reportType === REPORT_TYPE_SNP ? "snp" : "tdx";
  return {
    version: u32(bytes, 4),
    reportSize: u32(bytes, 8),
    requestType: u32(bytes, 12),
    status: u32(bytes, 16),
    type,
    hardwareReport: bytes.subarray(
      HCL_HW_REPORT_OFFSET,
      HCL_HW_REPORT_OFFSET + (type === "snp" ? HCL_HW_REPORT_SIZE : 1024),
    ),
    hashType,
    runtimeData,
    runtimeClaims,
  };
}

/** The 64 bytes the hardware must report: hash(runtime JSON) ‖ zero padding. */
export function expectedReportData(hcl: HclReport): Buffer {
  const h = HASH_TYPES[hcl.hashType];
  return Buffer.concat([createHash(h.name).update(hcl.runtimeData).digest(), Buffer.alloc(64 - h.bytes)]);
}

/** The hardware report's REPORT_DATA: SNP at 0x50, TDX TDREPORT (REPORTMACSTRUCT) at 0x80. */
export function hardwareReportData(hcl: HclReport): Uint8Array {
  const off = hcl.type === "snp" ? 0x50 : 0x80;
  return hcl.hardwareReport.subarray(off, off + 64);
}

/** The vTPM attestation key (kid "HCLAkPub", an RSA JWK) from the runtime claims. */
export function attestationKey(claims: RuntimeClaims): KeyObject {
  const jwk = claims.keys.find((k) => k && k.kid === "HCLAkPub");
  if (!jwk) throw new EvidenceFormatError("runtime claims: no key with kid 'HCLAkPub'", "runtime_claims.keys");
  if (jwk.kty !== "RSA")
    throw new EvidenceFormatError(
      `runtime claims: HCLAkPub is kty '${String(jwk.kty)}', expected RSA`,
      "runtime_claims.keys.HCLAkPub",
    );
  try {
    return createPublicKey({ key: { kty: "RSA", n: String(jwk.n), e: String(jwk.e) }, format: "jwk" });
  } catch (e) {
    throw new EvidenceFormatError(
      `runtime claims: HCLAkPub is not a usable RSA key (${(e as Error).message})`,
      "runtime_claims.keys.HCLAkPub",
    );
  }
}
