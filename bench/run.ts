// `npm run bench`: runs every bench/*.bench.ts (or those named on the command line) in its own
// process, after a build, and lets each print its own table of figures and ratios.
// Bench files import compiled code from dist/ and use only erasable TypeScript (Node 22 strips types).
import { readdirSync } from "node:fs";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const dir = path.dirname(fileURLToPath(import.meta.url));
const filter = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((f) => f.endsWith(".bench.ts"))
  .filter((f) => filter.length === 0 || filter.some((x) => f.includes(x)))
  .sort();
let failed = 0;
for (const f of files) {
  console.log(`\n=== ${f}`);
  const r = spawnSync(process.execPath, [path.join(dir, f)], { stdio: "inherit" });
  if (r.status !== 0) {
    failed++;
    console.log(`(${f} exited ${r.status})`);
  }
}
process.exitCode = failed ? 1 : 0;
