// Intel TDX DCAP quote layout (v4 and v5; TD report body 1.0 and 1.5) and the TDREPORT found in Azure's
// HCL report. Pure parsing: every length is checked against the buffer, nothing is verified here.
// Layout: Intel DCAP sgx_quote_4.h / sgx_quote_5.h; field names follow go-tdx-guest abi.go.
import { EvidenceFormatError } from "../types.js";

export const HEADER_SIZE = 48;
export const TD_REPORT_BODY_10_SIZE = 584;
export const TD_REPORT_BODY_15_SIZE = 648;
export const QE_REPORT_SIZE = 384;
export const ATTESTATION_KEY_TYPE_ECDSA_P256 = 2;
export const TEE_TYPE_TDX = 0x81;
export const INTEL_QE_VENDOR_ID = "939a7233f79c4ca9940a0db3957f0607";
/** Certification data types of the signature data (DCAP "certification data type"). */
export const CERT_DATA_PCK_CHAIN = 5;
export const CERT_DATA_QE_REPORT = 6;
/** v5 body types. */
export const BODY_TYPE_TDX10 = 2;
export const BODY_TYPE_TDX15 = 3;

export interface QuoteHeader {
  version: number;
  attestationKeyType: number;
  teeType: number;
  /** 4 bytes the DCAP header leaves reserved (go-tdx-guest: PCE SVN ‖ QE SVN). */
  reserved: Uint8Array;
  qeVendorId: Uint8Array;
  userData: Uint8Array;
}

export interface TdReportBody {
  teeTcbSvn: Uint8Array;
  mrSeam: Uint8Array;
  mrSignerSeam: Uint8Array;
  seamAttributes: Uint8Array;
  tdAttributes: Uint8Array;
  xfam: Uint8Array;
  mrTd: Uint8Array;
  mrConfigId: Uint8Array;
  mrOwner: Uint8Array;
  mrOwnerConfig: Uint8Array;
  rtmrs: [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
  reportData: Uint8Array;
  /** TD report 1.5 only. */
  teeTcbSvn2?: Uint8Array;
  mrServiceTd?: Uint8Array;
}

/** The SGX report of the Quoting Enclave (sgx_report_body_t). */
export interface QeReport {
  raw: Uint8Array;
  cpuSvn: Uint8Array;
  miscSelect: number;
  attributes: Uint8Array;
  mrEnclave: Uint8Array;
  mrSigner: Uint8Array;
  isvProdId: number;
  isvSvn: number;
  reportData: Uint8Array;
}

export interface TdxQuote {
  raw: Uint8Array;
  header: QuoteHeader;
  /** 2 = TD report 1.0 (584 bytes), 3 = TD report 1.5 (648 bytes); v4 quotes are always 2. */
  bodyType: number;
  body: TdReportBody;
  /** The bytes the attestation key signs: header ‖ body (v4), header ‖ type ‖ size ‖ body (v5). */
  signedBytes: Uint8Array;
  /** ECDSA P-256 r‖s over signedBytes. */
  signature: Uint8Array;
  /** Attestation public key X‖Y. */
  attestationKey: Uint8Array;
  qeReport: QeReport;
  qeReportSignature: Uint8Array;
  qeAuthData: Uint8Array;
  /** PEM text of the PCK leaf, intermediate and root (as delivered, NULs stripped). */
  pckChainPem: string;
  /** Unsigned bytes after the declared signature data (present in some genuine quotes). */
  trailingBytes: number;
}

/** Bounds-checked little-endian reader that names the field on every failure. */
class Reader {
  constructor(
    private readonly buf: Uint8Array,
    private readonly base = 0,
  ) {}
  private need(off: number, len: number, field: string): void {
    if (off < 0 || len < 0 || off + len > this.buf.length) {
      throw new EvidenceFormatError(
        `${field}: needs ${len} bytes at offset ${this.base + off}, buffer has ${this.buf.length - off < 0 ? 0 : this.buf.length - off}`,
        field,
        this.base + off,
      );
    }
  }
  bytes(off: number, len: number, field: string): Uint8Array {
    this.need(off, len, field);
    return this.buf.subarray(off, off + len);
  }
  u16(off: number, field: string): number {
    this.need(off, 2, field);
    return this.buf[off] | (this.buf[off + 1] << 8);
  }
  u32(off: number, field: string): number {
    this.need(off, 4, field);
    return (this.buf[off] | (this.buf[off + 1] << 8) | (this.buf[off + 2] << 16)) + this.buf[off + 3] * 0x1000000;
  }
}

export function parseHeader(quote: Uint8Array): QuoteHeader {
  const r = new Reader(quote);
  const header: QuoteHeader = {
    version: r.u16(0, "header.version"),
    attestationKeyType: r.u16(2, "header.att_key_type"),
    teeType: r.u32(4, "header.tee_type"),
    reserved: r.bytes(8, 4, "header.reserved"),
    qeVendorId: r.bytes(12, 16, "header.qe_vendor_id"),
    userData: r.bytes(28, 20, "header.user_data"),
  };
  if (header.version !== 4 && header.version !== 5) {
    throw new EvidenceFormatError(
      `header.version: ${header.version} is not a TDX DCAP quote version (4 or 5)`,
      "header.version",
      0,
    );
  }
  if (header.attestationKeyType !== ATTESTATION_KEY_TYPE_ECDSA_P256) {
    throw new EvidenceFormatError(
      `header.att_key_type: ${header.attestationKeyType}, only 2 (ECDSA P-256) is defined`,
      "header.att_key_type",
      2,
    );
  }
  if (header.teeType !== TEE_TYPE_TDX) {
    throw new EvidenceFormatError(
      `header.tee_type: 0x${header.teeType.toString(16)} is not TDX (0x81)`,
      "header.tee_type",
      4,
    );
  }
  return header;
}

/** Parses a TD report body (1.0 = 584 bytes, 1.5 = 648 bytes) starting at `off`. */
export function parseTdReportBody(buf: Uint8Array, off: number, size: number): TdReportBody {
  const r = new Reader(buf);
  const f = (rel: number, len: number, name: string) => r.bytes(off + rel, len, `body.${name}`);
  const body: TdReportBody = {
    teeTcbSvn: f(0, 16, "tee_tcb_svn"),
    mrSeam: f(16, 48, "mr_seam"),
    mrSignerSeam: f(64, 48, "mr_signer_seam"),
    seamAttributes: f(112, 8, "seam_attributes"),
    tdAttributes: f(120, 8, "td_attributes"),
    xfam: f(128, 8, "xfam"),
    mrTd: f(136, 48, "mr_td"),
    mrConfigId: f(184, 48, "mr_config_id"),
    mrOwner: f(232, 48, "mr_owner"),
    mrOwnerConfig: f(280, 48, "mr_owner_config"),
    rtmrs: [f(328, 48, "rtmr0"), f(376, 48, "rtmr1"), f(424, 48, "rtmr2"), f(472, 48, "rtmr3")],
    reportData: f(520, 64, "report_data"),
  };
  if (size === TD_REPORT_BODY_15_SIZE) {
    body.teeTcbSvn2 = f(584, 16, "tee_tcb_svn2");
    body.mrServiceTd = f(600, 48, "mr_service_td");
  }
  return body;
}

export function parseQeReport(raw: Uint8Array): QeReport {
  const r = new Reader(raw);
  return {
    raw,
    cpuSvn: r.bytes(0, 16, "qe_report.cpu_svn"),
    miscSelect: r.u32(16, "qe_report.misc_select"),
    attributes: r.bytes(48, 16, "qe_report.attributes"),
    mrEnclave: r.bytes(64, 32, "qe_report.mr_enclave"),
    mrSigner: r.bytes(128, 32, "qe_report.mr_signer"),
    isvProdId: r.u16(256, "qe_report.isv_prod_id"),
    isvSvn: r.u16(258, "qe_report.isv_svn"),
    reportData: r.bytes(320, 64, "qe_report.report_data"),
  };
}

/** Parses a complete DCAP TDX quote (v4 or v5). Throws EvidenceFormatError naming the field. */
export function parseQuote(input: Uint8Array): TdxQuote {
  const quote = input instanceof Uint8Array ? input : new Uint8Array(input);
  const r = new Reader(quote);
  const header = parseHeader(quote);
  let bodyType = BODY_TYPE_TDX10;
  let bodyOff = HEADER_SIZE;
  let bodySize = TD_REPORT_BODY_10_SIZE;
  if (header.version === 5) {
    bodyType = r.u16(48, "body_type");
    bodySize = r.u32(50, "body_size");
    bodyOff = 54;
    const expected =
      bodyType === BODY_TYPE_TDX10
        ? TD_REPORT_BODY_10_SIZE
        : bodyType === BODY_TYPE_TDX15
          ? TD_REPORT_BODY_15_SIZE
          : undefined;
    if (expected === undefined) {
      throw new EvidenceFormatError(
        `body_type: ${bodyType} is not a TD report (2 = TDX 1.0, 3 = TDX 1.5)`,
        "body_type",
        48,
      );
    }
    if (bodySize !== expected) {
      throw new EvidenceFormatError(
        `body_size: ${bodySize} does not match body type ${bodyType} (${expected})`,
        "body_size",
        50,
      );
    }
  }
  const body = parseTdReportBody(quote, bodyOff, bodySize);
  const signedEnd = bodyOff + bodySize;
  const sigLen = r.u32(signedEnd, "signature_data_len");
  const sigOff = signedEnd + 4;
  const sigData = r.bytes(sigOff, sigLen, "signature_data");
  const s = new Reader(sigData, sigOff);

  const signature = s.bytes(0, 64, "signature_data.quote_signature");
  const attestationKey = s.bytes(64, 64, "signature_data.attestation_key");
  const outerType = s.u16(128, "certification_data.type");
  if (outerType !== CERT_DATA_QE_REPORT) {
    throw new EvidenceFormatError(
      `certification_data.type: ${outerType}, expected 6 (QE report certification data)`,
      "certification_data.type",
      sigOff + 128,
    );
  }
  const outerSize = s.u32(130, "certification_data.size");
  const outer = s.bytes(134, outerSize, "certification_data");
  if (134 + outerSize !== sigLen) {
    throw new EvidenceFormatError(
      `certification_data.size: ${outerSize} leaves ${sigLen - 134 - outerSize} unexplained bytes in signature data of ${sigLen}`,
      "certification_data.size",
      sigOff + 130,
    );
  }
  const o = new Reader(outer, sigOff + 134);
  const qeReport = parseQeReport(o.bytes(0, QE_REPORT_SIZE, "qe_report"));
  const qeReportSignature = o.bytes(384, 64, "qe_report_signature");
  const authLen = o.u16(448, "qe_auth_data.size");
  const qeAuthData = o.bytes(450, authLen, "qe_auth_data");
  const innerOff = 450 + authLen;
  const innerType = o.u16(innerOff, "pck_cert_chain.type");
  if (innerType !== CERT_DATA_PCK_CHAIN) {
    throw new EvidenceFormatError(
      `pck_cert_chain.type: ${innerType}, expected 5 (PCK certificate chain, PEM)`,
      "pck_cert_chain.type",
      sigOff + 134 + innerOff,
    );
  }
  const chainLen = o.u32(innerOff + 2, "pck_cert_chain.size");
  const chain = o.bytes(innerOff + 6, chainLen, "pck_cert_chain");
  if (innerOff + 6 + chainLen !== outerSize) {
    throw new EvidenceFormatError(
      `pck_cert_chain.size: ${chainLen} does not end the certification data (${outerSize - innerOff - 6} bytes available)`,
      "pck_cert_chain.size",
      sigOff + 134 + innerOff + 2,
    );
  }
  const pckChainPem = Buffer.from(chain).toString("latin1").replace(/\0+$/, "");
  if (!/^[\t\n\r\x20-\x7e]*$/.test(pckChainPem)) {
    throw new EvidenceFormatError("pck_cert_chain: not PEM text", "pck_cert_chain", sigOff + 134 + innerOff + 6);
  }
  return {
    raw: quote,
    header,
    bodyType,
    body,
    signedBytes: quote.subarray(0, signedEnd),
    signature,
    attestationKey,
    qeReport,
    qeReportSignature,
    qeAuthData,
    pckChainPem,
    trailingBytes: quote.length - (sigOff + sigLen),
  };
}

/** TD_ATTRIBUTES bit 0: the TD is debuggable (host can read and write its memory). */
export function tdDebug(tdAttributes: Uint8Array): boolean {
  return (tdAttributes[0] & 1) === 1;
}

// ---- TDREPORT (1024 bytes), as embedded in Azure's HCL report -----------------------------------

export const TD_REPORT_SIZE = 1024;

/** The parts of a TDREPORT that are compared with the TD quote (REPORTMACSTRUCT + TDINFO). */
export interface TdReport {
  reportType: Uint8Array;
  reportData: Uint8Array;
  teeTcbInfoHash: Uint8Array;
  teeInfoHash: Uint8Array;
  tdAttributes: Uint8Array;
  xfam: Uint8Array;
  mrTd: Uint8Array;
  mrConfigId: Uint8Array;
  mrOwner: Uint8Array;
  mrOwnerConfig: Uint8Array;
  rtmrs: [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
}

export function parseTdReport(buf: Uint8Array): TdReport {
  const r = new Reader(buf);
  const f = (off: number, len: number, name: string) => r.bytes(off, len, `td_report.${name}`);
  const reportType = f(0, 4, "report_type");
  if (reportType[0] !== 0x81) {
    throw new EvidenceFormatError(
      `td_report.report_type: type 0x${reportType[0].toString(16)} is not TDX (0x81)`,
      "td_report.report_type",
      0,
    );
  }
  const info = 512;
  return {
    reportType,
    teeTcbInfoHash: f(0x20, 48, "tee_tcb_info_hash"),
    teeInfoHash: f(0x50, 48, "tee_info_hash"),
    reportData: f(0x80, 64, "report_data"),
    tdAttributes: f(info, 8, "td_attributes"),
    xfam: f(info + 8, 8, "xfam"),
    mrTd: f(info + 16, 48, "mr_td"),
    mrConfigId: f(info + 64, 48, "mr_config_id"),
    mrOwner: f(info + 112, 48, "mr_owner"),
    mrOwnerConfig: f(info + 160, 48, "mr_owner_config"),
    rtmrs: [
      f(info + 208, 48, "rtmr0"),
      f(info + 256, 48, "rtmr1"),
      f(info + 304, 48, "rtmr2"),
      f(info + 352, 48, "rtmr3"),
    ],
  };
}
