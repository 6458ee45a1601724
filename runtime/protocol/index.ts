// runtime/protocol: the one definition of what travels between the enclaivelet, the runtime and its
// clients (provider, CLI). Imports nothing from server/, guest/ or sim/ — only runtime/attestation types.
export { WireFormatError } from "./errors.js";
export {
  EVIDENCE_KINDS,
  decodeEvidence,
  encodeEvidence,
  type EvidenceKind,
  type WireEvidence,
  type WireTpmQuote,
} from "./evidence.js";
export {
  SEAL_HEADER,
  SEAL_MODE,
  SEAL_REQUEST_HEADERS,
  SEAL_KEY_MANAGEMENT,
  SEAL_CONTENT_ENCRYPTION,
  type SealedAnswer,
} from "./seal.js";
export {
  BUNDLE_SECRET_FIELDS,
  decodeBundle,
  type ProvisioningBundle,
  type WireBundle,
  type WireBundleSsh,
  type WireBundleTls,
  type WireHostCertificate,
} from "./bundle.js";
export { formatSecretRef, kvDataPath, matchSecretRef, parseSecretRef, type SecretRef } from "./secret-ref.js";
export { DurationError, isDuration, parseDurationSeconds } from "./duration.js";
export type { AzurePolicy, PlatformFeature, Policy, SnpPolicy, TdxPolicySection } from "./policy.js";
