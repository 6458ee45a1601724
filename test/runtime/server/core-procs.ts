// Helpers for tests that run the runtime as real processes (`buckypaper runtime server`).
import { spawn, type ChildProcess, execFile } from "node:child_process";
import { promisify } from "node:util";
import path from "node:path";
import { repoRoot } from "../../support/shared.js";

export const bin = path.join(repoRoot, "bin/buckypaper.js");

export interface ServerProc {
  proc: ChildProcess;
  url: string;
  bootstrapFp?: string;
  output: () => string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `runtime server --config FILE` and waits for its listening line. */
export function startServerProc(config: string, env: Record<string, string> = {}): Promise<ServerProc> {
  const proc = spawn(process.execPath, [bin, "runtime", "server", "--config", config], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 30_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\S+) \(.*\)\n/.exec(out);
      // An uninitialized TLS server prints its bootstrap certificate fingerprint on the next line (an attested
      // one has no bootstrap certificate: it prints its in-memory key's SPKI instead).
      const needsFp = m && m[1].startsWith("https") && m[0].includes("not initialized");
      const next = /Bootstrap TLS certificate SHA-256[^:]*: [0-9a-f]{64}\n|Attested TLS: .*SPKI SHA-256 [0-9a-f]{64}/;
      if (m && (!needsFp || next.test(out))) {
        clearTimeout(timer);
        const fp = /Bootstrap TLS certificate SHA-256[^:]*: ([0-9a-f]{64})/.exec(out)?.[1];
        resolve({
          proc,
          url: m[1],
          bootstrapFp: fp,
          output: () => out,
          kill: async (signal = "SIGTERM") => {
            if (proc.exitCode === null && proc.signalCode === null) {
              proc.kill(signal);
            }
            await exited;
          },
        });
      }
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", (d: Buffer) => {
      out += d.toString();
    });
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}):\n${out}`));
    });
  });
}

/** Runs the CLI as a process; resolves with exit code and output (never throws on non-zero). */
export async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await promisify(execFile)(process.execPath, [bin, ...args], { encoding: "utf8", timeout: 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === "number" ? x.code : -1, stdout: x.stdout ?? "", stderr: x.stderr ?? "" };
  }
}

/** JSON request over plain HTTP. */
export async function api(
  url: string,
  method: string,
  p: string,
  body?: unknown,
  token?: string,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped JSON from the API
): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}/v1/${p}`, {
    method,
    headers: {
      ...(token ? { "x-vault-token": token } : {}),
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}
