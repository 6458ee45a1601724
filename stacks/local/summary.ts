// Prints the local stack's summary table from `pulumi stack output --json` on stdin:
// per VM what was registered (expected), what it booted (measured), the verdict and what was delivered.
// Plain erasable TypeScript: Node 22 runs it as is (scripts/local-up.sh).
import { readFileSync } from "node:fs";

/** One VM's outputs in the stack's `vm` output (also read by test/local/local-stack.test.ts). */
export interface VmOut {
  workloadId: string;
  expectedMeasurement: string;
  measurement: string;
  kernelMeasured: boolean;
  verdict: string;
  reason: string;
  delivered: string[];
  root: string;
  pid: number;
}
const out = JSON.parse(readFileSync(0, "utf8")) as {
  runtimeUrl: string;
  auditLog: string;
  simulatedArkSha256: string;
  vm: Record<string, VmOut>;
};
const short = (h: string) => (h ? `${h.slice(0, 16)}…` : "-");
const rows: string[][] = [["VM", "registered (expected)", "booted (measured)", "match", "verdict", "delivered"]];
for (const [name, v] of Object.entries(out.vm ?? {})) {
  const verdict = v.verdict === "accepted" ? "accepted (simulated)" : v.verdict.toUpperCase();
  rows.push([
    name,
    short(v.expectedMeasurement),
    short(v.measurement),
    v.expectedMeasurement === v.measurement ? "yes" : "NO",
    verdict,
    v.delivered.length ? `${v.delivered.length} files` : "nothing",
  ]);
}
const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("  ");
console.log(line(rows[0]));
console.log(widths.map((w) => "-".repeat(w)).join("  "));
for (const r of rows.slice(1)) console.log(line(r));
for (const [name, v] of Object.entries(out.vm ?? {})) {
  if (v.verdict !== "accepted") console.log(`\n${name}: ${v.verdict.toUpperCase()} — ${v.reason}`);
  else console.log(`\n${name}: ${v.delivered.join(" ")}`);
}
const anyKernel = Object.values(out.vm ?? {}).some((v) => v.kernelMeasured);
console.log(
  `\nMeasured: firmware + vCPU count/type${anyKernel ? " + kernel/initrd/cmdline" : " (Debian's OVMF has no kernel-hashes table, so the kernel is not in the SNP digest — as on real hardware)"}.`,
);
console.log(
  `Runtime ${out.runtimeUrl} trusts only the simulated platform (ARK SHA-256 ${short(out.simulatedArkSha256)}); audit log: ${out.auditLog}`,
);
for (const [name, v] of Object.entries(out.vm ?? {})) console.log(`  ${name}: pid ${v.pid}, private root ${v.root}`);
