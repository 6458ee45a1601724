// The post-provisioning hook: an argv (no shell) run after everything was committed, e.g. to
// reload a service. A failure fails the run (its stderr tail names why).
import type { HookConfig } from "../config.js";
import type { CommandRunner } from "../exec.js";
import type { Logger } from "../log.js";
import { ProvisionError } from "./files.js";

export async function runHook(h: HookConfig, root: string, runner: CommandRunner, log: Logger): Promise<void> {
  const r = await runner.run(h.command, {
    timeoutMs: h.timeoutSeconds * 1000,
    env: { ...process.env, BUCKYPAPER_ROOT: root },
  });
  const tail = (b: Buffer) => b.toString("utf8").trim().split("\n").slice(-5).join(" / ").slice(0, 500);
  if (r.code !== 0)
    throw new ProvisionError("hook", `${h.command[0]} exited ${r.code}${r.stderr.length ? `: ${tail(r.stderr)}` : ""}`);
  // Output is not logged: a hook may print what it was given.
  log({ level: "info", event: "hook.ok", command: h.command[0] });
}
