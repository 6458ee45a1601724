// Assembles the initramfs tree from the built root filesystem (so its busybox, veritysetup and kernel
// modules are exactly the locked packages' files) and packs it with the deterministic newc writer.
import { chmod, copyFile, mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import path from "node:path";
import { newcArchive } from "./cpio.js";
import { INIT_SCRIPT } from "./init-script.js";
import { run } from "./exec.js";

/** What the init needs from the kernel, by module name; built-in ones are skipped. */
export const INITRD_MODULES = ["virtio_pci", "virtio_blk", "dm_mod", "dm_verity", "squashfs", "overlay"] as const;
/** The busybox applets the init uses. */
const APPLETS = ["sh", "mount", "umount", "mkdir", "cat", "sleep", "grep", "insmod", "poweroff", "switch_root", "echo"];

/** Module file paths (relative to /lib/modules/<kver>) in load order: dependencies first. */
export function moduleLoadOrder(modulesDep: string, builtin: string, wanted: readonly string[]): string[] {
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of modulesDep.split("\n")) {
    const m = /^([^:]+):\s*(.*)$/.exec(line);
    if (!m) continue;
    deps.set(m[1], m[2].split(/\s+/).filter(Boolean));
    byName.set(moduleName(m[1]), m[1]);
  }
  const builtins = new Set(builtin.split("\n").filter(Boolean).map(moduleName));
  const order: string[] = [];
  const visit = (file: string, chain: string[]) => {
    if (order.includes(file)) return;
    if (chain.includes(file)) throw new Error(`module dependency cycle: ${[...chain, file].join(" → ")}`);
    for (const d of deps.get(file) ?? []) visit(d, [...chain, file]);
    order.push(file);
  };
  for (const name of wanted) {
    const n = name.replace(/-/g, "_");
    if (builtins.has(n)) continue;
    const file = byName.get(n);
    if (!file) throw new Error(`kernel module ${name} is neither built in nor in modules.dep`);
    visit(file, []);
  }
  return order;
}

function moduleName(file: string): string {
  return path
    .basename(file)
    .replace(/\.ko(\.[a-z]+)?$/, "")
    .replace(/-/g, "_");
}

/** Shared libraries (absolute paths inside `root`) that a binary of the root filesystem loads. */
async function sharedLibraries(root: string, binary: string): Promise<string[]> {
  const out = await run(["chroot", root, "ldd", binary]);
  const libs = new Set<string>();
  for (const line of out.split("\n")) {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (m) libs.add(m[1]);
  }
  return [...libs].sort();
}

export interface InitrdResult {
  archive: Buffer;
  modules: string[];
}

/** Builds the initramfs for kernel `kver` from the root filesystem tree `root`, staging in `stage`. */
export async function buildInitrd(root: string, kver: string, stage: string): Promise<InitrdResult> {
  for (const d of ["bin", "dev", "proc", "sys", "run", "tmp", "lib/modules", "lower", "rw", "newroot"])
    await mkdir(path.join(stage, d), { recursive: true });
  await copyFile(path.join(root, "bin/busybox"), path.join(stage, "bin/busybox"));
  await chmod(path.join(stage, "bin/busybox"), 0o755);
  for (const a of APPLETS) await symlink("busybox", path.join(stage, "bin", a));

  const veritysetup = "/usr/sbin/veritysetup";
  await copyFile(path.join(root, veritysetup), path.join(stage, "bin/veritysetup"));
  await chmod(path.join(stage, "bin/veritysetup"), 0o755);
  for (const lib of await sharedLibraries(root, veritysetup)) {
    const dest = path.join(stage, lib);
    await mkdir(path.dirname(dest), { recursive: true });
    await copyFile(path.join(root, lib), dest); // copyFile follows the soname symlink to the file
    await chmod(dest, 0o755);
  }

  const modDir = path.join(root, "lib/modules", kver);
  const order = moduleLoadOrder(
    await readFile(path.join(modDir, "modules.dep"), "utf8"),
    existsSync(path.join(modDir, "modules.builtin"))
      ? await readFile(path.join(modDir, "modules.builtin"), "utf8")
      : "",
    INITRD_MODULES,
  );
  for (const m of order) {
    if (/\.ko\.[a-z]+$/.test(m)) throw new Error(`${m}: compressed modules need a decompressing insmod`);
    const dest = path.join(stage, "lib/modules", path.basename(m));
    await copyFile(path.join(modDir, m), dest);
    await chmod(dest, 0o644);
  }
  await writeFile(path.join(stage, "lib/modules/load-order"), order.map((m) => path.basename(m) + "\n").join(""));
  await writeFile(path.join(stage, "init"), INIT_SCRIPT, { mode: 0o755 });
  await chmod(path.join(stage, "init"), 0o755);
  return { archive: await newcArchive(stage), modules: order.map((m) => path.basename(m)) };
}
