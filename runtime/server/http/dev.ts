// `runtime dev` and the test helper: an in-memory runtime, initialized with one key share, unsealed,
// with KV v2 at secret/ — like `vault server -dev`. Nothing survives the process.
import { Core, type CoreLogger } from "../vault/core.js";
import { MemoryStorage } from "../storage/memory.js";
import type { Storage } from "../storage/types.js";
import type { BackendRegistry } from "../vault/registry.js";
import { builtinRegistry } from "../engines.js";
import { buildApp } from "./app.js";
import { responseSealer } from "../nitride/seal.js";
import { createRuntimeCa, issueServerCert, certFingerprint } from "./tls.js";
import type { RateLimitRule } from "./rate-limit.js";
import type { FastifyInstance } from "fastify";

export interface DevRuntimeOptions {
  host?: string;
  port?: number;
  tls?: boolean;
  /** More names/addresses for the listener certificate (e.g. the address guests reach it by). */
  tlsHosts?: string[];
  registry?: BackendRegistry;
  storage?: Storage;
  rateLimits?: RateLimitRule[];
  logger?: CoreLogger;
  /** Use this exact root token (like `vault server -dev -dev-root-token-id`). */
  rootTokenId?: string;
  /** Extra options passed to the core (e.g. responseSealer). */
  core?: Partial<ConstructorParameters<typeof Core>[0]>;
}

export interface DevRuntime {
  url: string;
  rootToken: string;
  unsealKey: string;
  caPem?: string;
  caFingerprint?: string;
  core: Core;
  app: FastifyInstance;
  close(): Promise<void>;
}

export async function startDevRuntime(o: DevRuntimeOptions = {}): Promise<DevRuntime> {
  const host = o.host ?? "127.0.0.1";
  let https: { key: string; cert: string } | undefined;
  let ca: { certPem: string; keyPem: string } | undefined;
  if (o.tls) {
    ca = await createRuntimeCa("Buckypaper dev runtime CA");
    const leaf = await issueServerCert(ca, [host, "localhost", "127.0.0.1", ...(o.tlsHosts ?? [])]);
    https = { key: leaf.keyPem, cert: leaf.certPem };
  }
  const physical = o.storage ?? new MemoryStorage();
  const scheme = https ? "https" : "http";
  const core = new Core({
    physical,
    registry: o.registry ?? builtinRegistry(),
    logger: o.logger,
    responseSealer,
    ...o.core,
  });
  const init = await core.initialize(1, 1);
  await core.unsealWith(init.keys);
  await core.writeTable("secret", (t) => [...t, { ...newKv() }]);
  let rootToken = init.root_token;
  if (o.rootTokenId) {
    rootToken = (await core.tokens!.createRoot(o.rootTokenId)).token;
    const generated = await core.tokens!.lookup(init.root_token);
    if (generated) await core.tokens!.revoke(generated);
  }
  const app = buildApp({ core, https, rateLimits: o.rateLimits });
  await app.listen({ host, port: o.port ?? 8200 });
  const addr = app.server.address();
  const port = typeof addr === "object" && addr ? addr.port : (o.port ?? 8200);
  const url = `${scheme}://${host.includes(":") ? `[${host}]` : host}:${port}`;
  (core.opts as { apiAddr?: string }).apiAddr ??= url;
  return {
    url,
    rootToken,
    unsealKey: init.keys[0],
    caPem: ca?.certPem,
    caFingerprint: ca && certFingerprint(ca.certPem),
    core,
    app,
    close: async () => {
      await app.close();
      await core.seal();
      await physical.close();
    },
  };
}

import { newMount } from "../vault/mounts.js";
function newKv() {
  return newMount("secret", "secret/", "kv", { description: "key/value secret storage", options: { version: "2" } });
}
