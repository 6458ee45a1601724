// HTTPS client for the runtime that trusts exactly one CA: the one whose SHA-256 fingerprint is
// pinned in user-data. The first handshake only collects the certificates the server presents (no
// request is sent on it); the one matching the pin becomes the sole trust anchor, and every request
// is then verified normally against it (chain + host name) by OpenSSL.
// With runtimeAttestation, trust comes from the runtime's own evidence instead (runtime/client/attested-tls.ts):
// every replica is verified (measurement, policy, TLS key bound with a fresh nonce) before anything is sent, and
// each request travels on a connection pinned to the attested key; a CA pin given as well is checked in addition.
import https from "node:https";
import type tls from "node:tls";
import { pinnedAnchor, presentedCertificates } from "../client/tls-pin.js";
import {
  AttestedRuntimes,
  RuntimeAttestationError,
  requestOver,
  runtimeExpectation,
  type RuntimeExpectation,
} from "../client/attested-tls.js";
import type { RuntimeAttestation } from "../client/connection.js";
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
  readonly #expected?: RuntimeExpectation;
  readonly #replicas: string[];
  readonly #attested = new AttestedRuntimes();

  constructor(
    baseUrl: string,
    readonly caSha256: string | undefined,
    readonly timeoutMs = 15_000,
    readonly attestation?: RuntimeAttestation,
  ) {
    this.#url = new URL(baseUrl);
    if (this.#url.protocol !== "https:") throw new Error("runtime URL must be https://");
    if (!caSha256 && !attestation) throw new Error("runtime trust: a CA pin or attestation expectations are required");
    if (attestation) this.#expected = runtimeExpectation(attestation, "runtimeAttestation");
    this.#replicas = attestation?.replicaUrls?.length ? attestation.replicaUrls : [baseUrl];
  }

  /**
   * Attested TLS: every replica verified (cached per key), then a socket to this runtime pinned to its attested
   * key. An unreachable runtime is retryable; a runtime that fails its proof is refused at once.
   */
  async #attestedSocket(): Promise<tls.TLSSocket> {
    const expected = this.#expected!;
    let socket: tls.TLSSocket;
    try {
      for (const u of this.#replicas) await this.#attested.ensure(u, expected);
      socket = await this.#attested.connect(this.#url.href, expected);
    } catch (e) {
      if (e instanceof RuntimeAttestationError && !/^tls\.connect:|HTTP (5\d\d|429)/.test(e.reason))
        throw new PinMismatchError(e.message);
      throw new RuntimeUnavailableError(`runtime ${this.#url.host}: ${(e as Error).message}`);
    }
    if (this.caSha256) {
      const ders: Buffer[] = [];
      let p = socket.getPeerCertificate(true) as tls.DetailedPeerCertificate | undefined;
      while (p?.raw && !ders.some((d) => d.equals(p!.raw))) {
        ders.push(p.raw);
        p = p.issuerCertificate;
      }
      const anchor = pinnedAnchor(ders, this.caSha256);
      if ("error" in anchor) {
        socket.destroy();
        throw new PinMismatchError(`${this.#url.host}: ${anchor.error}`);
      }
    }
    return socket;
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
    if (!this.caSha256) throw new PinMismatchError("no CA pin configured");
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
    if (this.#expected) return this.#attestedRequest(method, path, o);
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
            try {
              resolve(answer(route, res.statusCode ?? 0, Buffer.concat(chunks).toString("utf8")));
            } catch (e) {
              reject(e as Error);
            }
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

  async #attestedRequest(method: string, path: string, o: RequestOptions): Promise<RuntimeResponse> {
    const socket = await this.#attestedSocket();
    const payload = o.body === undefined ? undefined : Buffer.from(JSON.stringify(o.body));
    const route = `${method} /v1/${path}`;
    let r;
    try {
      r = await requestOver(socket, this.#url.href, method, `/v1/${path}`, {
        headers: {
          accept: "application/json",
          ...(payload ? { "content-type": "application/json", "content-length": String(payload.length) } : {}),
          ...(o.token ? { "x-vault-token": o.token } : {}),
          ...o.headers,
        },
        body: payload,
        timeoutMs: this.timeoutMs,
      });
    } catch (e) {
      throw networkError(e as NodeJS.ErrnoException, this.#url.host);
    }
    return answer(route, r.status, r.text);
  }
}

/** The answer as the agent sees it: 5xx/429 retryable, other 4xx final, else the parsed body. */
function answer(route: string, status: number, text: string): RuntimeResponse {
  let body: unknown = undefined;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = { errors: [`non-JSON answer (${text.length} bytes)`] };
    }
  }
  if (status >= 500 || status === 429)
    throw new RuntimeUnavailableError(
      `${route}: HTTP ${status}${vaultErrors(body).length ? `: ${vaultErrors(body).join("; ")}` : ""}`,
    );
  if (status >= 400) throw new RuntimeError(route, status, vaultErrors(body), body);
  return { status, body };
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
