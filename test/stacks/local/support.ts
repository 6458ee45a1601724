// What the local stack's end-to-end tests share (process-tree VMs, real guests, the attested vHSM guest): a
// fresh stack of stacks/local on the real Pulumi engine — its own Pulumi state, state directory and free
// runtime port —, its outputs and the summary the script prints, and whether a pid still runs.
import { expect } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { pulumiRunner, type PulumiRunner } from "../../provider/engine.js";
import { freePort } from "../../support/net.js";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const PROGRAM = path.join(ROOT, "stacks/local");

/** Running (a zombie waiting for its reaper has stopped running). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

export interface LocalStack {
  pulumi: PulumiRunner;
  stack: string;
  /** --stack and --config-file: for every `pulumi config set` / `up` / `destroy`. */
  cfg: string[];
  /** The stack's own files (runtime, platform, VMs): tmp/stack. */
  stateDir: string;
}

/**
 * `pulumi stack init` of stacks/local under `tmp` (Pulumi state in tmp/pulumi, config in tmp/Pulumi.test.yaml)
 * with its stateDir and a free runtime port set. The runner takes the environment as it is now: set
 * XDG_CONFIG_HOME and the like first.
 */
export async function initLocalStack(tmp: string, o: { name: string; passphrase: string }): Promise<LocalStack> {
  const stateDir = path.join(tmp, "stack");
  mkdirSync(path.join(tmp, "pulumi"));
  const pulumi = pulumiRunner({ programDir: PROGRAM, stateDir: path.join(tmp, "pulumi"), passphrase: o.passphrase });
  const cfg = ["--stack", o.name, "--config-file", path.join(tmp, "Pulumi.test.yaml")];
  await pulumi.ok(["stack", "init", o.name]);
  await pulumi.ok(["config", "set", ...cfg, "stateDir", stateDir]);
  await pulumi.ok(["config", "set", ...cfg, "port", String(await freePort())]);
  return { pulumi, stack: o.name, cfg, stateDir };
}

/** `pulumi stack output --json`. */
export async function stackOutputs<T>(s: Pick<LocalStack, "pulumi" | "stack">): Promise<T> {
  return JSON.parse((await s.pulumi.ok(["stack", "output", "--json", "--stack", s.stack])).stdout) as T;
}

/** What stacks/local/summary.ts prints for the stack's outputs (also logged, for whoever reads the test run). */
export function localSummary(out: unknown): string {
  const s = spawnSync(process.execPath, [path.join(PROGRAM, "summary.ts")], {
    input: JSON.stringify(out),
    encoding: "utf8",
  });
  expect(s.status, s.stderr).toBe(0);
  console.log(s.stdout);
  return s.stdout;
}
