// `pulumi preview` of stacks with 1, 10 and 100 confidential VMs (bench/pulumi-fleet): time and how it
// grows. Target: linear in the number of VMs, under 10 s at 100 VMs on this machine.
//
// Two measurements, printed separately because they are not the same thing:
//   A. MOCK ENGINE, all platforms (aws, gcp, azure, proxmox, qemu round-robin): the program itself —
//      validation, measurement, user-data rendering, every registration — under
//      pulumi.runtime.setMocks with preview=true. The real engine cannot run these here: it would need
//      the aws/gcp/azure-native/command provider plugins, which this machine cannot obtain.
//   B. REAL ENGINE, `pulumi preview` (scripts/setup-pulumi.sh's CLI + Node.js language host, file
//      backend) of the same program with `local` VMs (LocalConfidentialVm: Workload, Secret and LocalVm
//      dynamic-provider resources, no external plugin) — engine, gRPC and dynamic-provider costs included.
// Per-VM cost = (t(100) - t(10)) / 90; linear growth means t(100)/t(10) ≤ 10 (fixed costs make it less).
// Erasable TypeScript only (Node 22 strips types). Env: BK_BENCH_REAL=0 skips B.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { spawnSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { runProgram } from "../test/stacks/mock-program.ts";
import { table } from "./lib.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const PROGRAM_DIR = path.join(ROOT, "bench", "pulumi-fleet");
const PROGRAM = path.join(PROGRAM_DIR, "index.js");
const FIRMWARE = [
  "/usr/share/ovmf/OVMF.fd",
  "/usr/share/OVMF/OVMF.fd",
  "/work/shared/vectors/debian-bookworm-ovmf/OVMF.fd",
].find((f) => existsSync(f));
const SIZES = [1, 10, 100];
const CLOUDS = "aws,gcp,azure,proxmox,qemu";
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function growth(label: string, t: Record<number, number>, resources: Record<number, number>): void {
  table(
    SIZES.map((n) => ({ engine: label, vms: n, resources: resources[n], "time s": t[n] / 1000, "ms/VM": t[n] / n })),
  );
  const perVm = (t[100] - t[10]) / 90;
  const ratio = t[100] / t[10];
  console.log(
    `${label}: marginal cost ${perVm.toFixed(1)} ms per VM (10→100), ${((t[10] - t[1]) / 9).toFixed(1)} ms per VM (1→10); ` +
      `t(100)/t(10) = ${ratio.toFixed(2)} (linear = 10: ${ratio <= 10 ? "linear or better" : ratio <= 11 ? "linear within 10%" : "SUPERLINEAR"}); ` +
      `100 VMs in ${(t[100] / 1000).toFixed(2)} s (target < 10 s: ${t[100] < 10_000 ? "met" : "NOT met"})`,
  );
}

async function mockEngine(): Promise<void> {
  console.log(`\nA. MOCK ENGINE (setMocks, preview=true), program only, platforms ${CLOUDS}`);
  const stateDir = mkdtempSync(path.join(os.tmpdir(), "bk-bench-mock-"));
  const config = {
    "bk-bench-fleet:platforms": CLOUDS,
    "bk-bench-fleet:stateDir": stateDir,
    "bk-bench-fleet:port": "18200",
    "bk-bench-fleet:firmware": FIRMWARE!,
  };
  const run = (n: number) =>
    runProgram({
      program: PROGRAM,
      project: "bk-bench-fleet",
      stack: "bench",
      config: { ...config, "bk-bench-fleet:vms": String(n) },
      preview: true,
    });
  await run(1); // warm-up: module loading
  const t: Record<number, number> = {};
  const resources: Record<number, number> = {};
  for (const n of SIZES) {
    const samples: number[] = [];
    for (let i = 0; i < (n === 100 ? 3 : 5); i++) {
      const t0 = performance.now();
      const r = await run(n);
      samples.push(performance.now() - t0);
      resources[n] = r.resources.length;
    }
    t[n] = median(samples);
  }
  growth("mock", t, resources);
  rmSync(stateDir, { recursive: true, force: true });
}

function realEngine(): void {
  const bin = path.join(os.homedir(), ".pulumi", "versions", process.env.BK_PULUMI_VERSION ?? "3.259.0", "bin");
  if (!existsSync(path.join(bin, "pulumi")) || !existsSync(path.join(bin, "pulumi-language-nodejs"))) {
    console.log("\nB. REAL ENGINE: not measured — the engine is not installed (scripts/setup-pulumi.sh)");
    return;
  }
  console.log(
    "\nB. REAL ENGINE `pulumi preview` (file backend, offline), platform local (LocalConfidentialVm: no external plugin)",
  );
  const tmp = mkdtempSync(path.join(os.tmpdir(), "bk-bench-real-"));
  const env = {
    ...process.env,
    PATH: `${bin}:${path.dirname(process.execPath)}:${process.env.PATH ?? ""}`,
    PULUMI_BACKEND_URL: `file://${tmp}/state`,
    PULUMI_CONFIG_PASSPHRASE: "bench-only",
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_DISABLE_REGISTRY_RESOLVE: "true",
    PULUMI_SKIP_CONFIRMATIONS: "true",
    PULUMI_DIY_BACKEND_NO_LEGACY_WARNING: "true",
    NO_COLOR: "1",
  };
  const pulumi = (args: string[]) => {
    const r = spawnSync(path.join(bin, "pulumi"), [...args, "--non-interactive"], {
      cwd: PROGRAM_DIR,
      env,
      encoding: "utf8",
      timeout: 900_000,
    });
    if (r.status !== 0)
      throw new Error(
        `pulumi ${args.join(" ")} exited ${r.status}:\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`,
      );
    return r.stdout;
  };
  spawnSync("mkdir", ["-p", `${tmp}/state`]);
  const stack = `bench${process.pid}`;
  const cfg = ["--stack", stack, "--config-file", path.join(tmp, "Pulumi.bench.yaml")];
  try {
    pulumi(["stack", "init", stack]);
    for (const [k, v] of Object.entries({
      platforms: "local",
      stateDir: path.join(tmp, "bk"),
      port: "18299",
      firmware: FIRMWARE!,
    }))
      pulumi(["config", "set", ...cfg, k, v]);
    const t: Record<number, number> = {};
    const resources: Record<number, number> = {};
    for (const n of SIZES) {
      pulumi(["config", "set", ...cfg, "vms", String(n)]);
      const samples: number[] = [];
      for (let i = 0; i < (n === 100 ? 1 : 2); i++) {
        const t0 = performance.now();
        const out = pulumi(["preview", ...cfg]);
        samples.push(performance.now() - t0);
        resources[n] = Number(/\+ (\d+) to create/.exec(out)?.[1] ?? NaN);
      }
      t[n] = median(samples);
    }
    growth("real", t, resources);
  } finally {
    spawnSync(path.join(bin, "pulumi"), ["stack", "rm", "--yes", "--force", stack, "--non-interactive"], {
      cwd: PROGRAM_DIR,
      env,
    });
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (!FIRMWARE) {
  console.log("pulumi-preview: no OVMF firmware found (apt-get install ovmf); the VMs' measurements need one");
  process.exitCode = 1;
} else {
  await mockEngine();
  if (process.env.BK_BENCH_REAL !== "0") realEngine();
  console.log(
    `\nmachine: ${os.cpus().length} CPUs, load average ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")} (shared; figures vary with load)`,
  );
}
