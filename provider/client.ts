// Minimal HTTP client for the runtime's API (Vault-compatible + Nitride), used by the Pulumi dynamic
// providers. No Pulumi imports: it runs inside the dynamic-provider process, where only what is
// imported at call time exists, and it is tested on its own against a real runtime.
import * as http from "node:http";
import * as https from "node:https";
import * as tls from "node:tls";
import { createHash, X509Certificate } from "node:crypto";

import type { RuntimeConnection } from "../runtime/client/connection.js";
import {
  AttestedRuntimes,
  RuntimeAttestationError,
  requestOver,
  runtimeExpectation,
  type RuntimeExpectation,
} from "../runtime/client/attested-tls.js";
import { pinnedAnchor } from "../runtime/client/tls-pin.js";
import { deployerToken } from "../runtime/client/deployer.js";

/** Where the runtime is and how to authenticate: the one connection type (runtime/client/connection.ts). */
export type { RuntimeConnection };

/** A non-2xx answer. The message carries the runtime's error strings, never the request body. */
export class RuntimeApiError extends Error {
  override name = "RuntimeApiError";
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly errors: string[],
  ) {
    super(`${method} ${path}: HTTP ${status}${errors.length ? `: ${errors.join("; ")}` : ""}`);
  }
}

/** Bad connection settings, named by field. */
export class RuntimeConnectionError extends Error {
  override name = "RuntimeConnectionError";
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`runtime connection: ${field} ${problem}`);
  }
}

export interface RuntimeResponse {
  status: number;
  /** Parsed JSON body, or undefined for 204 / empty bodies. */
  body: unknown;
}

/** SHA-256 (lowercase hex, no colons) of a PEM certificate's DER. */
export function certFingerprint(pem: string): string {
  return createHash("sha256").update(new X509Certificate(pem).raw).digest("hex");
}

function normaliseFingerprint(fp: string): string {
  return fp.replace(/:/g, "").toLowerCase();
}

export function checkConnection(c: RuntimeConnection): URL {
  if (!c || typeof c !== "object") throw new RuntimeConnectionError("connection", "is missing");
  if (typeof c.url !== "string" || c.url === "") throw new RuntimeConnectionError("url", "is missing");
  let u: URL;
  try {
    u = new URL(c.url);
  } catch {
    throw new RuntimeConnectionError("url", `is not a URL: '${c.url}'`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    throw new RuntimeConnectionError("url", `must be http or https, got '${u.protocol}'`);
  if (c.deployer === undefined && (typeof c.token !== "string" || c.token === ""))
    throw new RuntimeConnectionError(
      "token",
      "is missing: pass the deployer credential a Vhsm set up (`deployer: vhsm.deployer`) or an operator token " +
        "(a Vhsm keeps no root token unless insecureKeepRootTokenInState is set)",
    );
  if (c.deployer !== undefined && (typeof c.deployer?.keyFile !== "string" || typeof c.deployer?.mount !== "string"))
    throw new RuntimeConnectionError("deployer", "must have mount, role and keyFile");
  if (c.caPem !== undefined && c.caPem !== "" && c.caFingerprint) {
    let actual: string;
    try {
      actual = certFingerprint(c.caPem);
    } catch {
      throw new RuntimeConnectionError("caPem", "is not a PEM certificate");
    }
    if (actual !== normaliseFingerprint(c.caFingerprint)) {
      throw new RuntimeConnectionError("caFingerprint", `does not match caPem (caPem has ${actual})`);
    }
  }
  return u;
}

/**
 * Connects without sending anything, finds the certificate whose SHA-256 is `fingerprint` in the chain
 * the server presents and returns it as PEM. Used as the trust anchor of a normal, fully verified
 * connection afterwards: the pin selects the CA, the TLS stack still checks signatures and host name.
 */
export async function fetchPinnedCertificate(url: string, fingerprint: string, timeoutMs = 10_000): Promise<string> {
  const u = new URL(url);
  const want = normaliseFingerprint(fingerprint);
  return new Promise<string>((resolve, reject) => {
    const host = u.hostname.replace(/^\[|\]$/g, "");
    const sock = tls.connect({
      host,
      port: Number(u.port || 443),
      servername: /^[\d.:]+$/.test(host) ? undefined : host,
      rejectUnauthorized: false,
    });
    sock.setTimeout(timeoutMs, () => sock.destroy(new Error(`TLS to ${u.host}: no handshake within ${timeoutMs} ms`)));
    sock.on("error", (e) => reject(new Error(`TLS to ${u.host}: ${e.message}`)));
    sock.on("secureConnect", () => {
      let c = sock.getPeerCertificate(true) as tls.DetailedPeerCertificate | undefined;
      const seen = new Set<string>();
      while (c?.raw && !seen.has(c.fingerprint256)) {
        seen.add(c.fingerprint256);
        if (createHash("sha256").update(c.raw).digest("hex") === want) {
          sock.destroy();
          resolve(new X509Certificate(c.raw).toString());
          return;
        }
        c = c.issuerCertificate as tls.DetailedPeerCertificate | undefined;
      }
      sock.destroy();
      reject(new RuntimeConnectionError("caFingerprint", `matches no certificate in the chain ${u.host} presents`));
    });
  });
}

/** Attested runtimes of this provider process: a runtime key is verified once per expectation and SPKI. */
const attested = new AttestedRuntimes();

/** Every replica (replicaUrls, else the url) verified; returns the expectation for the pinned request. */
async function verifiedRuntime(c: RuntimeConnection): Promise<RuntimeExpectation> {
  let expected: RuntimeExpectation;
  try {
    expected = runtimeExpectation(c.attestation!, "connection.attestation");
  } catch (e) {
    throw new RuntimeConnectionError("attestation", (e as RuntimeAttestationError).reason);
  }
  const urls = c.attestation!.replicaUrls?.length ? c.attestation!.replicaUrls : [c.url];
  if (!urls.some((u) => new URL(u).origin === new URL(c.url).origin))
    throw new RuntimeConnectionError("attestation.replicaUrls", `must include the connection url ${c.url}`);
  for (const u of urls) await attested.ensure(u, expected);
  return expected;
}

/**
 * A request over attested TLS: nothing is sent before every replica proved its measurement and the socket that
 * carries the request presented a verified key. With caFingerprint as well, the presented chain must match it too.
 */
async function attestedRequest(
  c: RuntimeConnection,
  target: URL,
  verb: string,
  headers: Record<string, string>,
  payload: Buffer | undefined,
  timeoutMs: number,
): Promise<{ status: number; text: string }> {
  if (target.protocol !== "https:") throw new RuntimeConnectionError("url", "must be https:// with attestation");
  const expected = await verifiedRuntime(c);
  const socket = await attested.connect(c.url, expected);
  // caPem / caFingerprint in addition: the presented chain must also contain that certificate.
  const pin = c.caFingerprint ?? (c.caPem ? certFingerprint(c.caPem) : undefined);
  if (pin) {
    const ders: Buffer[] = [];
    let p = socket.getPeerCertificate(true) as tls.DetailedPeerCertificate | undefined;
    while (p?.raw && !ders.some((d) => d.equals(p!.raw))) {
      ders.push(p.raw);
      p = p.issuerCertificate;
    }
    const anchor = pinnedAnchor(ders, pin);
    if ("error" in anchor) {
      socket.destroy();
      throw new RuntimeConnectionError(c.caFingerprint ? "caFingerprint" : "caPem", anchor.error);
    }
  }
  return requestOver(socket, c.url, verb, `${target.pathname}${target.search}`, { headers, body: payload, timeoutMs });
}

/** One request. 404 is returned (not thrown) so callers can treat "gone" as a state, other errors throw. */
export async function runtimeRequest(
  c: RuntimeConnection,
  method: "GET" | "PUT" | "POST" | "DELETE" | "LIST",
  path: string,
  body?: unknown,
  timeoutMs = 30_000,
): Promise<RuntimeResponse> {
  const base = checkConnection(c);
  const token = c.token || (await deployerToken(c.url, c.deployer!, (p, b) => loginCall(c, p, b, timeoutMs)));
  const target = new URL(`/v1/${path.replace(/^\/+/, "")}`, base);
  const verb = method === "LIST" ? "GET" : method;
  if (method === "LIST") target.searchParams.set("list", "true");
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body), "utf8");
  const headers: Record<string, string> = {
    "X-Vault-Token": token,
    "X-Vault-Request": "true",
    Accept: "application/json",
  };
  if (payload) {
    headers["Content-Type"] = "application/json";
    headers["Content-Length"] = String(payload.length);
  }
  const lib = target.protocol === "https:" ? https : http;
  let ca = c.caPem;
  if (target.protocol === "https:" && !ca && c.caFingerprint && !c.attestation)
    ca = await fetchPinnedCertificate(c.url, c.caFingerprint);
  const tlsOpts = target.protocol === "https:" && ca ? { ca } : {};
  const { status, text } = c.attestation
    ? await attestedRequest(c, target, verb, headers, payload, timeoutMs)
    : await new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = lib.request(target, { method: verb, headers, timeout: timeoutMs, ...tlsOpts }, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (d: Buffer) => chunks.push(d));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
          res.on("error", reject);
        });
        req.on("timeout", () =>
          req.destroy(new Error(`${method} ${target.pathname}: no answer within ${timeoutMs} ms`)),
        );
        req.on("error", (e) => reject(new Error(`${method} ${target.pathname}: ${e.message}`)));
        req.end(payload);
      });
  let parsed: unknown;
  if (text.trim() !== "") {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  if (status === 404 || (status >= 200 && status < 300)) return { status, body: parsed };
  const errors =
    parsed && typeof parsed === "object" && Array.isArray((parsed as { errors?: unknown }).errors)
      ? ((parsed as { errors: unknown[] }).errors.filter((e) => typeof e === "string") as string[])
      : [];
  throw new RuntimeApiError(method, target.pathname, status, errors);
}

/** The deployer login: unauthenticated, so sent with a placeholder token that the runtime ignores. */
async function loginCall(c: RuntimeConnection, path: string, body: unknown, timeoutMs: number) {
  const r = await runtimeRequest({ ...c, deployer: undefined, token: "-" }, "POST", path, body, timeoutMs);
  if (r.status === 404) throw new RuntimeApiError("POST", `/v1/${path}`, 404, ["deployer auth mount not found"]);
  return (r.body as { auth?: { client_token?: string; lease_duration?: number } } | undefined)?.auth;
}

/** The `data` member of a Vault envelope, or undefined when absent/404. */
export function dataOf(r: RuntimeResponse): Record<string, unknown> | undefined {
  if (r.status === 404) return undefined;
  const d = (r.body as { data?: unknown } | undefined)?.data;
  return d && typeof d === "object" && !Array.isArray(d) ? (d as Record<string, unknown>) : undefined;
}
