// After tsc: bundles `buckypaper measure` (dist/cli/measure-main.js and what it imports from dist/) into
// dist/cli-fast/, so the command loads one module instead of a dozen (each ESM module costs a resolve,
// stats and a package.json lookup at start-up; `npm run bench` measure-snp shows the effect).
// Packages from node_modules stay external. Without rolldown (it comes with vitest) nothing is
// bundled and bin/buckypaper.js simply takes the normal path.
import { rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const outDir = path.join(root, "dist/cli-fast");
let build;
try {
  ({ build } = await import("rolldown"));
} catch {
  console.error("bundle-cli: rolldown not installed; `buckypaper measure` runs unbundled");
  process.exit(0);
}
await rm(outDir, { recursive: true, force: true });
const out = await build({
  input: path.join(root, "dist/cli/measure-main.js"),
  platform: "node",
  external: (id) => !id.startsWith(".") && !path.isAbsolute(id),
  logLevel: "warn",
  output: { dir: outDir, format: "esm", entryFileNames: "[name].js" },
});
// The compiled modules inside the bundle: bin/buckypaper.js takes the fast path only while none of them
// is newer than the bundle (tsc leaves unchanged outputs alone, so one file's date is not enough).
const inputs = new Set();
for (const o of out.output)
  for (const id of o.moduleIds ?? []) if (id.startsWith(root)) inputs.add(path.relative(root, id));
await writeFile(path.join(outDir, "inputs.json"), JSON.stringify([...inputs].sort()));
