// Response sealing on the wire: a client that holds an attested ephemeral key asks for answers carrying
// secrets to be sealed to it with this request header; the runtime then answers {"sealed": <compact JWE>}
// (ECDH-ES+A256KW / A256GCM to the P-384 key bound in the attestation's REPORT_DATA).

/** The request header (lower case, as node's HTTP parser hands header names over). */
export const SEAL_HEADER = "x-buckypaper-seal";
/** The only sealing mode: to the ephemeral key of the caller's attested login. */
export const SEAL_MODE = "ephemeral";
/** Headers a client adds to ask for a sealed answer. */
export const SEAL_REQUEST_HEADERS: Readonly<Record<typeof SEAL_HEADER, typeof SEAL_MODE>> = Object.freeze({
  [SEAL_HEADER]: SEAL_MODE,
});
/**
 * The JWE algorithms the runtime seals with; operators' recovery shares (runtime/client/recovery-share.ts) use
 * the same pair, so a change here changes both formats (and shares already handed out stay in the old one).
 */
export const SEAL_KEY_MANAGEMENT = "ECDH-ES+A256KW";
export const SEAL_CONTENT_ENCRYPTION = "A256GCM";

/** The body of a sealed answer. */
export interface SealedAnswer {
  sealed: string;
}
