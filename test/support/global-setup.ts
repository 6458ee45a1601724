// Builds dist/ once per test run so tests that spawn the real `buckypaper` CLI run current code.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import path from "node:path";

export default function setup(): void {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
  const tsc = path.join(root, "node_modules/typescript/bin/tsc");
  try {
    execFileSync(process.execPath, [tsc, "-p", "tsconfig.json"], { cwd: root, stdio: "pipe" });
  } catch (e) {
    // Type errors still emit JS (noEmitOnError is off); show them, do not hide them.
    const out = (e as { stdout?: Buffer }).stdout?.toString() ?? String(e);
    process.stderr.write(`tsc reported errors (dist/ was still emitted):\n${out.slice(0, 4000)}\n`);
  }
  // The bundled `buckypaper measure` fast path, so the tests run what users run.
  execFileSync(process.execPath, [path.join(root, "scripts/bundle-cli.js")], { cwd: root, stdio: "inherit" });
}
