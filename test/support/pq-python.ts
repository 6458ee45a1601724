// The independent post-quantum implementations the interop tests compare against: kyber-py (ML-KEM,
// FIPS 203) and dilithium-py (ML-DSA, FIPS 204), pure Python from PyPI, in a cached venv that
// scripts/ci-deps.sh creates (BK_PQ_PYTHON_VENV, default ~/.cache/buckypaper/pq-python-venv).
import { spawn, spawnSync } from "node:child_process";
import { homedir } from "node:os";
import path from "node:path";
import { requireTool } from "./prereq.js";

export const PQ_PYTHON = path.join(
  process.env.BK_PQ_PYTHON_VENV ??
    path.join(process.env.XDG_CACHE_HOME ?? path.join(homedir(), ".cache"), "buckypaper", "pq-python-venv"),
  "bin",
  "python",
);

/** True when the venv has both packages (and `cryptography`); skips visibly, fails under CI=true. */
export function havePqPython(): boolean {
  const ok =
    spawnSync(PQ_PYTHON, ["-c", "import kyber_py.ml_kem, dilithium_py.ml_dsa, cryptography"], { stdio: "ignore" })
      .status === 0;
  return requireTool("kyber-py + dilithium-py (PyPI, scripts/ci-deps.sh pq venv)", ok);
}

/** Runs a Python script in the venv with JSON on stdin; resolves its stdout parsed as JSON. */
export function runPqPython(script: string, input: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const p = spawn(PQ_PYTHON, ["-c", script], { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    p.on("error", reject);
    p.on("close", (code) => {
      if (code !== 0) return reject(new Error(`python exited ${code}: ${err}`));
      try {
        resolve(JSON.parse(out));
      } catch {
        reject(new Error(`python printed no JSON: ${out} ${err}`));
      }
    });
    p.stdin.end(JSON.stringify(input));
  });
}
