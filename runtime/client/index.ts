// Public surface of the runtime client (the package's `buckypaper/runtime/client`): JSON over HTTP(S) to a
// running vHSM server, trusting a CA file or a pinned certificate fingerprint (tls-pin.ts).
export { runtimeRequest, normalizeFingerprint, RuntimeClientError, type ClientTls } from "./request.js";
export { presentedCertificates, pinnedAnchor, type PinTarget } from "./tls-pin.js";
