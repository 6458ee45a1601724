// The fastify adapter: parses HTTP into the core's RawRequest and renders RawResponse with Vault's
// headers. Everything security-relevant (tokens, ACL, sealing, audit) lives in the core; this layer
// adds request-size limits, rate limits and the LIST verb.
import Fastify, { type FastifyInstance, type FastifyServerOptions } from "fastify";
import type tls from "node:tls";
import { listAwareClientErrorHandler } from "./list-verb.js";
import type { Core } from "../vault/core.js";
import { RateLimiter, DEFAULT_RATE_LIMITS, type RateLimitRule } from "./rate-limit.js";
import { canonicalPath } from "../vault/request.js";
import { jsonDepthExceeds, MAX_JSON_DEPTH } from "./json-depth.js";
import {
  registerAttestationRoute,
  type AttestedListener,
  type RuntimeEvidenceSource,
  type RuntimeVtpmSource,
} from "./attested-tls.js";
import type { PeerUnsealService } from "../peer/serve.js";

export interface AppOptions {
  core: Core;
  /** Max request body in bytes (default 1 MiB). */
  bodyLimit?: number;
  rateLimits?: RateLimitRule[];
  /** HTTPS options for fastify (key/cert PEM). */
  https?: { key: string | Buffer; cert: string | Buffer };
  /** Log each request line (never bodies or tokens). Default off. */
  logRequests?: boolean;
  /** Attested TLS: serve GET /v1/sys/attestation over this listener key from this evidence source. */
  attestation?: { listener: () => AttestedListener; source: RuntimeEvidenceSource; vtpm?: RuntimeVtpmSource };
  /** Replica set: serve sys/peer-unseal/* (an attested runtime releases its share to attested peers). */
  peerUnseal?: PeerUnsealService;
}

const SECURITY_HEADERS = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
};

export function buildApp(opts: AppOptions): FastifyInstance {
  const fopts: FastifyServerOptions = {
    bodyLimit: opts.bodyLimit ?? 1024 * 1024,
    // Query strings and bodies can carry secrets: fastify logging stays off; we log paths only.
    logger: false,
    trustProxy: false,
    return503OnClosing: true,
    // Slow clients cannot hold connections open indefinitely (slowloris).
    requestTimeout: 30_000,
    connectionTimeout: 120_000,
  };
  if (opts.https) (fopts as Record<string, unknown>).https = { ...opts.https, minVersion: "TLSv1.2" };
  // Errors fastify raises before routing (undecodable URL, bad content type) in Vault's shape too.
  fopts.frameworkErrors = (err, _req, res) => {
    const reply = res as unknown as import("fastify").FastifyReply;
    const status = (err as { statusCode?: number }).statusCode ?? 400;
    const msg =
      (err as { code?: string }).code === "FST_ERR_BAD_URL" ? "path: invalid percent-encoding" : "bad request";
    void reply
      .code(status >= 400 && status < 500 ? status : 400)
      .headers(SECURITY_HEADERS)
      .type("application/json")
      .send({ errors: [msg] });
  };
  const holder: { app?: FastifyInstance } = {};
  fopts.clientErrorHandler = listAwareClientErrorHandler(() => holder.app!);
  const app = Fastify(fopts);
  holder.app = app;
  const limiter = new RateLimiter(opts.rateLimits ?? DEFAULT_RATE_LIMITS);
  const core = opts.core;

  // Vault accepts JSON whatever the content type (the CLI and some SDKs send none or form types).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "string" }, (_req, body, done) => {
    const text = (body as string).trim();
    if (text === "") return done(null, undefined);
    if (jsonDepthExceeds(text, MAX_JSON_DEPTH))
      return done(
        Object.assign(new Error("failed to parse JSON input: JSON input exceeds allowed nesting depth"), {
          statusCode: 400,
        }),
        undefined,
      );
    try {
      done(null, JSON.parse(text));
    } catch {
      done(Object.assign(new Error("failed to parse JSON input"), { statusCode: 400 }), undefined);
    }
  });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    const msg =
      err.code === "FST_ERR_CTP_BODY_TOO_LARGE"
        ? "request body too large"
        : status === 500
          ? "internal error"
          : err.message;
    void reply
      .code(status)
      .headers(SECURITY_HEADERS)
      .type("application/json")
      .send({ errors: [msg] });
  });
  app.setNotFoundHandler((_req, reply) => {
    void reply.code(404).headers(SECURITY_HEADERS).type("application/json").send({ errors: [] });
  });

  if (opts.attestation)
    registerAttestationRoute(app, {
      ...opts.attestation,
      instanceId: () => opts.core.instanceId,
      rateLimited: (ip) => limiter.check("sys/attestation", ip),
    });

  opts.peerUnseal?.register(app, (path, ip) => limiter.check(path, ip));

  const handler = async (req: import("fastify").FastifyRequest, reply: import("fastify").FastifyReply) => {
    const url = req.url;
    const q = url.indexOf("?");
    let rawPath: string;
    try {
      rawPath = canonicalPath(decodeURIComponent((q === -1 ? url : url.slice(0, q)).slice("/v1/".length)));
    } catch {
      return reply
        .code(400)
        .headers(SECURITY_HEADERS)
        .type("application/json")
        .send({ errors: ["path: invalid percent-encoding"] });
    }
    const query: Record<string, string> = {};
    if (q !== -1)
      for (const [k, v] of Object.entries((req.query ?? {}) as Record<string, unknown>))
        query[k] = Array.isArray(v) ? String(v[0]) : String(v);
    const wait = limiter.check(rawPath.replace(/\/+$/, ""), req.ip);
    if (wait > 0) {
      return reply
        .code(429)
        .headers({ ...SECURITY_HEADERS, "retry-after": String(wait) })
        .type("application/json")
        .send({ errors: ["rate limit exceeded"] });
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers[k] = v;
    const res = await core.handle({
      method: req.method,
      path: rawPath,
      query,
      body: req.body,
      headers,
      clientIp: req.ip,
    });
    if (opts.logRequests) core.logger.info(`${req.method} /v1/${rawPath.split("?")[0]} → ${res.status}`);
    reply.code(res.status).headers(res.headers ? { ...SECURITY_HEADERS, ...res.headers } : SECURITY_HEADERS);
    if (res.body === undefined || res.status === 204) return reply.send();
    if (typeof res.body === "string" || Buffer.isBuffer(res.body)) return reply.send(res.body); // raw response: content-type set by the core
    return reply.type("application/json").send(res.body);
  };
  app.route({
    method: ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"],
    url: "/v1/*",
    handler,
    exposeHeadRoute: false,
  });
  return app;
}

/** Replaces the listener's certificate in place (after `runtime init` issues one from the runtime CA). */
export function setListenerCertificate(app: FastifyInstance, cert: { key: string; cert: string }): boolean {
  const srv = app.server as unknown as Partial<tls.Server>;
  if (typeof srv.setSecureContext !== "function") return false;
  srv.setSecureContext({ key: cert.key, cert: cert.cert });
  return true;
}
