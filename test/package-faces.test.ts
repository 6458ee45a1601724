// The package as a consumer gets it: `npm pack` the repository (dist/ is built by the global setup), install
// the tarball into a temporary project, then import every documented subpath and run the CLI bin from there.
// The install is offline: the consumer project's lockfile is the repository's (production entries), so npm
// takes every dependency from its cache (filled by `npm ci`); only when that cache lacks something does it
// ask the npm registry. The consumer project is kept in ~/.cache/buckypaper/package-faces-<checkout> (its ~450 MB of
// dependencies are installed once per lockfile); the package itself is reinstalled from the new tarball on
// every run. Also checked: the subpaths docs/ARCHITECTURE.md documents are exactly the package's
// `exports`, and every `import { … } from "buckypaper…"` shown in README.md and docs/ names real exports.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { createHash } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const NODE_BIN = path.dirname(process.execPath);
const CACHE = path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "buckypaper");
/** The npm on PATH (scripts/env.sh installs dependencies with it too); it runs on the Node first on PATH. */
const NPM = "npm";
const PKG = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
  version: string;
  license: string;
  bin: Record<string, string>;
  engines: Record<string, string>;
  dependencies: Record<string, string>;
  exports: Record<string, string | { types: string; default: string }>;
};
/** Node 22 first on PATH, as for any consumer with a current Node. */
const ENV = { ...process.env, PATH: `${NODE_BIN}:${process.env.PATH}`, npm_config_update_notifier: "false" };

function run(cmd: string, args: string[], cwd: string): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, env: ENV, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  if (r.status !== 0) throw new Error(`${what} failed (${r.status ?? r.error}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The subpaths ARCHITECTURE.md's "Package faces" section lists, as package.json exports keys. */
function documentedFaces(): string[] {
  const doc = readFileSync(path.join(ROOT, "docs/ARCHITECTURE.md"), "utf8");
  const section = doc.split(/^## /m).find((s) => s.startsWith("Package faces"));
  if (!section) throw new Error('docs/ARCHITECTURE.md has no "## Package faces" section');
  const specs = [...section.matchAll(/^\|\s*`(buckypaper(?:\/[a-z/-]+)?)`/gm)].map((m) => m[1]);
  return specs.map((s) => (s === "buckypaper" ? "." : `./${s.slice("buckypaper/".length)}`));
}

/** Every `import { a, b } from "buckypaper…"` in README.md and docs/*.md. */
function documentedImports(): { file: string; spec: string; names: string[] }[] {
  const files = ["README.md", ...readdirSync(path.join(ROOT, "docs")).map((f) => `docs/${f}`)].filter((f) =>
    f.endsWith(".md"),
  );
  const out: { file: string; spec: string; names: string[] }[] = [];
  for (const file of files) {
    const text = readFileSync(path.join(ROOT, file), "utf8");
    for (const m of text.matchAll(/import\s*(?:type\s*)?\{([^}]*)\}\s*from\s*"(buckypaper(?:\/[^"]*)?)"/g)) {
      const names = m[1]
        .split(",")
        .map((n) => n.trim().replace(/^type\s+/, ""))
        .filter((n) => n && !/^\/\//.test(n))
        .map((n) => n.split(/\s+as\s+/)[0]);
      out.push({ file, spec: m[2], names });
    }
  }
  return out;
}

const faces = Object.keys(PKG.exports).filter((k) => k !== "./package.json");
const specOf = (face: string) => (face === "." ? "buckypaper" : `buckypaper/${face.slice(2)}`);

/** A few names each face must export (what the docs and stacks use it for). */
const EXPECTED: Record<string, string[]> = {
  ".": ["Vhsm", "ConfidentialVm", "AwsConfidentialVm", "QemuConfidentialVm", "Platform", "Tee"],
  "./images": ["snpLaunchDigest", "measureTdx", "resolveImage", "vcpusFor"],
  "./provider": ["Workload", "Secret", "Policy", "runtimeRequest"],
  "./runtime/attestation": ["appraise", "verifySnp", "parsePolicy", "tdx", "azure", "reportDataFor"],
  "./runtime/guest": ["runAgent", "parseConfig", "renderUserData", "Secret"],
  "./runtime/client": ["runtimeRequest", "pinnedAnchor"],
  "./runtime/protocol": ["encodeEvidence", "decodeEvidence", "SEAL_HEADER", "parseSecretRef", "parseDurationSeconds"],
  "./runtime/sim": ["createSnpSimulator", "TdxSimulator", "localvm"],
};

describe("package faces (npm pack → install → import)", () => {
  let tmp: string;
  let project: string;
  /** Export names per face, read inside the consumer project. */
  let exportsOf: Record<string, string[]>;

  beforeAll(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), "bk-pack-"));
    // dist/ is current: test/support/global-setup.ts built it for this run.
    const packed = JSON.parse(
      ok(run(NPM, ["pack", "--ignore-scripts", "--json", "--pack-destination", tmp], ROOT), "npm pack"),
    ) as { filename: string; files: { path: string }[] }[];
    const tarball = path.join(tmp, packed[0].filename);
    const shipped = new Set(packed[0].files.map((f) => f.path));
    for (const face of faces) {
      const target = PKG.exports[face] as { types: string; default: string };
      for (const file of [target.default, target.types])
        if (!shipped.has(file.slice(2))) throw new Error(`exports["${face}"] → ${file} is not in the tarball`);
    }

    // One consumer project per checkout: runs from two checkouts at once must not share one.
    project = path.join(CACHE, `package-faces-${createHash("sha256").update(ROOT).digest("hex").slice(0, 12)}`);
    mkdirSync(project, { recursive: true });
    copyFileSync(tarball, path.join(project, "buckypaper.tgz"));
    // The repository's lockfile, production entries only, with buckypaper itself as the tarball.
    const lock = JSON.parse(readFileSync(path.join(ROOT, "package-lock.json"), "utf8")) as {
      packages: Record<string, { dev?: boolean }>;
    };
    const dep = { buckypaper: "file:buckypaper.tgz" };
    const packages: Record<string, unknown> = {
      "": { name: "consumer", dependencies: dep },
      "node_modules/buckypaper": {
        version: PKG.version,
        resolved: "file:buckypaper.tgz",
        license: PKG.license,
        dependencies: PKG.dependencies,
        bin: PKG.bin,
        engines: PKG.engines,
      },
    };
    for (const [k, v] of Object.entries(lock.packages)) if (k.startsWith("node_modules/") && !v.dev) packages[k] = v;
    writeFileSync(
      path.join(project, "package.json"),
      JSON.stringify({ name: "consumer", private: true, type: "module", dependencies: dep }),
    );
    const lockText = JSON.stringify({ name: "consumer", lockfileVersion: 3, requires: true, packages });
    writeFileSync(path.join(project, "package-lock.json"), lockText);
    const stamp = path.join(project, ".deps-installed");
    // The dependencies stay while the lockfile does; the package under test is always installed afresh.
    const haveDeps = existsSync(stamp) && readFileSync(stamp, "utf8") === lockText;
    rmSync(path.join(project, "node_modules", "buckypaper"), { recursive: true, force: true });
    const flags = [haveDeps ? "install" : "ci", "--no-audit", "--no-fund", "--ignore-scripts"];
    const offline = run(NPM, [...flags, "--offline"], project);
    if (offline.status !== 0) ok(run(NPM, [...flags, "--prefer-offline"], project), `npm ${flags[0]}`);
    writeFileSync(stamp, lockText);

    const probe = `
      const out = {};
      for (const spec of JSON.parse(process.argv[1])) {
        try { out[spec] = Object.keys(await import(spec)); } catch (e) { out[spec] = String(e.code ?? e.message); }
      }
      console.log(JSON.stringify(out));`;
    const specs = [...faces.map(specOf), "buckypaper/runtime", "buckypaper/runtime/server/http/server.js"];
    exportsOf = JSON.parse(
      ok(run(process.execPath, ["--input-type=module", "-e", probe, JSON.stringify(specs)], project), "import probe"),
    );
  }, 900_000);

  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it("docs/ARCHITECTURE.md documents exactly the package's exports", () => {
    expect(documentedFaces().sort()).toEqual([...faces].sort());
  });

  it.each(faces)("imports %s from the installed tarball", (face) => {
    const names = exportsOf[specOf(face)];
    expect(Array.isArray(names), `${specOf(face)}: ${String(names)}`).toBe(true);
    expect(names).toEqual(expect.arrayContaining(EXPECTED[face] ?? []));
  });

  it("every face has an entry in the expectations (a new face is a deliberate change)", () => {
    expect(Object.keys(EXPECTED).sort()).toEqual([...faces].sort());
  });

  it("an undocumented deep path is not reachable", () => {
    expect(exportsOf["buckypaper/runtime"]).toBe("ERR_PACKAGE_PATH_NOT_EXPORTED");
    expect(exportsOf["buckypaper/runtime/server/http/server.js"]).toBe("ERR_PACKAGE_PATH_NOT_EXPORTED");
  });

  it("every import shown in README.md and docs/ names real exports of an exported subpath", () => {
    const shown = documentedImports();
    expect(shown.length).toBeGreaterThan(0);
    for (const { file, spec, names } of shown) {
      const have = exportsOf[spec];
      expect(Array.isArray(have), `${file}: ${spec} is not an exported subpath`).toBe(true);
      for (const n of names) expect(have, `${file}: ${spec} has no export ${n}`).toContain(n);
    }
  });

  it("the CLI bin runs from the installed package", () => {
    const bin = path.join(project, "node_modules/.bin/buckypaper");
    expect(existsSync(bin)).toBe(true);
    const help = run(bin, ["--help"], project);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/usage: buckypaper <command>/);
    const measure = run(bin, ["measure", "snp", "--help"], project);
    expect(measure.status).toBe(0);
    expect(measure.stdout).toMatch(/buckypaper measure snp/);
    // A bad flag is refused with a usage error, not a crash: the installed CLI really parses.
    const bad = run(bin, ["measure", "snp", "--vcpus", "zero"], project);
    expect(bad.status).toBe(2);
  });
});
