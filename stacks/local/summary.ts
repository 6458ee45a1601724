// Prints the local stack's summary from `pulumi stack output --json` on stdin: per VM what was
// registered (expected), what it booted (measured), what the host changed (tamper demonstrations),
// whether it was provisioned or refused (and why — by the runtime, or by dm-verity in the guest),
// how long the boot took, and how to log in to `web` trusting only the runtime's SSH CA. Writes that
// CA line to the stack's known_hosts file (sshKnownHostsFile) so the printed ssh command works as is.
// Plain erasable TypeScript: Node 22 runs it as is (scripts/local-up.sh).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
// Type-only (erased when Node runs this file): the component's own declaration of the output.
import type { VhsmAttestationSummary } from "../../components/vhsm.js";

/** One VM's outputs in the stack's `vm` output (also read by test/stacks/local/*.test.ts). */
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
  /** real (a QEMU guest) or process (a process tree). */
  mode: string;
  /** provisioned | refused. */
  status: string;
  sshPort: number;
  knownHosts: string;
  bootSeconds: number;
  accel: string;
  consoleLog: string;
  /** What was changed from the registered inputs (tamper demonstrations), empty when nothing. */
  tampered: string;
  /** Report requests the guest sent its simulated PSP (0: never asked); -1 for process trees. */
  pspRequests: number;
}
/** The vHSM runtime guest's attestation (the stack's `vhsmAttestation` output: the Vhsm's attestationSummary). */
export type VhsmAttestationOut = VhsmAttestationSummary;
const out = JSON.parse(readFileSync(0, "utf8")) as {
  runtimeUrl: string;
  auditLog: string;
  simulatedArkSha256: string;
  vmMode?: { mode: string; reason: string };
  sshUserKey?: string;
  sshKnownHostsFile?: string;
  vhsmMode?: { mode: string; reason: string };
  vhsmAttestation?: VhsmAttestationOut | null;
  vm: Record<string, VmOut>;
};
// An empty object means the engine recorded no outputs: say so instead of printing an empty table.
if (!out.vm || !out.runtimeUrl) {
  console.error("the stack has no outputs (vm, runtimeUrl): nothing to summarise — run `pulumi up` again");
  process.exit(1);
}
const vms = Object.entries(out.vm);
const short = (h: string) => (h ? `${h.slice(0, 16)}…` : "-");
const rows: string[][] = [["VM", "kind", "registered (expected)", "booted (measured)", "match", "status", "boot"]];
for (const [name, v] of vms) {
  const real = v.mode === "real";
  rows.push([
    name,
    real ? `QEMU guest (${v.accel})` : "process tree",
    short(v.expectedMeasurement),
    short(v.measurement),
    v.expectedMeasurement === v.measurement ? "yes" : "NO",
    v.status === "provisioned" ? "provisioned" : v.status.toUpperCase(),
    real && v.bootSeconds ? `${v.bootSeconds} s` : "-",
  ]);
}
const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("  ");
console.log(line(rows[0]));
console.log(widths.map((w) => "-".repeat(w)).join("  "));
for (const r of rows.slice(1)) console.log(line(r));

console.log("");
for (const [name, v] of vms) {
  if (v.tampered) console.log(`${name}: booted with ${v.tampered}`);
  if (v.status !== "provisioned") console.log(`${name}: REFUSED, nothing delivered — ${v.reason}`);
  else if (v.mode === "real")
    console.log(`${name}: provisioned — attested, LUKS2 data disk unlocked in the guest, certificates installed`);
  else console.log(`${name}: provisioned — ${v.delivered.join(" ")}`);
}
if (out.vmMode?.mode === "process")
  console.log(`\nProcess-tree VMs, not real guests: ${out.vmMode.reason || "asked for (config vms=process)"}.`);

const anyKernel = vms.some(([, v]) => v.kernelMeasured);
const anyReal = vms.some(([, v]) => v.mode === "real");
console.log(
  `\nMeasured: firmware + vCPU count/type${anyKernel ? ` + kernel/initrd/cmdline${anyReal ? " (the cmdline carries the dm-verity root hash: the root filesystem, with the enclaivelet in it, is bound too)" : ""}` : " (Debian's OVMF has no kernel-hashes table, so the kernel is not in the SNP digest — as on real hardware with this firmware; the kit's AmdSev firmware puts it there)"}${anyReal ? "; the user-data's SHA-256 is bound into each report and checked against the registration" : ""}.`,
);
const va = out.vhsmAttestation;
if (va) {
  console.log(
    `\nvHSM runtime: QEMU guest (${va.accel}), attested — ${va.measurement === va.expectedMeasurement ? "measurement matches the one computed from its boot inputs" : "MEASUREMENT MISMATCH"}`,
  );
  console.log(
    `  expected  ${va.expectedMeasurement} (computed from its QEMU argv: ${va.kernelMeasured ? "firmware + vCPUs + kernel/initrd/cmdline with the dm-verity root hash, so the runtime's code and config" : "firmware + vCPUs only: the runtime's code is NOT in it"})`,
  );
  console.log(`  reported  ${va.measurement} (the simulated PSP measured ${short(va.launchMeasurement)})`);
  console.log(
    `  instance  HOST_DATA ${va.hostData} (${va.hostData === va.snpHostData ? "= SHA-256 of this runtime's instance id in state" : `EXPECTED ${va.snpHostData}`}; another copy of the image is refused)`,
  );
  console.log(
    `  runtime   instance ${va.runtimeInstanceId || "(none reported)"} (bound in its evidence since init; a twin with the same HOST_DATA is refused)`,
  );
  console.log(`  TLS key   SPKI SHA-256 ${va.tlsKeySha256} (bound into the report; every request is pinned to it)`);
  console.log(`  verified  by ${va.verifiedBy}, ${va.verifiedAt}; the VMs verify it the same way before attesting`);
  console.log(`  up in ${va.bootSeconds} s; pid ${va.pid} (QEMU supervisor), console ${va.consoleLog}`);
} else if (out.vhsmMode?.mode === "process")
  console.log(
    `\nvHSM runtime: a process on this machine, not an attested guest: ${out.vhsmMode.reason || "asked for (config vhsm=process)"}.`,
  );
console.log(
  `Runtime ${out.runtimeUrl} trusts only the simulated platform (ARK SHA-256 ${short(out.simulatedArkSha256)}); audit log: ${out.auditLog || "inside the runtime's guest"}`,
);
for (const [name, v] of vms)
  console.log(
    v.mode === "real"
      ? `  ${name}: pid ${v.pid} (QEMU supervisor), console ${v.consoleLog}`
      : `  ${name}: pid ${v.pid}, private root ${v.root}`,
  );

// Log in to web: the host key is trusted through the runtime's SSH CA only (no trust on first use).
const web = out.vm?.web;
if (web?.mode === "real" && web.knownHosts && web.sshPort && out.sshKnownHostsFile && out.sshUserKey) {
  mkdirSync(path.dirname(out.sshKnownHostsFile), { recursive: true, mode: 0o700 });
  writeFileSync(out.sshKnownHostsFile, `${web.knownHosts}\n`, { mode: 0o600 });
  const alias = web.knownHosts.split(" ")[1];
  console.log(`\nLog in to web (host key checked against the runtime's SSH CA; no trust on first use):`);
  console.log(`  known_hosts (${out.sshKnownHostsFile}):`);
  console.log(`    ${web.knownHosts}`);
  console.log(
    `  ssh -i ${out.sshUserKey} -p ${web.sshPort} -o UserKnownHostsFile=${out.sshKnownHostsFile} -o StrictHostKeyChecking=yes -o HostKeyAlias=${alias} debian@127.0.0.1`,
  );
}
