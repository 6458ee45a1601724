// SEV-SNP measurement performance: the CLI end to end vs the PyPI reference CLI, the in-process digest of
// Debian's 2 MiB OVMF at 64 vCPUs vs the floor (one SHA-384 over the same bytes), and the 1..256 vCPU table.
import { spawnSync } from "node:child_process";
import { hash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { table, timeit } from "./lib.ts";
import { parseOvmf, snpLaunchDigest, snpLaunchDigestTable } from "../dist/images/snp/index.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const shared = process.env.BK_SHARED_DIR ?? path.resolve(root, "../shared");
const ovmfPath = [path.join(shared, "vectors/debian-bookworm-ovmf/OVMF.fd"), "/usr/share/ovmf/OVMF.fd"].find((p) =>
  existsSync(p),
);
if (!ovmfPath) {
  console.log("skipped: Debian OVMF.fd not found (../shared/vectors or the `ovmf` package)");
  process.exit(0);
}
const fw = readFileSync(ovmfPath);
const rows: Array<Record<string, string | number>> = [];
const args = ["--ovmf", ovmfPath, "--vcpus", "64", "--vcpu-type", "EPYC-v4"];

// 1. One CLI invocation end to end (process start, flag parsing, file read, digest, print), ours (the
// launcher bin/buckypaper.js, and bin/buckypaper — the PATH wrapper that finds Node 22) against the
// reference, runs interleaved so load on the machine hits all alike. Wall time is the user's view; the
// children's CPU time (from /proc/self/stat) is steadier on a busy machine.
const ourCmd: [string, string[]] = [
  process.execPath,
  [path.join(root, "bin/buckypaper.js"), "measure", "snp", ...args],
];
const wrapperCmd: [string, string[]] = [path.join(root, "bin/buckypaper"), ["measure", "snp", ...args]];
const ourCli = () => run(ourCmd);
function run([cmd, argv]: [string, string[]]): string {
  const r = spawnSync(cmd, argv, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(r.stderr || String(r.error));
  return r.stdout;
}
/** CPU time (ms) used by this process's waited-for children so far: cutime + cstime, in clock ticks. */
function childCpuMs(): number {
  const f = readFileSync("/proc/self/stat", "utf8").split(") ")[1].split(" ");
  return ((Number(f[13]) + Number(f[14])) * 1000) / 100;
}
function compare(cmds: Array<[string, string[]]>, runs: number): Array<{ wallMs: number; cpuMs: number }> {
  const wall = cmds.map(() => [] as number[]);
  const cpu = cmds.map(() => 0);
  for (const c of cmds) run(c); // warm: page cache, compile cache
  for (let i = 0; i < runs; i++)
    cmds.forEach((c, k) => {
      const c0 = childCpuMs();
      const t = performance.now();
      run(c);
      wall[k].push(performance.now() - t);
      cpu[k] += childCpuMs() - c0;
    });
  return wall.map((w, k) => ({ wallMs: w.sort((a, b) => a - b)[Math.floor(w.length / 2)], cpuMs: cpu[k] / runs }));
}
const refCandidates: Array<[string, string]> = [["sev-snp-measure (on PATH)", "sev-snp-measure"]];
const pyenv = spawnSync("pyenv", ["which", "sev-snp-measure"], { encoding: "utf8" });
if (pyenv.status === 0 && pyenv.stdout.trim())
  refCandidates.push(["sev-snp-measure (script, no pyenv shim)", pyenv.stdout.trim()]);
let refShown = false;
for (const [label, cmd] of refCandidates) {
  const refCmd: [string, string[]] = [cmd, ["--mode", "snp", ...args]];
  try {
    if (run(refCmd).trim() !== ourCli().trim()) throw new Error("digests differ");
  } catch (e) {
    console.log(`${label}: not usable here (${(e as Error).message.split("\n")[0]})`);
    continue;
  }
  const [ours, wrapped, ref] = compare([ourCmd, wrapperCmd, refCmd], 30);
  for (const [name, o] of [
    ["bin/buckypaper.js", ours],
    ["bin/buckypaper (PATH wrapper)", wrapped],
  ] as const) {
    rows.push({
      case: `measure snp ${name} vs ${label}: wall`,
      "ours ms": o.wallMs,
      "other ms": ref.wallMs,
      "ours/other": o.wallMs / ref.wallMs,
      target: "< 1",
    });
    rows.push({
      case: `measure snp ${name} vs ${label}: CPU`,
      "ours ms": o.cpuMs,
      "other ms": ref.cpuMs,
      "ours/other": o.cpuMs / ref.cpuMs,
      target: "< 1",
    });
  }
  rows.push({
    case: "PATH wrapper overhead (wall, wrapper − launcher)",
    "ours ms": wrapped.wallMs - ours.wallMs,
    "other ms": "-",
    "ours/other": "-",
    target: "a few ms",
  });
  refShown = true;
}
if (!refShown) {
  const [ours] = compare([ourCmd], 20);
  rows.push({
    case: "CLI end to end (reference not installed)",
    "ours ms": ours.wallMs,
    "other ms": "-",
    "ours/other": "-",
    target: "< 1",
  });
}

// 2. In-process digest, raw bytes each time (parse + 512 firmware pages + metadata + 64 VMSAs) vs the floor.
const floor = await timeit(() => hash("sha384", fw, "buffer"), 1500, 30);
const digest = await timeit(() => snpLaunchDigest({ ovmf: fw, vcpus: 64, vcpu: "EPYC-v4" }), 1500, 30);
rows.push({
  case: "digest 2 MiB OVMF, 64 vCPUs vs SHA-384 floor",
  "ours ms": digest.medianMs,
  "other ms": floor.medianMs,
  "ours/other": digest.medianMs / floor.medianMs,
  target: "<= 2",
});

// 3. The 1..256 table from raw bytes (includes hashing the firmware), and from an already parsed image.
const counts = Array.from({ length: 256 }, (_, i) => i + 1);
const tbl = await timeit(() => snpLaunchDigestTable({ ovmf: fw, vcpu: "EPYC-v4" }, counts), 1500, 20);
rows.push({
  case: "table 1..256 vCPUs (raw firmware)",
  "ours ms": tbl.medianMs,
  "other ms": "-",
  "ours/other": tbl.medianMs / 50,
  target: "< 50 ms (ratio vs 50)",
});
const img = parseOvmf(fw);
const tblCached = await timeit(() => snpLaunchDigestTable({ ovmf: img, vcpu: "EPYC-v4" }, counts), 1500, 20);
rows.push({
  case: "table 1..256 vCPUs (parsed image reused)",
  "ours ms": tblCached.medianMs,
  "other ms": "-",
  "ours/other": tblCached.medianMs / 50,
  target: "< 50 ms (ratio vs 50)",
});

table(rows);
