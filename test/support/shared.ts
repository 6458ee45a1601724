// Locates ../shared (reference docs, vectors, real evidence). Tests that need it skip visibly when absent.
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const sharedDir = process.env.BK_SHARED_DIR ?? path.resolve(repoRoot, "../shared");
export const hasShared = existsSync(path.join(sharedDir, "vectors")) && existsSync(path.join(sharedDir, "evidence"));

export function sharedPath(...parts: string[]): string {
  return path.join(sharedDir, ...parts);
}

/** Call at the top of a describe that needs ../shared: prints why it is skipped. */
export function noteIfSharedMissing(what: string): boolean {
  if (!hasShared) {
    console.warn(`[skip] ${what}: ../shared is not present next to the repository (set BK_SHARED_DIR to point at it)`);
  }
  return hasShared;
}
