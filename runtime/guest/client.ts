// HTTPS client for the runtime that trusts exactly one CA: the one whose SHA-256 fingerprint is
// pinned in user-data. The first handshake only collects the certificates the server presents (no
// request is sent on it); the one matching the pin becomes the sole trust anchor, and every request
// is then verified normally against it (chain + host name) by OpenSSL.
import https from "node:https";
import { pinnedAnchor, presentedCertificates } from "../client/tls-pin.js";
import { isIP } from "node:net";

/** The runtime could not be reached or answered 5xx/429: worth retrying with backoff. */
export class RuntimeUnavailableError extends Error {
  override name = "RuntimeUnavailableError";
  readonly retryable = true;
}

/** The server's certificates do not include the pinned CA: possibly an impostor, never retried. */
export class PinMismatchError extends Error {
  override name = "PinMismatchError";
}

/** A definite answer other than success (4xx): names the route and Vault's error text. */
export class RuntimeError extends Error {
  override name = "RuntimeError";
  constructor(
    readonly route: string,
    readonly status: number,
    readonly errors: string[],
    readonly body: unknown,
  ) {
    super(`${route}: HTTP ${status}${errors.length ? `: ${errors.join("; ")}` : ""}`);
  }
}

export interface RequestOptions {
  body?: unknown;
  token?: string;
  headers?: Record<string, string>;
}

export interface RuntimeResponse {
  status: number;
  body: unknown;
}

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
  "ECONNABORTED",
]);

export class RuntimeClient {
  #caPem?: string;
  readonly #url: URL;

  constructor(
    baseUrl: string,
    readonly caSha256: string,
    readonly timeoutMs = 15_000,
  ) {
    this.#url = new URL(baseUrl);
    if (this.#url.protocol !== "https:") throw new Error("runtime URL must be https://");
  }

  private get host(): string {
    return this.#url.hostname.replace(/^\[|\]$/g, "");
  }
  private get port(): number {
    return Number(this.#url.port || 443);
  }

  /** Finds the pinned CA among the certificates the server presents (runtime/tls-pin.ts). */
  async pinnedCaPem(): Promise<string> {
    if (this.#caPem) return this.#caPem;
    let ders: Buffer[];
    try {
      ders = await presentedCertificates({ host: this.host, port: this.port, timeoutMs: this.timeoutMs });
    } catch (e) {
      throw networkError(e as NodeJS.ErrnoException, this.#url.host);
    }
    const anchor = pinnedAnchor(ders, this.caSha256);
    if ("error" in anchor) throw new PinMismatchError(`${this.#url.host}: ${anchor.error}`);
    this.#caPem = anchor.pem;
    return this.#caPem;
  }

  async request(method: string, path: string, o: RequestOptions = {}): Promise<RuntimeResponse> {
    const ca = await this.pinnedCaPem();
    const payload = o.body === undefined ? undefined : Buffer.from(JSON.stringify(o.body));
    const route = `${method} /v1/${path}`;
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: this.host,
          port: this.port,
          method,
          path: `${this.#url.pathname.replace(/\/+$/, "")}/v1/${path}`,
          ca,
          servername: isIP(this.host) ? undefined : this.host,
          timeout: this.timeoutMs,
          agent: false,
          headers: {
            accept: "application/json",
            ...(payload ? { "content-type": "application/json", "content-length": String(payload.length) } : {}),
            ...(o.token ? { "x-vault-token": o.token } : {}),
            ...o.headers,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (d: Buffer) => chunks.push(d));
          res.on("error", (e) => reject(networkError(e as NodeJS.ErrnoException, this.#url.host)));
          res.on("end", () => {
            const status = res.statusCode ?? 0;
            const text = Buffer.concat(chunks).toString("utf8");
            let body: unknown = undefined;
            if (text) {
              try {
                body = JSON.parse(text);
              } catch {
                body = { errors: [`non-JSON answer (${text.length} bytes)`] };
              }
            }
            if (status >= 500 || status === 429)
              return reject(
                new RuntimeUnavailableError(
                  `${route}: HTTP ${status}${vaultErrors(body).length ? `: ${vaultErrors(body).join("; ")}` : ""}`,
                ),
              );
            if (status >= 400) return reject(new RuntimeError(route, status, vaultErrors(body), body));
            resolve({ status, body });
          });
        },
      );
      req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "ETIMEDOUT" })));
      req.on("error", (e: NodeJS.ErrnoException) => {
        // A certificate failure after the pin matched (wrong host name, expired leaf) is not transient.
        if (e.code && /CERT|SELF_SIGNED|ALTNAME|UNABLE_TO/.test(e.code))
          reject(new PinMismatchError(`TLS verification against the pinned CA failed: ${e.code}`));
        else reject(networkError(e, this.#url.host));
      });
      req.end(payload);
    });
  }
}

function vaultErrors(body: unknown): string[] {
  const e = (body as { errors?: unknown })?.errors;
  return Array.isArray(e) ? e.map(String) : [];
}

function networkError(e: NodeJS.ErrnoException, host: string): Error {
  if (e instanceof RuntimeUnavailableError) return e;
  if (e.code && NETWORK_CODES.has(e.code)) return new RuntimeUnavailableError(`runtime ${host} unreachable: ${e.code}`);
  return new RuntimeUnavailableError(`runtime ${host}: ${e.code ?? e.message}`);
}
