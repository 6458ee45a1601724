// Plain KV v2 read under fixed concurrency (autocannon, 100 connections) against the runtime in its
// own process — dev mode (memory storage) and `runtime server` on SQLite, as one process and with
// `workers = 2` — next to a bare fastify
// route returning a same-sized JSON body (the floor). Prints req/s, p50/p99 and the runtime's peak
// RSS under load. Target: KV read p99 < 10 ms at 100 connections.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { table } from "./lib.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const bin = path.join(root, "bin/buckypaper.js");
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 100);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);

interface Proc { proc: ChildProcess; out: () => string }

function start(args: string[], ready: RegExp, opts: { cwd?: string } = {}): Promise<Proc & { match: RegExpExecArray }> {
  const proc = spawn(process.execPath, args, { cwd: opts.cwd ?? root, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`not ready:\n${out}`)), 30_000);
    const on = (d: Buffer) => {
      out += d.toString();
      const m = ready.exec(out);
      if (m) { clearTimeout(t); resolve({ proc, out: () => out, match: m }); }
    };
    proc.stdout!.on("data", on);
    proc.stderr!.on("data", (d: Buffer) => { out += d.toString(); });
    proc.once("exit", (c) => { clearTimeout(t); reject(new Error(`exited ${c}:\n${out}`)); });
  });
}

/** The process and its direct children (the workers of a multi-worker server). */
function family(pid: number): number[] {
  try { return [pid, ...readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number)]; } catch { return [pid]; }
}

/** utime + stime in µs (from /proc; USER_HZ = 100), summed over the process and its children. */
function cpuMicros(pid: number): number {
  let ticks = 0;
  for (const p of family(pid)) {
    try {
      const f = readFileSync(`/proc/${p}/stat`, "utf8").split(") ")[1].split(" ");
      ticks += Number(f[11]) + Number(f[12]);
    } catch { /* exited */ }
  }
  return (ticks / 100) * 1e6;
}

function rssMiB(pid: number): number {
  let kb = 0;
  for (const p of family(pid)) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, "utf8"));
      if (m) kb += Number(m[1]);
    } catch { /* exited */ }
  }
  return kb ? kb / 1024 : NaN;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped JSON
async function call(url: string, method: string, p: string, body?: unknown, token?: string): Promise<any> {
  const res = await fetch(`${url}/v1/${p}`, { method, headers: { ...(token ? { "x-vault-token": token } : {}), "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${p}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

async function load(name: string, url: string, headers: Record<string, string>, pid: number) {
  await autocannon({ url, connections: 10, duration: 1, headers }); // warm-up
  let peak = 0;
  const sampler = setInterval(() => { peak = Math.max(peak, rssMiB(pid)); }, 200);
  const cpu0 = cpuMicros(pid);
  const r = await autocannon({ url, connections: CONNECTIONS, duration: SECONDS, headers });
  const cpuPerReq = (cpuMicros(pid) - cpu0) / Math.max(1, r.requests.total);
  clearInterval(sampler);
  if (r.non2xx || r.errors) throw new Error(`${name}: ${r.non2xx} non-2xx, ${r.errors} errors`);
  return { name, reqPerSec: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, peakRssMiB: peak, cpuPerReq };
}

const FLOOR_SRC = `
import Fastify from "fastify";
const body = ${JSON.stringify({ request_id: "00000000-0000-0000-0000-000000000000", lease_id: "", renewable: false, lease_duration: 0, data: { data: { password: "x".repeat(24), user: "svc" }, metadata: { created_time: new Date().toISOString(), custom_metadata: null, deletion_time: "", destroyed: false, version: 1 } }, wrap_info: null, warnings: null, auth: null, mount_type: "kv" })};
const app = Fastify();
app.get("/v1/secret/data/bench", async () => body);
await app.listen({ host: "127.0.0.1", port: 0 });
console.log("floor listening on " + app.server.address().port);
`;

const rows: Array<Record<string, string | number>> = [];
const procs: ChildProcess[] = [];
const dir = mkdtempSync(path.join(tmpdir(), "bk-bench-kv-"));
try {
  // Floor: bare fastify, same payload.
  const floor = await start(["--input-type=module", "-e", FLOOR_SRC], /floor listening on (\d+)/);
  procs.push(floor.proc);
  const f = await load("bare fastify route (floor)", `http://127.0.0.1:${floor.match[1]}/v1/secret/data/bench`, {}, floor.proc.pid!);
  floor.proc.kill();

  // Dev runtime: memory storage.
  const dev = await start([bin, "runtime", "dev", "--listen", "127.0.0.1:0"], /Api Address: (\S+)[\s\S]*Root Token: (\S+)/);
  procs.push(dev.proc);
  const [devUrl, devTok] = [dev.match[1], dev.match[2]];
  await call(devUrl, "POST", "secret/data/bench", { data: { password: "x".repeat(24), user: "svc" } }, devTok);
  const d = await load("runtime dev (memory)", `${devUrl}/v1/secret/data/bench`, { "x-vault-token": devTok }, dev.proc.pid!);
  dev.proc.kill();

  // `runtime server` on SQLite, with a policy-limited (non-root) token: the full ACL path; once as
  // one process, once with `workers = 2` (one per core; the CPU figure then sums the workers).
  const servers = [];
  for (const workers of [1, 2]) {
    const db = `rt-${workers}.db`;
    writeFileSync(path.join(dir, "rt.hcl"), `storage "sqlite" { path = "${db}" }\nworkers = ${workers}\nlistener "tcp" {\n address = "127.0.0.1:0"\n tls_disable = true\n}`);
    const srv = await start([bin, "runtime", "server", "--config", path.join(dir, "rt.hcl")], /listening on (\S+)/);
    procs.push(srv.proc);
    const sUrl = srv.match[1];
    const init = await call(sUrl, "PUT", "sys/init", { secret_shares: 1, secret_threshold: 1 });
    await call(sUrl, "PUT", "sys/unseal", { key: init.keys_base64[0] });
    await call(sUrl, "POST", "sys/mounts/secret", { type: "kv-v2" }, init.root_token);
    await call(sUrl, "PUT", "sys/policies/acl/reader", { policy: 'path "secret/data/*" { capabilities = ["read"] }' }, init.root_token);
    await call(sUrl, "POST", "secret/data/bench", { data: { password: "x".repeat(24), user: "svc" } }, init.root_token);
    const tok = (await call(sUrl, "POST", "auth/token/create", { policies: ["reader"], ttl: "1h" }, init.root_token)).auth.client_token;
    const name = workers === 1 ? "runtime server (SQLite, policy token)" : `runtime server (SQLite, policy token, workers = ${workers})`;
    servers.push(await load(name, `${sUrl}/v1/secret/data/bench`, { "x-vault-token": tok }, srv.proc.pid!));
    srv.proc.kill("SIGTERM");
    await new Promise((r) => srv.proc.once("exit", r));
  }

  for (const r of [f, d, ...servers]) {
    rows.push({
      target: r.name, "req/s": Math.round(r.reqPerSec), "p50 ms": r.p50, "p99 ms": r.p99,
      "vs floor (req/s)": r === f ? "1.00" : (r.reqPerSec / f.reqPerSec).toFixed(2),
      "p99 vs floor": r === f ? "1.00" : (r.p99 / Math.max(1, f.p99)).toFixed(2),
      "server CPU µs/req": Number(r.cpuPerReq.toFixed(1)),
      "CPU vs floor": r === f ? "1.00" : (r.cpuPerReq / f.cpuPerReq).toFixed(2),
      "peak RSS MiB": Number(r.peakRssMiB.toFixed(1)),
    });
  }
  console.log(`KV v2 read, ${CONNECTIONS} connections, ${SECONDS}s each, autocannon (loopback; load generator shares the CPU;`);
  console.log(`server CPU per request is the figure least disturbed by other load on the machine; load average now ${(await import("node:os")).loadavg()[0].toFixed(1)})`);
  table(rows);
  const best = servers[servers.length - 1];
  console.log(`target: KV read p99 < 10 ms at ${CONNECTIONS} connections → ${best.p99 < 10 ? "met" : "NOT met"} by ${best.name} (p99 ${best.p99} ms); dev ${d.p99} ms, one-process server ${servers[0].p99} ms`);
} finally {
  for (const p of procs) if (p.exitCode === null) p.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}
