// Builds the guest artifact that user-data downloads and pins by SHA-256:
//   enclaivelet/bin/node         the Node 22 runtime (linux-x64; confidential VMs are x86-64)
//   enclaivelet/bin/enclaivelet  launcher (sh)
//   enclaivelet/lib/...          the compiled agent: the import closure of dist/runtime/guest/main.js
//                                plus its npm dependencies (pure JS: jose, @noble/*, @peculiar/x509 for
//                                verifying the runtime's attested TLS), nothing else of the kit
// The tarball is reproducible (sorted, mtime 0, numeric owner 0, gzip -n), so its SHA-256 is stable
// for a given build and can be pinned in user-data.
import { cp, mkdir, mkdtemp, readFile, rm, writeFile, chmod, copyFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import semver from "semver";
import { mustRun, spawnRunner } from "./exec.js";
import { MEASURED_UNIT_NAME, renderMeasuredUnit } from "./boot-unit.js";
import { USER_DATA_SOURCES } from "./userdata.js";

export interface ArtifactOptions {
  /** The kit's root (holds dist/ and node_modules/). */
  repoRoot: string;
  out: string;
  /** Node binary to ship (default: the running one). */
  nodeBinary?: string;
  /**
   * What to carry (default "enclaivelet"): "runtime" is the vHSM server (dist/runtime/server/http/main.js,
   * launcher bin/bk-runtime, top directory bk-runtime/) for the runtime's own confidential VM.
   */
  kind?: ArtifactKind;
}

export type ArtifactKind = "enclaivelet" | "runtime";
const KINDS: Record<ArtifactKind, { top: string; entry: string; launcher: string }> = {
  enclaivelet: { top: "enclaivelet", entry: "runtime/guest/main.js", launcher: "enclaivelet" },
  runtime: { top: "bk-runtime", entry: "runtime/server/http/main.js", launcher: "bk-runtime" },
};

const IMPORT_RE =
  /(?:import|export)\s[^'"]*?from\s*["']([^"']+)["']|import\s*\(\s*["']([^"']+)["']\s*\)|import\s+["']([^"']+)["']/g;

/** Relative-import closure of an ESM file, and the bare packages it needs. */
export async function importClosure(entry: string): Promise<{ files: string[]; packages: string[] }> {
  const files = new Set<string>();
  const packages = new Set<string>();
  const queue = [path.resolve(entry)];
  while (queue.length) {
    const f = queue.pop()!;
    if (files.has(f)) continue;
    files.add(f);
    const text = await readFile(f, "utf8");
    for (const m of text.matchAll(IMPORT_RE)) {
      const spec = m[1] ?? m[2] ?? m[3];
      if (spec.startsWith("node:")) continue;
      if (spec.startsWith(".")) queue.push(path.resolve(path.dirname(f), spec));
      else packages.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]);
    }
  }
  return { files: [...files].sort(), packages: [...packages].sort() };
}

export async function buildArtifact(
  o: ArtifactOptions,
): Promise<{ file: string; sha256: string; files: number; packages: string[] }> {
  const dist = path.join(o.repoRoot, "dist");
  const kind = KINDS[o.kind ?? "enclaivelet"];
  const entry = path.join(dist, kind.entry);
  if (!existsSync(entry)) throw new Error(`${entry} is missing: build first (npm run build)`);
  const { files, packages } = await importClosure(entry);
  const stage = await mkdtemp(path.join(tmpdir(), "enclaivelet-artifact-"));
  try {
    const top = path.join(stage, kind.top);
    const lib = path.join(top, "lib");
    for (const f of files) {
      const rel = path.relative(dist, f);
      await mkdir(path.dirname(path.join(lib, rel)), { recursive: true });
      await copyFile(f, path.join(lib, rel));
    }
    await writeFile(path.join(lib, "package.json"), JSON.stringify({ type: "module", private: true }) + "\n");
    // A package's own dependencies ride along only as Node resolved them for the repository's tests: nested in
    // the package (copied with it), or hoisted at the top of node_modules in a version its declared range allows
    // (e.g. @noble/post-quantum → @noble/hashes 2.4.0 exactly; @peculiar/x509 → @peculiar/asn1-cms ^2.11.0).
    // What the guest loads is then byte for byte what the tests ran; a hoisted version outside the range (Node
    // would not have used it) is refused.
    const queue = [...packages];
    const copied = new Set<string>();
    while (queue.length) {
      const p = queue.shift()!;
      if (copied.has(p)) continue;
      copied.add(p);
      const src = path.join(o.repoRoot, "node_modules", p);
      const pkg = JSON.parse(await readFile(path.join(src, "package.json"), "utf8")) as {
        dependencies?: Record<string, string>;
      };
      for (const [dep, want] of Object.entries(pkg.dependencies ?? {})) {
        if (existsSync(path.join(src, "node_modules", dep, "package.json"))) continue; // nested: copied with p
        const depPkg = path.join(o.repoRoot, "node_modules", dep, "package.json");
        const have = existsSync(depPkg)
          ? (JSON.parse(await readFile(depPkg, "utf8")) as { version?: string }).version
          : undefined;
        if (!have || !semver.satisfies(have, want))
          throw new Error(
            `${p} depends on ${dep}@${want} but node_modules has ${have ?? "none"}; the artifact only carries dependencies as the tests resolved them`,
          );
        queue.push(dep);
      }
      await cp(src, path.join(lib, "node_modules", p), { recursive: true });
    }
    await mkdir(path.join(top, "bin"), { recursive: true });
    await copyFile(o.nodeBinary ?? process.execPath, path.join(top, "bin/node"));
    await chmod(path.join(top, "bin/node"), 0o755);
    await writeFile(
      path.join(top, "bin", kind.launcher),
      `#!/bin/sh\nd=$(dirname "$(readlink -f "$0")")\nexec "$d/node" "$d/../lib/${kind.entry}" "$@"\n`,
      { mode: 0o755 },
    );
    // The measured boot unit per user-data source, for images that bake the agent in (images/guest
    // configure.ts links the one its platform needs): the agent ships how it must be started.
    for (const source of USER_DATA_SOURCES) {
      await mkdir(path.join(top, "share/systemd", source), { recursive: true });
      await writeFile(path.join(top, "share/systemd", source, MEASURED_UNIT_NAME), renderMeasuredUnit(source));
    }
    await mkdir(path.dirname(path.resolve(o.out)), { recursive: true });
    const tar = path.resolve(o.out).replace(/\.gz$/, "");
    await mustRun(spawnRunner, [
      "tar",
      "--sort=name",
      "--mtime=@0",
      "--owner=0",
      "--group=0",
      "--numeric-owner",
      "-C",
      stage,
      "-cf",
      tar,
      kind.top,
    ]);
    await mustRun(spawnRunner, ["gzip", "-n", "-f", "-9", tar]);
    const file = tar + ".gz";
    const sha256 = createHash("sha256")
      .update(await readFile(file))
      .digest("hex");
    return { file, sha256, files: files.length, packages: [...copied].sort() };
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}
