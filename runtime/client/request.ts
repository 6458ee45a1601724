// A minimal client for the runtime's own CLI commands (init, unseal, status): JSON over HTTP(S),
// trusting either a CA file, a pinned SHA-256 certificate fingerprint (the presented certificate that
// matches becomes the sole anchor of a fully verified connection: runtime/tls-pin.ts), or — only when
// asked explicitly — nothing. Unseal keys are sent only after that verification.
import http from "node:http";
import https from "node:https";
import type { X509Certificate } from "node:crypto";
import type { PeerCertificate } from "node:tls";
import { pinnedAnchor, presentedCertificates } from "./tls-pin.js";
import type { RuntimeTrust } from "./connection.js";

/** How the CLI trusts the runtime: the one connection type's trust part, or — only when asked — nothing. */
export interface ClientTls extends RuntimeTrust {
  insecure?: boolean;
}

export class RuntimeClientError extends Error {
  override name = "RuntimeClientError";
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

export function normalizeFingerprint(fp: string): string {
  return fp
    .replace(/^sha256:/i, "")
    .replace(/:/g, "")
    .toLowerCase();
}

export async function runtimeRequest(
  addr: string,
  method: string,
  path: string,
  body?: unknown,
  o: ClientTls & { token?: string } = {},
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped JSON from the API
): Promise<{ status: number; body: any }> {
  const url = new URL(`/v1/${path.replace(/^\/+/, "")}`, addr);
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const headers: Record<string, string> = { "x-vault-request": "true" };
  if (payload) {
    headers["content-type"] = "application/json";
    headers["content-length"] = String(payload.length);
  }
  if (o.token) headers["x-vault-token"] = o.token;
  const isTls = url.protocol === "https:";
  const pin = o.caFingerprint ? normalizeFingerprint(o.caFingerprint) : undefined;
  const opts: https.RequestOptions = { method, headers };
  if (isTls) {
    if (o.caPem) opts.ca = o.caPem;
    if (pin) {
      const host = url.hostname.replace(/^\[|\]$/g, "");
      let ders: Buffer[];
      try {
        ders = await presentedCertificates({ host, port: Number(url.port || 443) });
      } catch (e) {
        throw new RuntimeClientError(
          `cannot reach ${url.origin}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        );
      }
      const anchor = pinnedAnchor(ders, pin);
      if ("error" in anchor)
        throw new RuntimeClientError(
          `TLS: ${anchor.error}; refusing the pinned fingerprint check before sending anything`,
        );
      opts.ca = anchor.pem;
    } else if (o.insecure) {
      opts.rejectUnauthorized = false;
      opts.checkServerIdentity = () => undefined;
    }
  }
  return new Promise((resolve, reject) => {
    const req = (isTls ? https : http).request(url, opts, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        try {
          resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined });
        } catch {
          reject(new RuntimeClientError(`unexpected non-JSON response (${res.statusCode}) from ${url.origin}`));
        }
      });
    });
    req.on("error", (e) =>
      reject(new RuntimeClientError(`cannot reach ${url.origin}: ${(e as NodeJS.ErrnoException).code ?? e.message}`)),
    );
    req.setTimeout(30_000, () => req.destroy(new Error("timeout")));
    req.end(payload);
  });
}

export type { PeerCertificate, X509Certificate };
