// Prints the real guests' progress while `pulumi up` boots them (scripts/local-up.sh runs it in the
// background): every new line of <stateDir>/vms/*/progress.log, as each guest's supervisor writes it.
// Usage: node stacks/local/progress.ts <stateDir>. Plain erasable TypeScript: Node 22 runs it as is.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";

const vmsDir = path.join(process.argv[2] ?? ".", "vms");
const offsets = new Map<string, number>();
const t0 = Date.now();
function poll(): void {
  if (!existsSync(vmsDir)) return;
  for (const name of readdirSync(vmsDir)) {
    const file = path.join(vmsDir, name, "progress.log");
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
if (existsSync(vmsDir))
  for (const name of readdirSync(vmsDir)) {
    const file = path.join(vmsDir, name, "progress.log");
    if (existsSync(file)) offsets.set(file, readFileSync(file, "utf8").length);
  }
setInterval(poll, 1000);
process.on("SIGTERM", () => {
  poll();
  process.exit(0);
});
