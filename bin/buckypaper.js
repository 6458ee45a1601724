#!/usr/bin/env node
// Thin launcher: checks the Node version, then runs the compiled CLI (dist/ is built by `npm run build`
// or by scripts/run on first use).
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 22 || (major === 22 && minor < 12)) {
  process.stderr.write(
    `buckypaper needs Node >= 22.12 (this is ${process.versions.node}); run it through scripts/run, which installs Node 22\n`,
  );
  process.exit(2);
}
const { main } = await import("../dist/cli/main.js");
process.exitCode = await main(process.argv.slice(2));
