// Tests that need a tool from outside npm (cloud-init, PostgreSQL, QEMU, the reference Python tool,
// the Pulumi engine) ask here. On a developer machine a missing tool skips the suite with a visible
// message; under CI (CI=true), where .ci/run installs everything, a missing tool is a failure.
import { spawnSync } from "node:child_process";

export function haveCommand(cmd: string, args: string[] = ["--version"]): boolean {
  const r = spawnSync(cmd, args, { stdio: "ignore" });
  return r.status === 0 || (r.error === undefined && r.status !== null && r.status !== 127);
}

/** Returns true when available; otherwise warns (dev) or throws (CI). */
export function requireTool(what: string, available: boolean): boolean {
  if (available) return true;
  const msg = `${what} is not installed here (.ci/run installs it)`;
  if (process.env.CI === "true") throw new Error(`CI prerequisite missing: ${msg}`);
  console.warn(`[skip] ${msg}`);
  return false;
}
