// Intel TDX evidence, the folder's public surface: parse (abi) → verify signatures and PCK chain (verify)
// → collateral (TCB status) → policy (validate), composed by appraise.ts into the shared Verdict.

export * from "./abi.js";
export {
  INTEL_SGX_ROOT_CA_SHA256,
  INTEL_TD_QE_MRSIGNER,
  verifyQuote,
  type TdxTrustOptions,
  type QuoteVerification,
  type PckChain,
} from "./verify.js";
export {
  loadCollateralDir,
  addCollateralFile,
  emptyCollateral,
  evaluateCollateral,
  fetchPcsCollateral,
  type TdxCollateral,
} from "./collateral.js";
export {
  validateBody,
  validateTcbStatus,
  checkTdxPolicy,
  DEFAULT_ALLOWED_TCB_STATUSES,
  type TdxPolicy,
} from "./validate.js";
export { appraiseTdx, verifyTdx, tdxClaims, evidenceDigest, type TdxVerifyOptions } from "./appraise.js";
