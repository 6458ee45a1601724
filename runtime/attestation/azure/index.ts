// Azure confidential VMs (SEV-SNP or TDX behind the paravisor), the folder's public surface: formats (abi,
// tpm, evidence files) → verify (hardware evidence, runtime binding, vTPM) → validate → appraise.
export {
  parseHclReport,
  expectedReportData,
  hardwareReportData,
  attestationKey,
  type HclReport,
  type RuntimeClaims,
} from "./abi.js";
export { parseTpmsAttest, verifyTpmQuote, type TpmsAttest } from "./tpm.js";
export {
  parseAzureEvidence,
  parseBincodeTpmQuote,
  parseTpmQuoteFile,
  bytesField,
  type AzureEvidence,
} from "./evidence.js";
export { parseAzurePolicy, validateAzure, type AzurePolicy } from "./validate.js";

export { appraiseAzure, verifyAzure, type AzureTrust, type AzureVerifyOptions } from "./appraise.js";
