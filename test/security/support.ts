// Hostile-client harness: real runtimes over real HTTP. `runtime server` runs as a process tree
// (SQLite, `workers = 2` where the attack depends on it); `runtime dev` runs in this process (the
// Nitride stack with the SNP simulator, see test/runtime/server/nitride/nitride-support.ts).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startServerProc, type ServerProc } from "../runtime/server/core-procs.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped JSON from the API
export type Json = any;

export interface ServerUnderAttack {
  url: string;
  root: string;
  /** The unseal key shares (base64) sys/init returned. */
  keys: string[];
  dir: string;
  proc: ServerProc;
  /** One request on a fresh connection (so the cluster spreads requests over the workers). */
  call(method: string, p: string, body?: unknown, token?: string): Promise<{ status: number; body: Json }>;
  close(): Promise<void>;
}

/** One request to the runtime at `base()` on a fresh connection; the body parsed when it is JSON, else the text. */
export function httpCaller(base: () => string): ServerUnderAttack["call"] {
  return async (method, p, body, token) => {
    const res = await fetch(`${base()}/v1/${p}`, {
      method,
      headers: {
        connection: "close",
        ...(token ? { "x-vault-token": token } : {}),
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: Json = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* raw body */
    }
    return { status: res.status, body: parsed };
  };
}

/** `runtime server` on SQLite with `workers` processes, initialized (one key share unless told) and unsealed. */
export async function startRuntimeServer(
  o: { workers?: number; hcl?: string; shares?: number; threshold?: number } = {},
): Promise<ServerUnderAttack> {
  const dir = mkdtempSync(path.join(tmpdir(), "bk-sec-"));
  writeFileSync(
    path.join(dir, "runtime.hcl"),
    `storage "sqlite" { path = "${dir}/data/runtime.db" }\nworkers = ${o.workers ?? 2}\n` +
      `listener "tcp" {\n address = "127.0.0.1:0"\n tls_disable = true\n}\n${o.hcl ?? ""}\n`,
  );
  const proc = await startServerProc(path.join(dir, "runtime.hcl"));
  const call = httpCaller(() => proc.url);
  const init = await call("PUT", "sys/init", { secret_shares: o.shares ?? 1, secret_threshold: o.threshold ?? 1 });
  if (init.status !== 200) throw new Error(`init: ${init.status} ${JSON.stringify(init.body)}`);
  const keys = init.body.keys_base64 as string[];
  let unseal;
  for (const key of keys.slice(0, o.threshold ?? 1)) unseal = await call("PUT", "sys/unseal", { key });
  if (unseal?.body?.sealed !== false) throw new Error(`unseal: ${JSON.stringify(unseal?.body)}`);
  return {
    url: proc.url,
    root: init.body.root_token as string,
    keys,
    dir,
    proc,
    call,
    close: async () => {
      await proc.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The runtime the rekey tests attack: `runtime server` with 3 shares / threshold 2, a file audit device at
 * `<dir>/audit.log`, a KV v2 mount `secret/` holding `secret/data/app` = {password: marker} (to show the data
 * survives), and the sys/rekey/* rate limit lifted (these files make more rekey calls from one address than the
 * default 5/s, burst 20 allows).
 */
export async function startRekeyTarget(
  workers: number,
  marker: string,
): Promise<{ srv: ServerUnderAttack; auditLog: string }> {
  const srv = await startRuntimeServer({
    workers,
    shares: 3,
    threshold: 2,
    hcl: `rate_limit "sys/rekey/*" { per_second = 1000  burst = 1000 }`,
  });
  const auditLog = path.join(srv.dir, "audit.log");
  const steps: Array<[string, string, unknown, number]> = [
    ["PUT", "sys/audit/file", { type: "file", options: { file_path: auditLog } }, 204],
    ["POST", "sys/mounts/secret", { type: "kv", options: { version: "2" } }, 204],
    ["POST", "secret/data/app", { data: { password: marker } }, 200],
  ];
  for (const [method, p, body, want] of steps) {
    const r = await srv.call(method, p, body, srv.root);
    if (r.status !== want) throw new Error(`${method} ${p}: ${r.status} ${JSON.stringify(r.body)}`);
  }
  return { srv, auditLog };
}

/** A JSON text nested `depth` levels deep ({"a":{"a":…}}). */
export function nestedJson(depth: number, leaf = '"x"'): string {
  return '{"a":'.repeat(depth) + leaf + "}".repeat(depth);
}
