// Small helpers for bench/*.bench.ts (no dependency): timing (medians of repeated runs), tables, and
// the child processes the runtime benches measure.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";

/** Runs fn repeatedly for at least minMs (after a warm-up) and returns per-call median ms. */
export async function timeit(
  fn: () => unknown | Promise<unknown>,
  minMs = 500,
  minRuns = 5,
): Promise<{ medianMs: number; runs: number; opsPerSec: number }> {
  for (let i = 0; i < 2; i++) await fn();
  const samples: number[] = [];
  const start = performance.now();
  while (samples.length < minRuns || performance.now() - start < minMs) {
    const t = performance.now();
    await fn();
    samples.push(performance.now() - t);
  }
  samples.sort((a, b) => a - b);
  const medianMs = samples[Math.floor(samples.length / 2)];
  return { medianMs, runs: samples.length, opsPerSec: 1000 / medianMs };
}

export function table(rows: Array<Record<string, string | number>>): void {
  if (rows.length === 0) return;
  const cols = Object.keys(rows[0]);
  const fmt = (v: string | number) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : v);
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => fmt(r[c] ?? "").length)));
  console.log(cols.map((c, i) => c.padEnd(width[i])).join("  "));
  for (const r of rows) console.log(cols.map((c, i) => fmt(r[c] ?? "").padEnd(width[i])).join("  "));
}

// ---- child processes (the runtime and the floors run in their own processes) ----

/** Starts `node ...args` and resolves once its output matches `ready`. */
export function startProcess(
  args: string[],
  ready: RegExp,
  cwd: string,
): Promise<{ proc: ChildProcess; match: RegExpExecArray }> {
  const proc = spawn(process.execPath, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`not ready:\n${out}`)), 30_000);
    const on = (d: Buffer) => {
      out += d.toString();
      const m = ready.exec(out);
      if (m) {
        clearTimeout(t);
        resolve({ proc, match: m });
      }
    };
    proc.stdout!.on("data", on);
    proc.stderr!.on("data", (d: Buffer) => {
      out += d.toString();
    });
    proc.once("exit", (c) => {
      clearTimeout(t);
      reject(new Error(`exited ${c}:\n${out}`));
    });
  });
}

/** Stops a child gracefully (so --cpu-prof can write its profile and workers shut down), SIGKILL after 10 s. */
export async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill("SIGTERM");
  const t = setTimeout(() => proc.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(t);
}

/** The process and its direct children (the workers of a multi-worker runtime server). */
function family(pid: number): number[] {
  try {
    return [
      pid,
      ...readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number),
    ];
  } catch {
    return [pid];
  }
}

/** utime + stime in µs (from /proc; USER_HZ = 100), summed over the process and its children. */
export function cpuMicros(pid: number): number {
  let ticks = 0;
  for (const p of family(pid)) {
    try {
      const f = readFileSync(`/proc/${p}/stat`, "utf8").split(") ")[1].split(" ");
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      /* exited */
    }
  }
  return (ticks / 100) * 1e6;
}

/** Resident memory in MiB, summed over the process and its children. */
export function rssMiB(pid: number): number {
  let kb = 0;
  for (const p of family(pid)) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, "utf8"));
      if (m) kb += Number(m[1]);
    } catch {
      /* exited */
    }
  }
  return kb ? kb / 1024 : NaN;
}
