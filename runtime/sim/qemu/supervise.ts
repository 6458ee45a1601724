// A real QEMU guest of the local stack as a long-running process (`buckypaper simulate qemu-guest`):
// the provider (provider/qemu-guest-handlers.ts) starts it detached so the guest outlives `pulumi up`.
// It makes the guest's disks (copy-on-write root overlay, NoCloud seed with the user-data, data disk),
// loads the persistent simulated platform, boots the guest through launchGuest (the PSP measures the
// exact files QEMU is started with) and follows the console: the enclaivelet's events say whether the
// guest attested and was provisioned or was refused (and why) — by the runtime, or before it was ever
// asked: a root filesystem dm-verity rejects stops the boot in the guest (refused, the PSP never asked).
// A refused guest has nothing left to run: its QEMU is stopped after a short grace (the console then
// shows what cloud-init did not run) to free the CPU; the supervisor stays, keeping the verdict. It keeps a status file — never a secret:
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
  /** HOST_DATA of the launch (64 hex digits), when the argv's sev-snp-guest object does not carry it. */
  snpHostData?: string;
  /**
   * A guest without an enclaivelet (the vHSM runtime's own guest): it is `running` once a console line
   * matches this regular expression, instead of waiting for the agent's verdict. Readiness only: whoever
   * talks to the guest still verifies it (attested TLS), the console carries no trust.
   */
  readyPattern?: string;
}

export type QemuGuestState = "booting" | "provisioned" | "refused" | "running" | "failed" | "stopped";

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
  /** Report requests the guest sent the simulated PSP (0: it never asked, e.g. stopped by dm-verity). */
  pspRequests?: number;
  /** A refused guest's QEMU was stopped after its verdict (nothing left to run). */
  halted?: boolean;
}

/** dm-verity's own refusal or the kit init's (images/guest/init-script.ts), on the guest's console. Not any
 *  "Kernel panic": a loaded TCG host can panic a guest for unrelated reasons. */
export const VERITY_STOP =
  /verity: .*(data block \d+ is corrupted|verification failed)|dm-verity rejected|cannot mount the verified root/;

/** Seconds a refused guest keeps running before its QEMU is stopped. */
const REFUSED_GRACE_SECONDS = 20;

/** The guest's verdict from its console: the agent's first `done`/`failed` event, or dm-verity stopping
 *  the boot before the agent could run. User code runs only after the agent, so a later console line
 *  cannot turn a refusal into "provisioned". */
export function consoleVerdict(
  text: string,
): { state: "provisioned" | "refused" | "failed"; reason?: string; written?: number } | undefined {
  const events = agentEvents(text);
  const v = events.find((e) => e.event === "done" || e.event === "failed");
  if (v?.event === "done") return { state: "provisioned", written: Number(v.written ?? 0) };
  if (v)
    return {
      state: v.reason === "refused" ? "refused" : "failed",
      reason: `${String(v.reason)}: ${String(v.error)}`,
    };
  if (events.length === 0) {
    const line = text.split(/\r?\n/).find((l) => VERITY_STOP.test(l));
    if (line)
      return {
        state: "refused",
        reason: `stopped by dm-verity, never asked the PSP: ${line.replace(/^\[[\s\d.]+\]\s*/, "").trim()}`,
      };
  }
  return undefined;
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
    guest = await launchGuest({
      name: cfg.name,
      argv: cfg.argv,
      sim,
      stateDir: dir,
      ...(cfg.snpHostData ? { snp: { hostData: Buffer.from(cfg.snpHostData, "hex") } } : {}),
    });
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
  let halting = false;
  guest.qemu.once("exit", (code, signal) => {
    qemuExited = true;
    if (stopping || halting) return;
    // The kit init powers the guest off when it cannot mount the verified root: a verdict, not a crash.
    if (status.state === "booting" && consoleVerdict(guest!.console())) return;
    // QEMU's own errors (a busy hostfwd port, a missing file) go to the console log: say them.
    const last = guest!
      .console()
      .split(/\r?\n/)
      .filter((l) => l.trim())
      .slice(-3)
      .join(" | ")
      .slice(-400);
    if (status.state === "booting")
      void fail(`QEMU exited (${code ?? signal}) before the enclaivelet finished${last ? `: ${last}` : ""}`);
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
  for (;;) {
    const exited = qemuExited; // read before the console: a verdict written just before the exit counts
    const text = guest.console();
    // The kernel is `quiet`; systemd's status lines (or the kernel's banner) say the guest is up.
    if (/Linux version |Welcome to |\[\s*(?:\S*\[[0-9;]*m)?\s*OK\s*(?:\S*\[0m)?\s*\]/.test(text))
      once("kernel", `guest kernel up (${secs()} s)`);
    if (cfg.readyPattern !== undefined) {
      const line = text.split(/\r?\n/).find((l) => new RegExp(cfg.readyPattern!).test(l));
      if (line) {
        status.bootSeconds = secs();
        status.state = "running";
        progress(`up in ${status.bootSeconds} s: ${line.trim().slice(0, 160)}`);
        save();
        break;
      }
      if (Date.now() > deadline)
        return fail(
          `the console did not show /${cfg.readyPattern}/ within ${cfg.timeoutSeconds ?? 1500} s; console:\n${text.slice(-1500)}`,
        );
      await sleep(1000);
      continue;
    }
    if (agentEvents(text).some((e) => e.event === "start"))
      once("agent", `enclaivelet attesting through the simulated PSP (${secs()} s)`);
    const verdict = consoleVerdict(text);
    if (verdict) {
      status.bootSeconds = secs();
      status.pspRequests = guest.psp.requests.length;
      status.state = verdict.state;
      if (verdict.state === "provisioned") {
        status.written = verdict.written;
        progress(`provisioned in ${status.bootSeconds} s (attested, ${status.written} file(s) written)`);
      } else {
        status.reason = verdict.reason;
        progress(`${status.state.toUpperCase()} after ${status.bootSeconds} s — ${status.reason}`);
      }
      save();
      break;
    }
    if (stopping) break;
    if (exited) return status.state === "failed" ? 1 : fail(`QEMU exited before the enclaivelet finished`);
    if (Date.now() > deadline)
      return fail(
        `the enclaivelet did not finish within ${cfg.timeoutSeconds ?? 1500} s; console:\n${text.slice(-1500)}`,
      );
    await sleep(1000);
  }
  // A refused guest has nothing left to run (cloud-init's stages and sshd require the agent): after a
  // grace in which the console shows what did not run, stop QEMU to free the CPU; the verdict stays.
  if (status.state === "refused" && !stopping) {
    // (dm-verity's stop needs no grace: with panic=-1 the guest would only reboot into it again.) The
    // grace lasts until systemd has reported the units that required the agent (at most a minute more
    // on a loaded host), so the console shows what did not run.
    if (!qemuExited && guest.psp.requests.length > 0) {
      await sleep(REFUSED_GRACE_SECONDS * 1000);
      const until = Date.now() + 60_000;
      while (!qemuExited && !stopping && Date.now() < until && !/Dependency failed for/.test(guest.console()))
        await sleep(1000);
      await sleep(3000);
    }
    halting = true;
    await guest.stop().catch(() => {});
    status.halted = true;
    save();
    progress(`QEMU stopped: a refused guest has nothing left to run`);
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
  // Keep running like a VM until stopped (a halted refused guest: until destroyed, keeping its verdict).
  await new Promise<void>((resolve) => {
    const t = setInterval(() => {
      if (stopping || (qemuExited && !halting)) {
        clearInterval(t);
        resolve();
      }
    }, 1000);
  });
  return status.state === "failed" ? 1 : 0;
}
