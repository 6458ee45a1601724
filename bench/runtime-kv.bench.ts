// Plain KV v2 read under fixed concurrency (autocannon, 100 connections) against the runtime in its
// own process — dev mode (memory storage) and `runtime server` on SQLite, as one process and with
// `workers = 2` — next to a bare fastify
// route returning a same-sized JSON body (the floor). Prints req/s, p50/p99 and the runtime's peak
// RSS under load. Target: KV read p99 < 10 ms at 100 connections.
import { spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { table, startProcess, stopProcess, cpuMicros, rssMiB } from "./lib.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const bin = path.join(root, "bin/buckypaper.js");
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 100);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const HAVE_WRK = spawnSync("wrk", ["--version"]).error === undefined;

const start = (args: string[], ready: RegExp) => startProcess(args, ready, root);

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped JSON
async function call(url: string, method: string, p: string, body?: unknown, token?: string): Promise<any> {
  const res = await fetch(`${url}/v1/${p}`, {
    method,
    headers: { ...(token ? { "x-vault-token": token } : {}), "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${p}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

interface Load {
  name: string;
  reqPerSec: number;
  p50: number;
  p99: number;
  peakRssMiB: number;
  cpuPerReq: number;
  wrk?: { reqPerSec: number; p50: number; p99: number };
}

/** wrk's --latency figures in ms ("812.00us", "3.24ms", "1.02s"). */
function wrkMs(out: string, pct: string): number {
  const m = new RegExp(`^\\s*${pct}%\\s+([\\d.]+)(us|ms|s)\\b`, "m").exec(out);
  if (!m) throw new Error(`wrk: no ${pct}% latency in:\n${out}`);
  return Number(m[1]) * (m[2] === "us" ? 1e-3 : m[2] === "s" ? 1e3 : 1);
}

/** The same load from wrk (one thread, C: it takes less of the shared CPU than autocannon), when installed. */
function wrkLoad(url: string, headers: Record<string, string>): Load["wrk"] {
  if (!HAVE_WRK) return undefined;
  const hdr = Object.entries(headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]);
  const r = spawnSync("wrk", ["-t1", `-c${CONNECTIONS}`, `-d${SECONDS}s`, "--latency", ...hdr, url], {
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`wrk failed: ${r.stderr}`);
  if (/Non-2xx|Socket errors/.test(r.stdout)) throw new Error(`wrk saw errors:\n${r.stdout}`);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(r.stdout);
  return { reqPerSec: Number(rps?.[1]), p50: wrkMs(r.stdout, "50"), p99: wrkMs(r.stdout, "99") };
}

async function load(name: string, url: string, headers: Record<string, string>, pid: number): Promise<Load> {
  // Warm-up at full load: every worker's JIT gets its share.
  await autocannon({ url, connections: CONNECTIONS, duration: 2, headers });
  let peak = 0;
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssMiB(pid));
  }, 200);
  const cpu0 = cpuMicros(pid);
  const r = await autocannon({ url, connections: CONNECTIONS, duration: SECONDS, headers });
  const cpuPerReq = (cpuMicros(pid) - cpu0) / Math.max(1, r.requests.total);
  clearInterval(sampler);
  if (r.non2xx || r.errors) throw new Error(`${name}: ${r.non2xx} non-2xx, ${r.errors} errors`);
  return {
    name,
    reqPerSec: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    peakRssMiB: peak,
    cpuPerReq,
    wrk: wrkLoad(url, headers),
  };
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
  const f = await load(
    "bare fastify route (floor)",
    `http://127.0.0.1:${floor.match[1]}/v1/secret/data/bench`,
    {},
    floor.proc.pid!,
  );
  floor.proc.kill();

  // Dev runtime: memory storage.
  const dev = await start(
    [bin, "runtime", "dev", "--listen", "127.0.0.1:0"],
    /Api Address: (\S+)[\s\S]*Root Token: (\S+)/,
  );
  procs.push(dev.proc);
  const [devUrl, devTok] = [dev.match[1], dev.match[2]];
  await call(devUrl, "POST", "secret/data/bench", { data: { password: "x".repeat(24), user: "svc" } }, devTok);
  const d = await load(
    "runtime dev (memory)",
    `${devUrl}/v1/secret/data/bench`,
    { "x-vault-token": devTok },
    dev.proc.pid!,
  );
  dev.proc.kill();

  // `runtime server` on SQLite, with a policy-limited (non-root) token: the full ACL path; once as
  // one process, once with `workers = 2` (one per core; the CPU figure then sums the workers).
  const servers = [];
  for (const workers of [1, 2]) {
    const db = `rt-${workers}.db`;
    writeFileSync(
      path.join(dir, "rt.hcl"),
      `storage "sqlite" { path = "${db}" }\nworkers = ${workers}\nlistener "tcp" {\n address = "127.0.0.1:0"\n tls_disable = true\n}`,
    );
    const srv = await start([bin, "runtime", "server", "--config", path.join(dir, "rt.hcl")], /listening on (\S+)/);
    procs.push(srv.proc);
    const sUrl = srv.match[1];
    const init = await call(sUrl, "PUT", "sys/init", { secret_shares: 1, secret_threshold: 1 });
    await call(sUrl, "PUT", "sys/unseal", { key: init.keys_base64[0] });
    await call(sUrl, "POST", "sys/mounts/secret", { type: "kv-v2" }, init.root_token);
    await call(
      sUrl,
      "PUT",
      "sys/policies/acl/reader",
      { policy: 'path "secret/data/*" { capabilities = ["read"] }' },
      init.root_token,
    );
    await call(sUrl, "POST", "secret/data/bench", { data: { password: "x".repeat(24), user: "svc" } }, init.root_token);
    const tok = (await call(sUrl, "POST", "auth/token/create", { policies: ["reader"], ttl: "1h" }, init.root_token))
      .auth.client_token;
    const name =
      workers === 1
        ? "runtime server (SQLite, policy token)"
        : `runtime server (SQLite, policy token, workers = ${workers})`;
    servers.push(await load(name, `${sUrl}/v1/secret/data/bench`, { "x-vault-token": tok }, srv.proc.pid!));
    await stopProcess(srv.proc);
  }

  for (const r of [f, d, ...servers]) {
    rows.push({
      target: r.name,
      "req/s": Math.round(r.reqPerSec),
      "p50 ms": r.p50,
      "p99 ms": r.p99,
      "vs floor (req/s)": r === f ? "1.00" : (r.reqPerSec / f.reqPerSec).toFixed(2),
      "p99 vs floor": r === f ? "1.00" : (r.p99 / Math.max(1, f.p99)).toFixed(2),
      "server CPU µs/req": Number(r.cpuPerReq.toFixed(1)),
      "CPU vs floor": r === f ? "1.00" : (r.cpuPerReq / f.cpuPerReq).toFixed(2),
      "peak RSS MiB": Number(r.peakRssMiB.toFixed(1)),
      ...(r.wrk
        ? {
            "wrk req/s": Math.round(r.wrk.reqPerSec),
            "wrk p50 ms": Number(r.wrk.p50.toFixed(2)),
            "wrk p99 ms": Number(r.wrk.p99.toFixed(2)),
          }
        : {}),
    });
  }
  console.log(
    `KV v2 read, ${CONNECTIONS} connections, ${SECONDS}s each, autocannon${HAVE_WRK ? " then wrk -t1" : " (wrk not installed: apt-get install wrk adds its columns)"} (loopback; load generator shares the CPU;`,
  );
  console.log(
    `server CPU per request is the figure least disturbed by other load on the machine; load average now ${(await import("node:os")).loadavg()[0].toFixed(1)})`,
  );
  table(rows);
  const best = servers[servers.length - 1];
  const p99s = [`autocannon ${best.p99} ms`, ...(best.wrk ? [`wrk ${best.wrk.p99.toFixed(2)} ms`] : [])];
  const met = best.p99 < 10 && (!best.wrk || best.wrk.p99 < 10);
  console.log(
    `target: KV read p99 < 10 ms at ${CONNECTIONS} connections → ${met ? "met" : "NOT met"} by ${best.name} (p99 ${p99s.join(", ")}); dev ${d.p99} ms, one-process server ${servers[0].p99} ms (autocannon)`,
  );
} finally {
  for (const p of procs) if (p.exitCode === null) p.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}
