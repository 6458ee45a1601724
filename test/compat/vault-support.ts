// The real Vault CLI for the compat tests: where the shared build script puts it, and a runner.
import { spawn } from "node:child_process";
import { homedir } from "node:os";
import path from "node:path";

export const VAULT_BIN = process.env.BK_VAULT_BIN ?? path.join(homedir(), ".cache/buckypaper/vault-1.21.4/vault");

export interface VaultResult {
  code: number;
  out: string;
  err: string;
}

export function vault(args: string[], env: NodeJS.ProcessEnv, stdin?: string): Promise<VaultResult> {
  return new Promise((resolve) => {
    const p = spawn(VAULT_BIN, args, { env, stdio: ["pipe", "pipe", "pipe"] });
    let out = "",
      err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    p.on("close", (code) => resolve({ code: code ?? -1, out, err }));
    p.stdin.end(stdin ?? "");
  });
}
