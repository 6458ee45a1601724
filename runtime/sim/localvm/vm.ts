// A local confidential VM as a process tree: the simulated PSP measures the boot inputs this VM is
// started with, then the enclaivelet (the same agent a real guest runs) attests with evidence signed by
// the persistent simulated platform and provisions what it receives into the VM's private root. The
// process then stays up like a running VM until it is stopped (SIGTERM), keeping a status file:
//   <stateDir>/status.json   measurement, verdict (+ reason), delivered files — never secret values
//   <stateDir>/vm.pid        the process id
// Pulumi-free: provider/local-vm-handlers.ts starts it through `buckypaper simulate vm`.
import {
  chmodSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  type Dirent,
} from "node:fs";
import path from "node:path";
import { runAgent } from "../../guest/agent.js";
import { parseConfig, type EnclaiveletConfig } from "../../guest/config.js";
import { simulatorProvider } from "./evidence.js";
import { formatLogLine, type LogEvent } from "../../guest/log.js";
import { LocalVmError } from "./errors.js";
import { loadPlatform } from "./platform.js";
import { measureLaunch, type BootInputs, type LaunchMeasurement } from "./psp.js";

export interface LocalVmOptions {
  name: string;
  /** Directory of the simulated platform (platform.json). */
  platformDir: string;
  boot: BootInputs;
  /** The enclaivelet config rendered into this VM's user-data (JSON file). */
  agentConfigFile: string;
  /** The VM's private root: everything provisioned lands under it (created 0700). */
  root: string;
  /** status.json, vm.pid. */
  stateDir: string;
}

export type Verdict = "accepted" | "refused" | "failed";

export interface LocalVmStatus {
  name: string;
  pid: number;
  /** failed: the VM could not boot (bad boot inputs, no platform); `error` says why. */
  state: "booting" | "running" | "failed";
  error?: string;
  startedAt: string;
  root: string;
  boot?: LaunchMeasurement;
  attestation?: {
    verdict: Verdict;
    /** The agent's failure class (refused, unreachable, evidence, …). */
    reason?: string;
    /** The runtime's failed checks or the error, as the agent reported it. */
    detail?: string;
    /** Evidence came from the simulated platform (always true for a local VM). */
    simulated: true;
  };
  /** Guest paths provisioned under the root, now or at an earlier boot (values are never recorded). */
  delivered: string[];
}

export const STATUS_FILE = "status.json";
export const PID_FILE = "vm.pid";

/** Guest paths ("/etc/x") of the files under a VM's root. */
function filesUnder(root: string, rel = ""): string[] {
  let entries: Dirent[];
  try {
    entries = readdirSync(path.join(root, rel), { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) =>
    e.isDirectory() ? filesUnder(root, path.join(rel, e.name)) : e.isFile() ? [`/${path.join(rel, e.name)}`] : [],
  );
}

function writeStatus(dir: string, s: LocalVmStatus): void {
  const tmp = path.join(dir, `.${STATUS_FILE}.tmp`);
  writeFileSync(tmp, `${JSON.stringify(s, null, 2)}\n`, { mode: 0o644 });
  renameSync(tmp, path.join(dir, STATUS_FILE));
}

export function readStatus(stateDir: string): LocalVmStatus | undefined {
  try {
    return JSON.parse(readFileSync(path.join(stateDir, STATUS_FILE), "utf8")) as LocalVmStatus;
  } catch {
    return undefined;
  }
}

function agentConfig(file: string, root: string): EnclaiveletConfig {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch (e) {
    throw new LocalVmError("agent-config", `cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? "not JSON"})`);
  }
  // The VM's evidence comes from its simulated PSP; provisioning goes to its private root.
  return parseConfig({ ...raw, root, evidence: { ...(raw.evidence as object), provider: "simulator" } });
}

/** Boots the VM (measure, attest, provision) and returns its status; the caller keeps the process alive. */
export async function bootLocalVm(
  o: LocalVmOptions,
  log: (e: LogEvent) => void = (e) => process.stdout.write(formatLogLine(e) + "\n"),
): Promise<LocalVmStatus> {
  mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
  mkdirSync(o.root, { recursive: true, mode: 0o700 });
  chmodSync(o.root, 0o700);
  writeFileSync(path.join(o.stateDir, PID_FILE), `${process.pid}\n`);
  const status: LocalVmStatus = {
    name: o.name,
    pid: process.pid,
    state: "booting",
    startedAt: new Date().toISOString(),
    root: o.root,
    delivered: [],
  };
  writeStatus(o.stateDir, status);

  const boot = measureLaunch(o.boot);
  status.boot = boot;
  log({
    level: "info",
    event: "psp.launch",
    measurement: boot.measurement,
    kernelMeasured: boot.kernelMeasured,
    ...boot.inputs,
  });
  const cfg = agentConfig(o.agentConfigFile, o.root);
  const sim = await loadPlatform(o.platformDir);
  // A few quick retries only: the runtime is already up when a local VM starts.
  const outcome = await runAgent(
    { ...cfg, retry: { attempts: 3, initialDelayMs: 300, maxDelayMs: 2000 } },
    { provider: simulatorProvider(sim, { measurement: boot.measurement }), log },
  );
  status.attestation = outcome.ok
    ? { verdict: "accepted", simulated: true }
    : {
        verdict: outcome.reason === "refused" ? "refused" : "failed",
        reason: outcome.reason,
        detail: outcome.error,
        simulated: true,
      };
  // Everything in the private root came from provisioning (this boot or an earlier one: a certificate
  // still valid is not re-issued at reboot).
  status.delivered = [...new Set([...outcome.written, ...outcome.unchanged, ...filesUnder(o.root)])].sort();
  status.state = "running";
  writeStatus(o.stateDir, status);
  return status;
}

/** Foreground VM process: boot, then stay up until SIGTERM/SIGINT (the VM is "powered off"). */
export async function runLocalVm(o: LocalVmOptions): Promise<never> {
  const stop = () => {
    rmSync(path.join(o.stateDir, PID_FILE), { force: true });
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  try {
    await bootLocalVm(o);
  } catch (e) {
    const prev = readStatus(o.stateDir);
    mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
    writeStatus(o.stateDir, {
      name: o.name,
      pid: process.pid,
      startedAt: new Date().toISOString(),
      root: o.root,
      delivered: [],
      ...prev,
      state: "failed",
      error: (e as Error).message,
    });
    rmSync(path.join(o.stateDir, PID_FILE), { force: true });
    process.stderr.write(`local VM ${o.name}: ${(e as Error).message}\n`);
    process.exit(2);
  }
  setInterval(() => {}, 1 << 30);
  return new Promise<never>(() => {});
}
