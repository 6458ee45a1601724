// Runs the real Pulumi CLI (built by scripts/setup-pulumi.sh) offline against a throwaway file backend,
// with the same variables as scripts/pulumi-env.sh.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export const PULUMI_VERSION = process.env.BK_PULUMI_VERSION ?? "3.259.0";

/** The engine's bin directory, or undefined when it is not installed. */
export function pulumiBinDir(): string | undefined {
  const dir = path.join(os.homedir(), ".pulumi", "versions", PULUMI_VERSION, "bin");
  return existsSync(path.join(dir, "pulumi")) && existsSync(path.join(dir, "pulumi-language-nodejs")) ? dir : undefined;
}

export interface PulumiResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface PulumiRunner {
  /** Runs `pulumi <args>` in the program directory; never throws on a non-zero exit. */
  run(args: string[], opts?: { timeoutMs?: number }): Promise<PulumiResult>;
  /** Same, but throws with the output when the exit code is not 0. */
  ok(args: string[], opts?: { timeoutMs?: number }): Promise<PulumiResult>;
}

export function pulumiRunner(o: { programDir: string; stateDir: string; passphrase: string }): PulumiRunner {
  const bin = pulumiBinDir();
  if (!bin) throw new Error("Pulumi engine not installed (scripts/setup-pulumi.sh)");
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // Node 22 first: the language host and dynamic providers run `node` from PATH.
    PATH: `${bin}:${path.dirname(process.execPath)}:${process.env.PATH ?? ""}`,
    PULUMI_BACKEND_URL: `file://${o.stateDir}`,
    PULUMI_CONFIG_PASSPHRASE: o.passphrase,
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_DISABLE_REGISTRY_RESOLVE: "true",
    PULUMI_SKIP_CONFIRMATIONS: "true",
    PULUMI_DIY_BACKEND_NO_LEGACY_WARNING: "true",
    PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true",
    NO_COLOR: "1",
  };
  const run: PulumiRunner["run"] = (args, opts = {}) =>
    new Promise((resolve, reject) => {
      const p = spawn(path.join(bin, "pulumi"), [...args, "--non-interactive", "--color", "never"], {
        cwd: o.programDir,
        env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => p.kill("SIGKILL"), opts.timeoutMs ?? 240_000);
      p.on("error", reject);
      p.on("close", (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? -1, stdout, stderr });
      });
    });
  return {
    run,
    async ok(args, opts) {
      const r = await run(args, opts);
      if (r.code !== 0)
        throw new Error(
          `pulumi ${args.join(" ")} exited ${r.code}\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-2000)}`,
        );
      return r;
    },
  };
}
