// Where the real guests' images, firmware and per-build artifacts are cached, and the progress callback the
// slow steps (image builds, boots) report through.
import os from "node:os";
import path from "node:path";

export type Progress = (line: string) => void;

export function defaultCacheDir(): string {
  return process.env.BUCKYPAPER_CACHE ?? path.join(os.homedir(), ".cache", "buckypaper");
}
