// Runs the build's outside tools (mmdebstrap, mksquashfs, veritysetup, npm, chroot) without a shell.
import { spawn } from "node:child_process";

export class ToolError extends Error {
  override name = "ToolError";
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Called with every line the tool writes to stderr/stdout (progress), stdout is still returned. */
  onLine?: (line: string) => void;
}

/** Runs argv, returns its stdout; a non-zero exit throws with the tail of its output. */
export function run(argv: readonly string[], o: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), {
      env: o.env ?? process.env,
      cwd: o.cwd,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    let tail = "";
    let pending = "";
    const lines = (chunk: Buffer) => {
      const text = chunk.toString("utf8");
      tail = (tail + text).slice(-4000);
      if (!o.onLine) return;
      pending += text;
      const parts = pending.split("\n");
      pending = parts.pop()!;
      for (const p of parts) if (p.trim()) o.onLine(p);
    };
    child.stdout.on("data", (c: Buffer) => {
      out.push(c);
      if (o.onLine) lines(c);
    });
    child.stderr.on("data", lines);
    child.on("error", (e) =>
      reject(
        new ToolError(`${argv[0]}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "not installed" : e.message}`),
      ),
    );
    child.on("close", (code, signal) => {
      if (code === 0) resolve(Buffer.concat(out).toString("utf8"));
      else
        reject(
          new ToolError(
            `${argv.slice(0, 3).join(" ")}… exited ${code ?? signal}:\n${tail
              .trim()
              .split("\n")
              .slice(-15)
              .join("\n")}`,
          ),
        );
    });
  });
}
