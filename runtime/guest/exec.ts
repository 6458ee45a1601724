// Running outside programs (cryptsetup, ssh-keygen, tpm2-tools, python3, hooks) without a shell.
// Secret input goes through stdin only, never argv (visible in /proc) nor files.
import { spawn } from "node:child_process";

export interface RunOptions {
  stdin?: Buffer;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

export interface RunResult {
  code: number;
  stdout: Buffer;
  stderr: Buffer;
}

export interface CommandRunner {
  run(argv: string[], opts?: RunOptions): Promise<RunResult>;
}

export class CommandError extends Error {
  override name = "CommandError";
  constructor(
    readonly argv0: string,
    readonly code: number,
    stderr: string,
  ) {
    super(
      `${argv0} exited ${code}${stderr ? `: ${stderr.trim().split("\n").slice(-2).join(" / ").slice(0, 300)}` : ""}`,
    );
  }
}

export const spawnRunner: CommandRunner = {
  run(argv, opts = {}) {
    return new Promise((resolve, reject) => {
      const child = spawn(argv[0], argv.slice(1), {
        stdio: ["pipe", "pipe", "pipe"],
        env: opts.env ?? process.env,
        timeout: opts.timeoutMs,
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on("data", (d: Buffer) => out.push(d));
      child.stderr.on("data", (d: Buffer) => err.push(d));
      child.on("error", (e) => reject(new CommandError(argv[0], 127, (e as NodeJS.ErrnoException).code ?? e.message)));
      child.on("close", (code, signal) =>
        resolve({ code: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out), stderr: Buffer.concat(err) }),
      );
      child.stdin.on("error", () => {}); // a program that exits without reading stdin
      child.stdin.end(opts.stdin ?? Buffer.alloc(0));
    });
  },
};

/** Runs and throws CommandError on a non-zero exit. */
export async function mustRun(runner: CommandRunner, argv: string[], opts?: RunOptions): Promise<RunResult> {
  const r = await runner.run(argv, opts);
  if (r.code !== 0) throw new CommandError(argv[0], r.code, r.stderr.toString("utf8"));
  return r;
}
