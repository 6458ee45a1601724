#!/usr/bin/env node
// Thin launcher: checks the Node version, then runs the compiled CLI (dist/ is built by `npm run build`
// or by scripts/run on first use).
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 22 || (major === 22 && minor < 12)) {
  process.stderr.write(
    `buckypaper needs Node >= 22.12 (this is ${process.versions.node}); run bin/buckypaper (or scripts/run node bin/buckypaper.js), which finds or installs Node 22\n`,
  );
  process.exit(2);
}
// node:sqlite (the runtime's SQLite storage) is still "experimental" in Node 22 and says so on every
// start; that warning is noise to a user of this CLI, so only that one is dropped.
const emitWarning = process.emitWarning;
process.emitWarning = function (warning, ...rest) {
  const type = typeof rest[0] === "string" ? rest[0] : rest[0]?.type;
  const name = typeof warning === "string" ? type : warning?.name;
  if (name === "ExperimentalWarning" && /SQLite/i.test(String(warning?.message ?? warning))) return;
  return emitWarning.call(process, warning, ...rest);
};
// V8 keeps compiled code between runs (os.tmpdir()/node-compile-cache), which shortens every start.
const { enableCompileCache } = await import("node:module");
enableCompileCache?.();
const argv = process.argv.slice(2);
// `measure` — what scripts call in loops — runs from one bundled module (scripts/bundle-cli.js) when
// that bundle is at least as new as the compiled sources; otherwise the normal path below.
if (argv[0] === "measure") {
  const { statSync, readFileSync } = await import("node:fs");
  const fast = new URL("../dist/cli-fast/measure-main.js", import.meta.url);
  const mtime = (u) => statSync(u, { throwIfNoEntry: false })?.mtimeMs ?? Infinity;
  let fresh = false;
  try {
    const inputs = JSON.parse(readFileSync(new URL("../dist/cli-fast/inputs.json", import.meta.url), "utf8"));
    const built = mtime(fast);
    fresh = inputs.length > 0 && inputs.every((f) => mtime(new URL(`../${f}`, import.meta.url)) <= built);
  } catch {
    // no bundle (or a partial one): the normal path
  }
  if (fresh) {
    const { main } = await import(fast.href);
    process.exitCode = await main(argv.slice(1));
  }
}
if (process.exitCode === undefined) {
  const { main } = await import("../dist/cli/main.js");
  process.exitCode = await main(argv);
}
