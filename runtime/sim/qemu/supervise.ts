// A real QEMU guest of the local stack as a long-running process (`buckypaper simulate qemu-guest`):
// the provider (provider/qemu-guest-handlers.ts) starts it detached so the guest outlives `pulumi up`.
// It makes the guest's disks (copy-on-write root overlay, NoCloud seed with the user-data, data disk),
// loads the persistent simulated platform, boots the guest through launchGuest (the PSP measures the
// exact files QEMU is started with) and follows the console: the enclaivelet's events say whether the
// guest attested and was provisioned or was refused (and why). It keeps a status file — never a secret:
//   <stateDir>/status.json    state, measurement, verdict, reason, timings, QEMU pid
//   <stateDir>/progress.log   one human line per step (what `npm run local` shows while guests boot)
//   <stateDir>/console.log    the guest's serial console (QEMU's stdout)
// SIGTERM stops QEMU and the PSP, then the process exits.
import { appendFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { LOG_PREFIX } from "../../guest/log.js";
import { loadPlatform } from "../localvm/platform.js";
import { prepareGuestDisks } from "./guest.js";
import { launchGuest, type RunningGuest } from "./launch.js";

/** What the provider writes to <stateDir>/guest.json for the supervisor. No secret is in it. */
export interface QemuGuestConfig {
  name: string;
  platformDir: string;
  stateDir: string;
  /** The QEMU command line (qemuGuestArgv, program first) naming <stateDir>/root.qcow2, seed.iso, data.qcow2. */
  argv: string[];
  /** Root filesystem image the overlay is made on. */
  baseImage: string;
  userData: string;
  metaData: string;
  /** GiB of the data disk (absent: no data disk). */
  dataDiskGb?: number;
  /** Host port forwarded to the guest's sshd (also in the argv's hostfwd); the supervisor waits for its banner. */
  sshPort?: number;
  /** Give up (state failed) when the agent has not finished after this many seconds (default 1500). */
  timeoutSeconds?: number;
}

export type QemuGuestState = "booting" | "provisioned" | "refused" | "failed" | "stopped";

export interface QemuGuestStatus {
  name: string;
  state: QemuGuestState;
  /** The supervisor's pid. */
  pid: number;
  qemuPid?: number;
  accel?: string;
  /** What the simulated PSP measured from the files QEMU was started with. */
  measurement?: string;
  kernelMeasured?: boolean;
  startedAt: string;
  /** Seconds from QEMU's start to the enclaivelet's verdict (provisioned or refused). */
  bootSeconds?: number;
  /** Seconds from QEMU's start to the SSH banner on the forwarded port. */
  sshSeconds?: number;
  /** The agent's failure class and message (refused: the runtime's failed checks), or why the boot failed. */
  reason?: string;
  /** Files the agent wrote (count, from its `done` event). */
  written?: number;
}

export const GUEST_CONFIG_FILE = "guest.json";
export const GUEST_STATUS_FILE = "status.json";
export const GUEST_PROGRESS_FILE = "progress.log";

export function readGuestStatus(stateDir: string): QemuGuestStatus | undefined {
  try {
    return JSON.parse(readFileSync(path.join(stateDir, GUEST_STATUS_FILE), "utf8")) as QemuGuestStatus;
  } catch {
    return undefined;
  }
}

/** The enclaivelet's JSON events in a console text (its unit logs to the console too). */
export function agentEvents(consoleText: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of consoleText.split(/\r?\n/)) {
    const i = line.indexOf(`${LOG_PREFIX}{`);
    if (i < 0) continue;
    try {
      out.push(JSON.parse(line.slice(i + LOG_PREFIX.length)) as Record<string, unknown>);
    } catch {
      // a line cut by the console (interleaved output): not an event
    }
  }
  return out;
}

function sshBanner(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(5000, () => done(false));
    s.once("data", (d) => done(d.toString("latin1").startsWith("SSH-")));
    s.once("error", () => done(false));
    s.once("end", () => done(false));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs the guest until SIGTERM (or until QEMU exits). Returns the process exit code. */
export async function superviseQemuGuest(configFile: string): Promise<number> {
  const cfg = JSON.parse(readFileSync(configFile, "utf8")) as QemuGuestConfig;
  const dir = cfg.stateDir;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const status: QemuGuestStatus = { name: cfg.name, state: "booting", pid: process.pid, startedAt: "" };
  const save = () => {
    const tmp = path.join(dir, `${GUEST_STATUS_FILE}.tmp`);
    writeFileSync(tmp, `${JSON.stringify(status, null, 2)}\n`, { mode: 0o600 });
    renameSync(tmp, path.join(dir, GUEST_STATUS_FILE));
  };
  const progress = (line: string) =>
    appendFileSync(path.join(dir, GUEST_PROGRESS_FILE), `${cfg.name}: ${line}\n`, { mode: 0o600 });
  let guest: RunningGuest | undefined;
  let stopping = false;
  const stop = async (state: QemuGuestState) => {
    if (stopping) return;
    stopping = true;
    await guest?.stop().catch(() => {});
    if (status.state === "booting" || state === "stopped") status.state = state;
    save();
  };
  process.on("SIGTERM", () => void stop("stopped").then(() => process.exit(0)));
  process.on("SIGINT", () => void stop("stopped").then(() => process.exit(0)));
  const fail = async (reason: string) => {
    status.state = "failed";
    status.reason = reason;
    progress(`FAILED — ${reason.split("\n")[0]}`);
    save();
    await stop("failed");
    return 1;
  };

  try {
    prepareGuestDisks({
      dir,
      baseImage: cfg.baseImage,
      userData: cfg.userData,
      metaData: cfg.metaData,
      ...(cfg.dataDiskGb ? { dataDiskGb: cfg.dataDiskGb } : {}),
    });
    const sim = await loadPlatform(cfg.platformDir);
    status.startedAt = new Date().toISOString();
    guest = await launchGuest({ name: cfg.name, argv: cfg.argv, sim, stateDir: dir });
  } catch (e) {
    return fail(`could not start the guest: ${(e as Error).message}`);
  }
  const t0 = Date.now();
  const secs = () => Math.round((Date.now() - t0) / 100) / 10;
  status.qemuPid = guest.qemu.pid;
  status.accel = guest.argv[guest.argv.indexOf("-accel") + 1];
  status.measurement = guest.launch.measurement;
  status.kernelMeasured = guest.launch.kernelMeasured;
  save();
  progress(
    `QEMU started (${status.accel}, pid ${status.qemuPid}); the simulated PSP measured ${guest.launch.measurement.slice(0, 16)}…`,
  );
  let qemuExited = false;
  guest.qemu.once("exit", (code, signal) => {
    qemuExited = true;
    if (stopping) return;
    if (status.state === "booting") void fail(`QEMU exited (${code ?? signal}) before the enclaivelet finished`);
    else {
      status.state = "stopped";
      save();
      progress(`QEMU exited (${code ?? signal})`);
    }
  });

  // Follow the console: kernel, agent start, verdict.
  const deadline = Date.now() + (cfg.timeoutSeconds ?? 1500) * 1000;
  const seen = new Set<string>();
  const once = (key: string, line: string) => {
    if (seen.has(key)) return;
    seen.add(key);
    progress(line);
  };
  while (!stopping && !qemuExited) {
    const text = guest.console();
    // The kernel is `quiet`; systemd's status lines (or the kernel's banner) say the guest is up.
    if (/Linux version |Welcome to |\[\s*(?:\S*\[[0-9;]*m)?\s*OK\s*(?:\S*\[0m)?\s*\]/.test(text))
      once("kernel", `guest kernel up, systemd starting (${secs()} s)`);
    const events = agentEvents(text);
    if (events.some((e) => e.event === "start"))
      once("agent", `enclaivelet attesting through the simulated PSP (${secs()} s)`);
    // The agent's first verdict counts: user code (cloud-init's stages) runs only after the agent, so a
    // later line on the console cannot turn a refusal into "provisioned".
    const verdict = events.find((e) => e.event === "done" || e.event === "failed");
    if (verdict) {
      status.bootSeconds = secs();
      if (verdict.event === "done") {
        status.state = "provisioned";
        status.written = Number(verdict.written ?? 0);
        progress(`provisioned in ${status.bootSeconds} s (attested, ${status.written} file(s) written)`);
      } else {
        status.state = verdict.reason === "refused" ? "refused" : "failed";
        status.reason = `${String(verdict.reason)}: ${String(verdict.error)}`;
        progress(`${status.state.toUpperCase()} after ${status.bootSeconds} s — ${status.reason}`);
      }
      save();
      break;
    }
    if (Date.now() > deadline)
      return fail(
        `the enclaivelet did not finish within ${cfg.timeoutSeconds ?? 1500} s; console:\n${text.slice(-1500)}`,
      );
    await sleep(1000);
  }
  // A provisioned guest is usable once its sshd answers on the forwarded port.
  if (status.state === "provisioned" && cfg.sshPort) {
    while (!stopping && !qemuExited && Date.now() < deadline) {
      if (await sshBanner(cfg.sshPort)) {
        status.sshSeconds = secs();
        save();
        progress(`sshd answers on 127.0.0.1:${cfg.sshPort} (${status.sshSeconds} s)`);
        break;
      }
      await sleep(2000);
    }
  }
  // Keep running like a VM until stopped.
  await new Promise<void>((resolve) => {
    const t = setInterval(() => {
      if (stopping || qemuExited) {
        clearInterval(t);
        resolve();
      }
    }, 1000);
  });
  return status.state === "failed" ? 1 : 0;
}
