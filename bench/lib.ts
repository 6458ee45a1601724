// Small timing helpers for bench/*.bench.ts (no dependency; results are medians of repeated runs).
import { performance } from "node:perf_hooks";

/** Runs fn repeatedly for at least minMs (after a warm-up) and returns per-call median ms. */
export async function timeit(fn: () => unknown | Promise<unknown>, minMs = 500, minRuns = 5): Promise<{ medianMs: number; runs: number; opsPerSec: number }> {
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
