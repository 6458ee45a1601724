// How a workload binds Nitride's nonce and its ephemeral public key into the 64-byte REPORT_DATA.
//   REPORT_DATA = SHA-512( "buckypaper-v1" ‖ nonce ‖ SPKI-DER(ephemeral public key) )
// A domain-separation prefix keeps these bytes from meaning anything in another protocol; SHA-512
// fills the 64 bytes exactly, so no padding convention is needed.
import { createHash, timingSafeEqual } from "node:crypto";

const DOMAIN = Buffer.from("buckypaper-v1", "utf8");

export function reportDataFor(nonce: Uint8Array, ephemeralSpkiDer: Uint8Array): Buffer {
  return createHash("sha512").update(DOMAIN).update(nonce).update(ephemeralSpkiDer).digest();
}

export function reportDataMatches(reportData: Uint8Array, nonce: Uint8Array, ephemeralSpkiDer: Uint8Array): boolean {
  const want = reportDataFor(nonce, ephemeralSpkiDer);
  return reportData.length === 64 && timingSafeEqual(Buffer.from(reportData), want);
}
