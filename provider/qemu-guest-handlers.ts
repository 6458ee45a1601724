// What the local stack's QemuGuest resource does (provider/local-vm.ts): owns one real QEMU guest.
// create starts `buckypaper simulate qemu-guest` detached (its own session, so the guest outlives
// `pulumi up`; runtime/sim/qemu/supervise.ts), waits for the guest's verdict (provisioned, refused or
// failed) and returns it with the timings, the forwarded SSH port and a known_hosts @cert-authority line
// from the runtime's SSH CA; delete stops the supervisor (which stops QEMU) and removes the guest's
// files. State holds no secret: the user-data carries none, the status file neither.
// Pulumi-free, like the other handlers: the serialized provider closure only `require`s this module.
import { spawn } from "node:child_process";
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, rmSync, rmdirSync, writeFileSync } from "node:fs";
import https from "node:https";
import path from "node:path";
import {
  GUEST_CONFIG_FILE,
  GUEST_PROGRESS_FILE,
  readGuestStatus,
  type QemuGuestConfig,
  type QemuGuestStatus,
} from "../runtime/sim/qemu/supervise.js";
import { runtimeRequest } from "./client.js";
import type { RuntimeAttestation } from "../runtime/client/connection.js";
import { absPath, CLI, isUnknown, ownedProcessAlive, same, type CheckFailure, type Props } from "./handler-support.js";

/** Inputs whose change is a different guest (replace: stop the old one first, same directory). */
const GUEST_KEYS = [
  "name",
  "platformDir",
  "stateDir",
  "argv",
  "baseImage",
  "userData",
  "metaData",
  "dataDiskGb",
  "sshPort",
  "bootInputsSha256",
];

/** The checks every supervised guest's inputs share (workload guests and the vHSM's own): its name and paths. */
export function checkGuestNameAndPaths(inputs: Props, need: (k: string, ok: boolean, what: string) => unknown): void {
  need(
    "name",
    typeof inputs.name === "string" && /^[a-z0-9][a-z0-9-]{0,40}$/.test(inputs.name),
    "must be lower-case letters, digits and '-'",
  );
  for (const k of ["platformDir", "stateDir", "baseImage"])
    if (!isUnknown(inputs[k])) need(k, absPath(inputs[k]), "must be an absolute path without '..'");
}

export function check(_kind: string, news: Props): { inputs: Props; failures: CheckFailure[] } {
  const inputs: Props = { timeoutSeconds: 1500, ...news };
  const failures: CheckFailure[] = [];
  const need = (k: string, ok: boolean, what: string) => ok || failures.push({ property: k, reason: `${k} ${what}` });
  checkGuestNameAndPaths(inputs, need);
  if (!isUnknown(inputs.argv))
    need(
      "argv",
      Array.isArray(inputs.argv) &&
        inputs.argv.length > 1 &&
        inputs.argv.every((a) => typeof a === "string") &&
        String(inputs.argv[0]).startsWith("qemu-system-"),
      "must be a QEMU command line (qemu-system-…, then its arguments)",
    );
  for (const k of ["sshPort"])
    if (inputs[k] !== undefined && !isUnknown(inputs[k]))
      need(
        k,
        Number.isInteger(inputs[k]) && (inputs[k] as number) >= 1 && (inputs[k] as number) <= 65535,
        "must be a TCP port",
      );
  if (inputs.dataDiskGb !== undefined)
    need(
      "dataDiskGb",
      Number.isInteger(inputs.dataDiskGb) && (inputs.dataDiskGb as number) >= 1 && (inputs.dataDiskGb as number) <= 64,
      "must be an integer 1..64",
    );
  need(
    "timeoutSeconds",
    Number.isInteger(inputs.timeoutSeconds) && (inputs.timeoutSeconds as number) >= 30,
    "must be an integer ≥ 30",
  );
  return { inputs, failures };
}

/** Is `pid` alive and this guest's supervisor or its QEMU (not a recycled pid)? */
export function guestAlive(pid: unknown, stateDir: string): boolean {
  return ownedProcessAlive(pid, [stateDir]);
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Stops the guest's supervisor and QEMU (also used by the vHSM guest's handlers). */
export function stopGuest(stateDir: string, pids: unknown[]): void {
  const s = readGuestStatus(stateDir);
  const all = new Set([...pids, s?.pid, s?.qemuPid]);
  // The supervisor first (it stops QEMU and its PSP cleanly), then anything left (a supervisor killed
  // with SIGKILL leaves its QEMU behind).
  for (const p of all) {
    if (!guestAlive(p, stateDir)) continue;
    process.kill(p as number, "SIGTERM");
    const until = Date.now() + 10_000;
    while (guestAlive(p, stateDir) && Date.now() < until) sleepSync(100);
    if (guestAlive(p, stateDir)) process.kill(p as number, "SIGKILL");
  }
}

function progressTail(stateDir: string): string {
  try {
    return readFileSync(path.join(stateDir, GUEST_PROGRESS_FILE), "utf8").trim().split("\n").slice(-6).join("\n");
  } catch {
    return "";
  }
}

/** The runtime's SSH CA public key (an unauthenticated read, over TLS pinned to the runtime's CA). */
function sshCaKey(url: string, caPem: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.get(new URL("/v1/ssh/public_key", url), { ca: caPem, timeout: 10_000 }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () =>
        res.statusCode === 200 && /^(ssh|ecdsa)-\S+ \S+/.test(body.trim())
          ? resolve(body.trim())
          : reject(new Error(`ssh/public_key: HTTP ${res.statusCode}`)),
      );
    });
    req.on("timeout", () => req.destroy(new Error("ssh/public_key: timed out")));
    req.on("error", reject);
  });
}

/** The same read from a runtime in a confidential VM: over attested TLS (verified before the request). */
async function attestedSshCaKey(url: string, attestation: RuntimeAttestation): Promise<string> {
  const r = await runtimeRequest({ url, token: "-", attestation }, "GET", "ssh/public_key", undefined, 60_000);
  const body = typeof r.body === "string" ? r.body.trim() : "";
  if (r.status !== 200 || !/^(ssh|ecdsa)-\S+ \S+/.test(body)) throw new Error(`ssh/public_key: HTTP ${r.status}`);
  return body;
}

async function outputsOf(inputs: Props, s: QemuGuestStatus): Promise<Props> {
  let knownHosts = "";
  const attestation = inputs.runtimeAttestation as RuntimeAttestation | undefined;
  const caPem = typeof inputs.runtimeCaPem === "string" && inputs.runtimeCaPem !== "" ? inputs.runtimeCaPem : undefined;
  if (s.state === "provisioned" && typeof inputs.sshPrincipal === "string" && (attestation || caPem)) {
    const key = attestation
      ? await attestedSshCaKey(String(inputs.runtimeUrl), attestation)
      : await sshCaKey(String(inputs.runtimeUrl), caPem!);
    // The host name ssh matches is the principal (ssh -o HostKeyAlias=<principal>), so the line
    // trusts the CA for that name only, not for every host on 127.0.0.1.
    knownHosts = `@cert-authority ${inputs.sshPrincipal} ${key}`;
  }
  return {
    ...inputs,
    pid: s.pid,
    qemuPid: s.qemuPid ?? 0,
    running: true,
    state: s.state,
    accel: s.accel ?? "",
    measurement: s.measurement ?? "",
    kernelMeasured: s.kernelMeasured ?? false,
    reason: s.reason ?? "",
    bootSeconds: s.bootSeconds ?? 0,
    sshSeconds: s.sshSeconds ?? 0,
    pspRequests: s.pspRequests ?? 0,
    halted: s.halted ?? false,
    knownHosts,
    consoleLog: path.join(String(inputs.stateDir), "console.log"),
    startedAt: s.startedAt,
  };
}

/** Starts the supervisor detached and waits for the guest's verdict (also used by the vHSM guest's handlers). */
export async function startGuest(inputs: Props): Promise<Props> {
  const stateDir = String(inputs.stateDir);
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  chmodSync(stateDir, 0o700);
  for (const f of ["status.json", GUEST_PROGRESS_FILE, "console.log"]) rmSync(path.join(stateDir, f), { force: true });
  const cfg: QemuGuestConfig = {
    name: String(inputs.name),
    platformDir: String(inputs.platformDir),
    stateDir,
    argv: inputs.argv as string[],
    baseImage: String(inputs.baseImage),
    userData: String(inputs.userData),
    metaData: String(inputs.metaData),
    ...(inputs.dataDiskGb ? { dataDiskGb: Number(inputs.dataDiskGb) } : {}),
    ...(inputs.sshPort ? { sshPort: Number(inputs.sshPort) } : {}),
    timeoutSeconds: Number(inputs.timeoutSeconds),
    ...(typeof inputs.readyPattern === "string" ? { readyPattern: inputs.readyPattern } : {}),
    ...(typeof inputs.snpHostData === "string" ? { snpHostData: inputs.snpHostData } : {}),
  };
  const cfgFile = path.join(stateDir, GUEST_CONFIG_FILE);
  writeFileSync(cfgFile, `${JSON.stringify(cfg, null, 2)}\n`, { mode: 0o600 });
  const log = openSync(path.join(stateDir, "supervisor.log"), "a", 0o600);
  const child = spawn(process.execPath, [CLI, "simulate", "qemu-guest", "--config", cfgFile, "--state-dir", stateDir], {
    detached: true,
    stdio: ["ignore", log, log],
    cwd: stateDir,
  });
  closeSync(log);
  let exited: number | null | undefined;
  child.on("exit", (code) => (exited = code));
  child.unref();
  // The guest's verdict takes a full boot (about a minute under TCG on an idle machine, more when busy).
  const deadline = Date.now() + (Number(inputs.timeoutSeconds) + 120) * 1000;
  for (;;) {
    const s = readGuestStatus(stateDir);
    // A provisioned guest is reported once its sshd answers too (or the supervisor stopped waiting).
    const settled =
      s &&
      s.state !== "booting" &&
      (s.state !== "provisioned" || !inputs.sshPort || s.sshSeconds !== undefined || exited !== undefined);
    if (s && settled && s.state !== "failed" && s.state !== "stopped") return outputsOf(inputs, s);
    if (s?.state === "failed" || s?.state === "stopped" || exited !== undefined) {
      stopGuest(stateDir, [child.pid]);
      throw new Error(
        `QEMU guest ${String(inputs.name)} did not come up: ${s?.reason ?? `exited with ${exited}`}\n${progressTail(stateDir)}`,
      );
    }
    if (Date.now() > deadline) {
      stopGuest(stateDir, [child.pid]);
      throw new Error(`QEMU guest ${String(inputs.name)}: no verdict in time\n${progressTail(stateDir)}`);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/**
 * The diff every supervised guest makes (workload guests and the vHSM's own): a change of `replaceKeys` is
 * another guest (stop the old one first, same directory); a guest that is not running any more (host reboot,
 * killed) is booted again by the next `up`; a change of `updateKeys` is an update in place.
 */
export function guestDiff(
  olds: Props,
  news: Props,
  replaceKeys: readonly string[],
  updateKeys: readonly string[],
): { changes: boolean; replaces: string[]; deleteBeforeReplace: boolean } {
  const replaces = replaceKeys.filter((k) => !same(olds[k], news[k]));
  const down = replaces.length === 0 && !guestAlive(olds.pid, String(olds.stateDir));
  const other = updateKeys.some((k) => !same(olds[k], news[k]));
  return { changes: replaces.length > 0 || down || other, replaces, deleteBeforeReplace: true };
}

export async function diff(
  _kind: string,
  olds: Props,
  news: Props,
): Promise<{ changes: boolean; replaces: string[]; deleteBeforeReplace: boolean }> {
  return guestDiff(olds, news, GUEST_KEYS, [
    "runtimeUrl",
    "runtimeCaPem",
    "runtimeAttestation",
    "sshPrincipal",
    "timeoutSeconds",
  ]);
}

export async function create(_kind: string, inputs: Props): Promise<{ id: string; outs: Props }> {
  return { id: String(inputs.stateDir), outs: await startGuest(inputs) };
}

export async function update(_kind: string, _id: string, olds: Props, news: Props): Promise<{ outs: Props }> {
  if (guestAlive(olds.pid, String(olds.stateDir))) {
    const s = readGuestStatus(String(news.stateDir));
    if (s) return { outs: await outputsOf(news, s) }; // only the reporting inputs changed
  }
  stopGuest(String(olds.stateDir), [olds.pid]);
  return { outs: await startGuest(news) };
}

/** read for every supervised guest: is it still running (refresh notices a stopped guest). */
export async function read(_kind: string, id: string, props: Props): Promise<{ id: string; props: Props }> {
  return { id, props: { ...props, running: guestAlive(props.pid, String(props.stateDir)) } };
}

export async function remove(_kind: string, _id: string, props: Props): Promise<void> {
  stopGuest(String(props.stateDir), [props.pid, props.qemuPid]);
  rmSync(String(props.stateDir), { recursive: true, force: true });
  try {
    rmdirSync(path.dirname(String(props.stateDir))); // the guests' common directory, once empty
  } catch {
    // not empty (other guests) or already gone
  }
}
