// Builds a real UKI for tests: Debian's systemd-stub (systemd-boot-efi) with sections added by objcopy, as
// `ukify` does. Needs systemd-boot-efi and binutils (scripts/ci-deps.sh).
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { haveCommand, requireTool } from "./prereq.js";

export const SYSTEMD_STUB = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

export function haveUkiTools(extra = true): boolean {
  return requireTool(
    "systemd-boot-efi (systemd-stub) and objcopy (binutils)",
    existsSync(SYSTEMD_STUB) && haveCommand("objcopy") && extra,
  );
}

/** Writes each section's file into `dir` (named after the section) and returns the UKI's bytes. */
export function buildUki(dir: string, sections: Record<string, Buffer>): Buffer {
  const args: string[] = [];
  let vma = 0x20000;
  for (const [name, data] of Object.entries(sections)) {
    const f = path.join(dir, name.slice(1));
    writeFileSync(f, data);
    args.push("--add-section", `${name}=${f}`, "--change-section-vma", `${name}=0x${vma.toString(16)}`);
    vma += Math.ceil((data.length + 0x1000) / 0x10000) * 0x10000;
  }
  const out = path.join(dir, "uki.efi");
  const r = spawnSync("objcopy", [...args, SYSTEMD_STUB, out]);
  if (r.status !== 0) throw new Error(`objcopy: ${r.stderr}`);
  return readFileSync(out);
}
