// Google Compute Engine: launch endorsements of Google's firmware (abi → verify → validate, like snp/) and the
// vTPM AK certificate from Google's EK/AK CA (ak-cert.ts, roots in ak-roots.ts).
export * from "./abi.js";
export * from "./verify.js";
export * from "./validate.js";
export * from "./ak-cert.js";
export { GCE_AK_ROOT_FINGERPRINTS, GCE_EK_ROOT_1_SHA256, GCE_EK_AK_CA_ROOT_SHA256 } from "./ak-roots.js";
export * from "./policy.js";
export * from "./appraise.js";
