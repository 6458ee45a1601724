// Prints the real guests' progress while `pulumi up` boots them (scripts/local-up.sh runs it in the
// background): every new line of <stateDir>/vms/*/progress.log and <stateDir>/vhsm/progress.log (the
// runtime's own guest), as each guest's supervisor writes it.
// Usage: node stacks/local/progress.ts <stateDir>. Plain erasable TypeScript: Node 22 runs it as is.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";

const stateDir = process.argv[2] ?? ".";
const vmsDir = path.join(stateDir, "vms");
const offsets = new Map<string, number>();
const t0 = Date.now();
const progressFiles = () => [
  path.join(stateDir, "vhsm", "progress.log"),
  ...(existsSync(vmsDir) ? readdirSync(vmsDir).map((n) => path.join(vmsDir, n, "progress.log")) : []),
];
function poll(): void {
  for (const file of progressFiles()) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    const seen = offsets.get(file) ?? 0;
    if (text.length < seen) offsets.set(file, 0); // a new boot of this guest
    const from = Math.min(seen, text.length);
    const fresh = text.slice(from);
    const upto = fresh.lastIndexOf("\n");
    if (upto < 0) continue;
    for (const l of fresh.slice(0, upto).split("\n"))
      if (l) console.log(`  [${Math.round((Date.now() - t0) / 1000)} s] ${l}`);
    offsets.set(file, from + upto + 1);
  }
}
// Lines already there are from an earlier `up`: start after them.
for (const file of progressFiles()) if (existsSync(file)) offsets.set(file, readFileSync(file, "utf8").length);
setInterval(poll, 1000);
process.on("SIGTERM", () => {
  poll();
  process.exit(0);
});
