// The real cloud-init schema validator (Debian's cloud-init package: `cloud-init schema --config-file F`).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { haveCommand } from "./prereq.js";

export const hasCloudInit = haveCommand("cloud-init", ["--version"]);

export function validateUserData(text: string): { status: number | null; output: string } {
  const dir = mkdtempSync(path.join(tmpdir(), "bk-ud-"));
  try {
    const f = path.join(dir, "user-data.yaml");
    writeFileSync(f, text);
    const r = spawnSync("cloud-init", ["schema", "--config-file", f], { encoding: "utf8" });
    return { status: r.status, output: `${r.stdout}${r.stderr}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
