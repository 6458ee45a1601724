// Trust by pinned CA fingerprint, done safely: a first handshake only collects the certificates the
// server presents (nothing is sent on it); the one whose SHA-256 matches the pin becomes the sole
// trust anchor of the real connection, which then gets full chain and host-name verification.
// (Accepting "any certificate in the chain matches" would let an impostor append the public CA
// certificate to its own chain.)
import tls from "node:tls";
import { isIP } from "node:net";
import { createHash, X509Certificate } from "node:crypto";

export interface PinTarget {
  host: string;
  port: number;
  timeoutMs?: number;
}

/** DER certificates the server presents, leaf first. Rejects with the socket error or "timeout". */
export function presentedCertificates(t: PinTarget): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: t.host,
      port: t.port,
      servername: isIP(t.host) ? undefined : t.host,
      rejectUnauthorized: false, // only reading the chain here; trust is decided by the caller
      timeout: t.timeoutMs ?? 15_000,
    });
    socket.once("secureConnect", () => {
      const out: Buffer[] = [];
      let c: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
      while (c && c.raw && !out.some((d) => d.equals(c!.raw))) {
        out.push(c.raw);
        c = c.issuerCertificate;
      }
      socket.destroy();
      resolve(out);
    });
    socket.once("timeout", () => {
      socket.destroy();
      reject(Object.assign(new Error(`TLS handshake with ${t.host}:${t.port} timed out`), { code: "ETIMEDOUT" }));
    });
    socket.once("error", reject);
  });
}

export const sha256Hex = (der: Uint8Array): string => createHash("sha256").update(der).digest("hex");

/**
 * The presented certificate matching the pin, as PEM, or a reason why none may be trusted. A pinned
 * certificate must be a CA unless it is the only one presented (a self-signed server certificate).
 */
export function pinnedAnchor(ders: Buffer[], pinSha256: string): { pem: string } | { error: string } {
  const pin = pinSha256
    .replace(/^sha256:/i, "")
    .replace(/:/g, "")
    .toLowerCase();
  const match = ders.find((d) => sha256Hex(d) === pin);
  if (!match) {
    const seen = ders.map((d) => `${sha256Hex(d).slice(0, 16)}…`).join(", ");
    return {
      error: `no certificate presented matches the pinned runtime CA ${pin.slice(0, 16)}… (saw ${seen || "none"})`,
    };
  }
  const cert = new X509Certificate(match);
  if (!cert.ca && ders.length > 1) return { error: "the pinned certificate is not a CA certificate" };
  return { pem: cert.toString() };
}
