// Nitride's view of Vault durations: the framework's optional-duration reader (unset or zero means
// "not given"), under the name Nitride's modules use.
export { parseOptionalDuration as parseDuration } from "../vault/duration.js";
