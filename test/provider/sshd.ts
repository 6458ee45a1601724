// A private OpenSSH server on 127.0.0.1:<free port> for tests of the SSH deployment mode: its own host
// key, one authorized client key, no passwords, no PAM. Runs as the current user.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import os from "node:os";
import path from "node:path";
import { freePort } from "../support/net.js";

export const SSHD = "/usr/sbin/sshd";

export interface TestSshd {
  host: string;
  port: number;
  user: string;
  clientKey: string;
  /** known_hosts line for this server. */
  knownHosts: string;
  close(): Promise<void>;
}

function keygen(file: string): void {
  const r = spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", file], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ssh-keygen: ${r.stderr}`);
}

async function waitForPort(port: number, proc: ChildProcess, log: () => string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (proc.exitCode !== null) throw new Error(`sshd exited ${proc.exitCode}: ${log()}`);
    const ok = await new Promise<boolean>((r) => {
      const c = createConnection({ host: "127.0.0.1", port }, () => {
        c.destroy();
        r(true);
      });
      c.on("error", () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`sshd did not listen on ${port}: ${log()}`);
}

export async function startTestSshd(): Promise<TestSshd> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "bk-sshd-"));
  keygen(path.join(dir, "host"));
  keygen(path.join(dir, "client"));
  writeFileSync(path.join(dir, "authorized_keys"), readFileSync(path.join(dir, "client.pub")), { mode: 0o600 });
  const port = await freePort();
  const user = os.userInfo().username;
  writeFileSync(
    path.join(dir, "sshd_config"),
    [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${dir}/host`,
      `AuthorizedKeysFile ${dir}/authorized_keys`,
      `PidFile ${dir}/sshd.pid`,
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "PubkeyAuthentication yes",
      "PermitRootLogin prohibit-password",
      "UsePAM no",
      "StrictModes no",
      // Pass PATH through so the remote side finds the same Node as the test.
      "PermitUserEnvironment no",
      `SetEnv PATH=${path.dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`,
      "",
    ].join("\n"),
  );
  // Privilege separation directory sshd insists on.
  if (!existsSync("/run/sshd")) mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  let log = "";
  const proc = spawn(SSHD, ["-D", "-e", "-f", path.join(dir, "sshd_config")], { stdio: ["ignore", "ignore", "pipe"] });
  proc.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  await waitForPort(port, proc, () => log);
  const hostPub = readFileSync(path.join(dir, "host.pub"), "utf8").trim().split(/\s+/).slice(0, 2).join(" ");
  return {
    host: "127.0.0.1",
    port,
    user,
    clientKey: readFileSync(path.join(dir, "client"), "utf8"),
    knownHosts: `[127.0.0.1]:${port} ${hostPub}\n`,
    close: async () => {
      proc.kill("SIGTERM");
      await new Promise((r) => (proc.exitCode !== null ? r(null) : proc.once("exit", r)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
