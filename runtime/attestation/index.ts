// Public surface of evidence verification (the package's `buckypaper/runtime/attestation`): the shared
// vocabulary, the appraise() entry point, policy and trust configuration, and the three TEE folders, each
// shaped abi → verify → validate → appraise: SEV-SNP flat here (plus KDS), TDX and Azure as the `tdx` and
// `azure` namespaces. Simulators live in runtime/sim.
export * from "./types.js";
export {
  reportDataFor,
  reportDataMatches,
  runtimeInstanceId,
  runtimeTlsReportData,
  runtimeTlsVtpmReportData,
  spkiSha256,
  RUNTIME_TLS_NONCE_BYTES,
} from "./binding.js";
export { appraise, reportDataCheck, type AppraiseOptions, type Appraiser, type EvidenceOf } from "./appraise.js";
export { appraiseSnp, snpClaims } from "./snp/appraise.js";
export {
  DEFAULT_POLICY,
  PolicyError,
  parsePolicy,
  parseSnpPolicy,
  type Policy,
  type SnpPolicy,
  type TrustConfig,
  type SnpTrustConfig,
  type SimulatedSnpAnchor,
} from "./policy.js";
export {
  REPORT_SIZE,
  SIGNED_LENGTH,
  CERT_GUID,
  parseReport,
  parseCertTable,
  buildCertTable,
  decodeTcb,
  encodeTcb,
  productFromCpuid,
  productFromName,
  type SnpProduct,
  type SnpReport,
  type TcbVersion,
  type CertTableEntry,
} from "./snp/abi.js";
export { PINNED_ARK_SHA256, parseVek, parseCert, splitCertificates, type VekCert, type CaCert } from "./snp/certs.js";
export { KdsClient, KdsUnavailableError, type KdsOptions } from "./snp/kds.js";
export { verifySnp, readCertDir, SNP_CHECK_IDS, type SnpVerifyInput, type SnpVerification } from "./snp/verify.js";
export { validateSnpPolicy } from "./snp/validate.js";
export * as tdx from "./tdx/index.js";
export * as azure from "./azure/index.js";
export * as tpm from "./tpm/index.js";
export * as gce from "./gce/index.js";
