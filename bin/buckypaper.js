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
const { main } = await import("../dist/cli/main.js");
process.exitCode = await main(process.argv.slice(2));
