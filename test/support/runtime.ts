// Starts a real runtime (dev mode: in-memory storage, unsealed, KV v2 at secret/) listening on
// 127.0.0.1:<free port>, for tests that talk HTTP to it. Engines under test can be added through
// `register` (see docs/runtime-internals.md).
import { startDevRuntime, type DevRuntime } from "../../runtime/server/http/dev.js";
import { builtinRegistry } from "../../runtime/server/engines.js";
import type { BackendRegistry } from "../../runtime/server/vault/registry.js";
import type { RateLimitRule } from "../../runtime/server/http/rate-limit.js";
import type { Storage } from "../../runtime/server/storage/types.js";
import type { CoreOptions } from "../../runtime/server/vault/core.js";

export interface TestRuntimeOptions {
  /** Serve HTTPS with a fresh runtime CA (caPem is returned). */
  tls?: boolean;
  /** More names/addresses for the listener certificate. */
  tlsHosts?: string[];
  /** Add or replace engine factories before start. */
  register?: (registry: BackendRegistry) => void;
  /** Secret engines to mount after start: path → type (+ options), e.g. { "pki/": { type: "pki" } }. */
  mounts?: Record<string, { type: string; options?: Record<string, string> }>;
  /** Auth methods to enable: path (without "auth/") → type, e.g. { "jwt/": { type: "jwt" } }. */
  auth?: Record<string, { type: string }>;
  /** Default: generous limits so tests are not throttled; pass [] to disable or real rules to test them. */
  rateLimits?: RateLimitRule[];
  storage?: Storage;
  core?: Partial<CoreOptions>;
}

export interface TestRuntime {
  url: string;
  rootToken: string;
  caPem?: string;
  caFingerprint?: string;
  runtime: DevRuntime;
  /** fetch against the runtime with the root token (or `token`), JSON in and out. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped JSON from the API
  api(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: any }>;
  close(): Promise<void>;
}

export async function startTestRuntime(opts: TestRuntimeOptions = {}): Promise<TestRuntime> {
  const registry = builtinRegistry();
  opts.register?.(registry);
  const rt = await startDevRuntime({
    port: 0,
    tls: opts.tls,
    tlsHosts: opts.tlsHosts,
    registry,
    storage: opts.storage,
    core: opts.core,
    rateLimits: opts.rateLimits ?? [],
  });
  const api: TestRuntime["api"] = async (method, path, body, token = rt.rootToken) => {
    if (rt.caPem) throw new Error("api() helper speaks plain HTTP; with tls use a client configured with caPem");
    const res = await fetch(`${rt.url}/v1/${path.replace(/^\/+/, "")}`, {
      method,
      headers: { "x-vault-token": token, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  for (const [path, m] of Object.entries(opts.mounts ?? {})) {
    const r = await api("POST", `sys/mounts/${path}`, { type: m.type, options: m.options });
    if (r.status >= 300) throw new Error(`mounting ${path}: ${JSON.stringify(r.body)}`);
  }
  for (const [path, m] of Object.entries(opts.auth ?? {})) {
    const r = await api("POST", `sys/auth/${path}`, { type: m.type });
    if (r.status >= 300) throw new Error(`enabling auth ${path}: ${JSON.stringify(r.body)}`);
  }
  return {
    url: rt.url,
    rootToken: rt.rootToken,
    caPem: rt.caPem,
    caFingerprint: rt.caFingerprint,
    runtime: rt,
    api,
    close: rt.close,
  };
}
