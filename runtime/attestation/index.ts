// Public surface of evidence verification: the shared vocabulary, the appraise() entry point, policy and
// trust configuration, and the SEV-SNP library (abi → verify → validate, KDS); simulators live in runtime/sim.
// TDX and Azure modules are reached through appraise() or imported from ./tdx/index.js, ./azure/index.js.
export * from "./types.js";
export { reportDataFor, reportDataMatches } from "./binding.js";
export { appraise, reportDataCheck, type AppraiseOptions } from "./appraise.js";
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
