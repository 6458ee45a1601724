// `runtime server` with `workers = 2` as real processes on one SQLite file and on one PostgreSQL
// database, over TLS: the workers
// share one bootstrap certificate, one unseal progress and one seal state; a change made through
// one worker (mount, policy, audit device, seal) is in force on the other before the request that
// made it is answered; a worker killed with SIGKILL comes back unsealed. Every check uses a fresh
// connection per request, which the cluster spreads round-robin over the workers.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from "node:fs";
import { execFileSync } from "node:child_process";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import { startServerProc, cli, type ServerProc } from "./core-procs.js";
import { repoRoot } from "../../support/shared.js";
import { requireTool, haveCommand } from "../../support/prereq.js";

const ROUNDS = 8;

/** The sys/init and sys/unseal responses these tests read. */
type SysInit = { keys_base64: string[]; root_token: string };
type SealStatus = { sealed: boolean };

function workerPids(supervisor: number): number[] {
  return readFileSync(`/proc/${supervisor}/task/${supervisor}/children`, "utf8")
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);
}

function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return Number(f[11]) + Number(f[12]);
}

const havePg = requireTool(
  "PostgreSQL server (apt-get install postgresql)",
  haveCommand("bash", ["-c", "ls /usr/lib/postgresql/*/bin/initdb"]),
);

describe.each([
  { storage: "SQLite", enabled: true },
  { storage: "PostgreSQL", enabled: havePg },
])("runtime server with workers = 2 (processes, $storage, TLS)", ({ storage, enabled }) => {
  let dir: string;
  let pgDir = "";
  let srv: ServerProc | undefined;
  let ca: string;
  let root: string;
  let keys: string[];

  /** One request on its own TLS connection (agent: false), trusting only the runtime CA. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped JSON from the API
  function fresh(method: string, p: string, body?: unknown, token = root): Promise<{ status: number; body: any }> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = https.request(
        new URL(`/v1/${p}`, srv!.url),
        {
          method,
          agent: false,
          ca,
          headers: {
            "x-vault-token": token,
            ...(payload ? { "content-type": "application/json", "content-length": String(payload.length) } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const t = Buffer.concat(chunks).toString("utf8");
            resolve({ status: res.statusCode!, body: t ? JSON.parse(t) : undefined });
          });
        },
      );
      req.on("error", reject);
      req.end(payload);
    });
  }

  /** The same request on ROUNDS fresh connections; returns the statuses. */
  async function everywhere(method: string, p: string, token = root): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < ROUNDS; i++) out.push((await fresh(method, p, undefined, token)).status);
    return out;
  }

  beforeAll(() => {
    if (!enabled) return;
    dir = mkdtempSync(path.join(tmpdir(), "bk-workers-"));
    let block = `storage "sqlite" { path = "data/runtime.db" }`;
    if (storage === "PostgreSQL") {
      pgDir = mkdtempSync(path.join(tmpdir(), "bk-pg-")); // its own /tmp entry: the postgres user must reach it
      const url = execFileSync(path.join(repoRoot, "scripts/pg-test-server.sh"), ["start", pgDir], {
        encoding: "utf8",
      }).trim();
      block = `storage "postgresql" { connection_url = "${url}" }`;
    }
    writeFileSync(
      path.join(dir, "runtime.hcl"),
      `
      ${block}
      workers = 2
      listener "tcp" {
        address = "127.0.0.1:0"
        tls_dir = "tls"
      }
    `,
    );
  }, 120_000);
  afterAll(async () => {
    await srv?.kill();
    if (pgDir) execFileSync(path.join(repoRoot, "scripts/pg-test-server.sh"), ["stop", pgDir]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it.runIf(enabled)("serves one runtime from two workers: shared init, unseal progress, changes and seal", async () => {
    srv = await startServerProc(path.join(dir, "runtime.hcl"));
    expect(srv.output()).toMatch(/not initialized; 2 workers/);
    const pids = workerPids(srv.proc.pid!);
    expect(pids).toHaveLength(2);

    // Both workers present the one bootstrap certificate: a pinned CLI call per connection never trips.
    const pinBoot = ["--address", srv.url, "--ca-fingerprint", srv.bootstrapFp!];
    for (let i = 0; i < 4; i++)
      expect((await cli(["runtime", "status", ...pinBoot])).stdout).toMatch(/Initialized\s+false/);

    const init = await cli([
      "runtime",
      "init",
      ...pinBoot,
      "--key-shares",
      "3",
      "--key-threshold",
      "2",
      "--insecure-print-to-pipe",
      "--format",
      "json",
    ]);
    expect(init.code).toBe(0);
    const out = JSON.parse(init.stdout);
    ca = out.runtime_ca_pem;
    root = out.root_token;
    keys = out.unseal_keys_b64;
    // After init every worker serves the runtime-CA certificate (the others reloaded it before init answered).
    const st = await Promise.all(Array.from({ length: ROUNDS }, () => fresh("GET", "sys/seal-status")));
    expect(st.map((r) => [r.status, r.body.initialized, r.body.sealed])).toEqual(Array(ROUNDS).fill([200, true, true]));

    // Key shares sent to different workers add up to one progress.
    const u1 = await fresh("PUT", "sys/unseal", { key: out.unseal_keys_b64[0] });
    expect(u1.body.progress).toBe(1);
    for (let i = 0; i < ROUNDS; i++) expect((await fresh("GET", "sys/seal-status")).body.progress).toBe(1);
    const u2 = await fresh("PUT", "sys/unseal", { key: out.unseal_keys_b64[2] });
    expect(u2.body.sealed).toBe(false);
    // Unsealed everywhere by the time the unseal call answered.
    expect(await everywhere("GET", "sys/health")).toEqual(Array(ROUNDS).fill(200));

    // A mount made through one worker is usable through every worker at once.
    expect((await fresh("POST", "sys/mounts/kv", { type: "kv-v2" })).status).toBe(204);
    expect((await fresh("POST", "kv/data/app", { data: { password: "w0rker-shared" } })).status).toBe(200);
    const policy = (caps: string) =>
      fresh("PUT", "sys/policies/acl/app", { policy: `path "kv/data/app" { capabilities = [${caps}] }` });
    expect((await policy('"read"')).status).toBe(204);
    const tok = (await fresh("POST", "auth/token/create", { policies: ["app"], ttl: "1h" })).body.auth
      .client_token as string;
    const cpu0 = pids.map(cpuTicks);
    expect(await everywhere("GET", "kv/data/app", tok)).toEqual(Array(ROUNDS).fill(200));
    // A policy change is in force on every worker when its write answers (no cache window).
    expect((await policy('"deny"')).status).toBe(204);
    expect(await everywhere("GET", "kv/data/app", tok)).toEqual(Array(ROUNDS).fill(403));
    expect((await policy('"read"')).status).toBe(204);
    expect(await everywhere("GET", "kv/data/app", tok)).toEqual(Array(ROUNDS).fill(200));
    // Both workers served those requests (each spent CPU on them).
    const cpu1 = pids.map(cpuTicks);
    expect(cpu1[0]).toBeGreaterThan(cpu0[0]);
    expect(cpu1[1]).toBeGreaterThan(cpu0[1]);

    // An audit device enabled through one worker records requests served by every worker.
    const log = path.join(dir, "audit.log");
    expect((await fresh("PUT", "sys/audit/file", { type: "file", options: { file_path: log } })).status).toBe(204);
    await everywhere("GET", "kv/data/app", tok);
    const lines = readFileSync(log, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; request: { path: string } });
    expect(lines.filter((l) => l.type === "response" && l.request.path === "kv/data/app")).toHaveLength(ROUNDS);
    expect(readFileSync(log, "utf8")).not.toContain("w0rker-shared");

    // A token revoked through one worker is refused by every worker at once (each request
    // revalidates the SQLite read cache against the commit).
    for (let i = 0; i < ROUNDS; i++) expect((await fresh("GET", "kv/data/app", undefined, tok)).status).toBe(200);
    expect((await fresh("POST", "auth/token/revoke", { token: tok })).status).toBe(204);
    expect(await everywhere("GET", "kv/data/app", tok)).toEqual(Array(ROUNDS).fill(403));

    // sys/seal through one worker seals them all.
    expect((await fresh("PUT", "sys/seal")).status).toBe(204);
    expect(await everywhere("GET", "sys/health")).toEqual(Array(ROUNDS).fill(503));
  });

  it.runIf(enabled)(
    "respawns a worker killed with SIGKILL already unsealed, and stops its workers on SIGTERM",
    async () => {
      expect((await fresh("PUT", "sys/unseal", { key: keys[1] })).body.progress).toBe(1);
      expect((await fresh("PUT", "sys/unseal", { key: keys[0] })).body.sealed).toBe(false);
      const [victim, survivor] = workerPids(srv!.proc.pid!);
      process.kill(victim, "SIGKILL");
      let now: number[] = [];
      for (let i = 0; i < 100 && !(now.length === 2 && !now.includes(victim)); i++) {
        await new Promise((r) => setTimeout(r, 100));
        now = workerPids(srv!.proc.pid!);
      }
      expect(now).toContain(survivor);
      expect(now).toHaveLength(2);
      expect(now).not.toContain(victim);
      // The new worker opened its barrier before it took connections: no request sees it sealed.
      expect(await everywhere("GET", "sys/health")).toEqual(Array(ROUNDS).fill(200));
      expect(srv!.output()).toMatch(/worker \d+ exited \(SIGKILL\); starting a new one/);

      await srv!.kill("SIGTERM");
      expect(srv!.proc.exitCode).toBe(0);
      for (const pid of now) expect(existsSync(`/proc/${pid}`)).toBe(false);
      srv = undefined;
    },
  );
});

describe("runtime server with workers = 2: a worker that stops responding", () => {
  it("is replaced when it cannot apply a change within 10 s, and the change answers", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "bk-workers-stuck-"));
    writeFileSync(
      path.join(dir, "runtime.hcl"),
      `storage "sqlite" { path = "rt.db" }\nworkers = 2\nlistener "tcp" {\n address = "127.0.0.1:0"\n tls_disable = true\n}\n`,
    );
    const srv = await startServerProc(path.join(dir, "runtime.hcl"));
    try {
      const call = (method: string, p: string, body?: unknown, token?: string, timeoutMs = 30_000) =>
        fetch(`${srv.url}/v1/${p}`, {
          method,
          signal: AbortSignal.timeout(timeoutMs),
          headers: { connection: "close", ...(token ? { "x-vault-token": token } : {}) },
          body: body === undefined ? undefined : JSON.stringify(body),
        }).then(async (r) => ({ status: r.status, body: await r.json().catch(() => undefined) }));
      const init = (await call("PUT", "sys/init", { secret_shares: 1, secret_threshold: 1 })).body as SysInit;
      expect(((await call("PUT", "sys/unseal", { key: init.keys_base64[0] })).body as SealStatus).sealed).toBe(false);
      const [stuck] = workerPids(srv.proc.pid!);
      process.kill(stuck, "SIGSTOP");
      // Some of these connections land on the stopped worker and hang; the others are served by the
      // live worker, whose policy write waits for the stopped one, then has it replaced.
      const t0 = Date.now();
      const first = await Promise.any(
        Array.from({ length: 4 }, () =>
          call(
            "PUT",
            "sys/policies/acl/after-stop",
            { policy: 'path "x/*" { capabilities = ["read"] }' },
            init.root_token,
          ).then((r) => {
            if (r.status !== 204) throw new Error(`status ${r.status}`);
            return r;
          }),
        ),
      );
      expect(first.status).toBe(204);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(9_000);
      let now: number[] = [];
      for (let i = 0; i < 100 && !(now.length === 2 && !now.includes(stuck)); i++) {
        await new Promise((r) => setTimeout(r, 100));
        now = workerPids(srv.proc.pid!);
      }
      expect(now).not.toContain(stuck);
      expect(now).toHaveLength(2);
      expect(srv.output()).toMatch(
        new RegExp(`worker ${stuck} did not apply the policy change within 10 s; replacing it`),
      );
      // The replacement started unsealed and knows the new policy.
      for (let i = 0; i < 6; i++)
        expect((await call("GET", "sys/policies/acl/after-stop", undefined, init.root_token, 5_000)).status).toBe(200);
    } finally {
      await srv.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
