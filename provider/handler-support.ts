// What the local stack's handler modules (local-vm-handlers.ts, qemu-guest-handlers.ts) share: the
// shapes Pulumi's dynamic-provider CRUD calls pass around, where the `buckypaper` CLI lives, and the
// input checks both use. Pulumi-free like the handlers: the serialized provider closures `require` them.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { UNKNOWN } from "./handlers.js";

export type Props = Record<string, unknown>;
export interface CheckFailure {
  property: string;
  reason: string;
}

// provider/ in the sources, dist/provider/ when compiled: the package root is one or two levels up.
const HERE = path.dirname(fileURLToPath(import.meta.url));
export const PACKAGE_ROOT =
  path.basename(path.dirname(HERE)) === "dist" ? path.resolve(HERE, "..", "..") : path.resolve(HERE, "..");
export const CLI = path.join(PACKAGE_ROOT, "bin", "buckypaper.js");

export const isUnknown = (v: unknown) => v === UNKNOWN;
export const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
export const absPath = (v: unknown) => typeof v === "string" && path.isAbsolute(v) && !v.split("/").includes("..");

/**
 * Is `pid` alive, not a zombie, and one of ours — its command line names every marker (the state
 * directory, …) — rather than a recycled pid that now belongs to something else?
 */
export function ownedProcessAlive(pid: unknown, markers: string[]): boolean {
  if (typeof pid !== "number" || !Number.isInteger(pid) || pid <= 1) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    if (stat.slice(stat.lastIndexOf(")") + 2)[0] === "Z") return false;
    return markers.every((m) => cmd.includes(m));
  } catch {
    return true; // no /proc: trust kill(0)
  }
}
