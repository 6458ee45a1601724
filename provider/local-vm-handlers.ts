// What the local stack's dynamic resources do (provider/local-vm.ts): a simulated SEV-SNP platform
// directory, local confidential VM processes, one-off runtime writes (engine configuration the other
// resources do not model), and generated secrets. Pulumi-free, like handlers.ts: the serialized
// provider closures only `require` this module and forward.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  openSync,
  closeSync,
  readFileSync,
  rmSync,
  rmdirSync,
  writeFileSync,
  chmodSync,
} from "node:fs";
import path from "node:path";
import { initPlatform, PLATFORM_FILE } from "../runtime/sim/localvm/platform.js";
import { readStatus, PID_FILE, type LocalVmStatus } from "../runtime/sim/localvm/vm.js";
import { runtimeRequest, type RuntimeConnection } from "./client.js";
import { absPath, CLI, isUnknown, ownedProcessAlive, same, type CheckFailure, type Props } from "./handler-support.js";

// ---------------------------------------------------------------------------------------------
// Simulated platform

function checkPlatform(news: Props): { inputs: Props; failures: CheckFailure[] } {
  const inputs: Props = { product: "Genoa", ...news };
  const failures: CheckFailure[] = [];
  if (!isUnknown(inputs.dir) && !absPath(inputs.dir))
    failures.push({ property: "dir", reason: "dir must be an absolute path without '..'" });
  if (!["Milan", "Genoa", "Turin"].includes(String(inputs.product)))
    failures.push({ property: "product", reason: "product must be Milan, Genoa or Turin" });
  return { inputs, failures };
}

async function createPlatform(inputs: Props): Promise<{ id: string; outs: Props }> {
  const { anchor } = await initPlatform(String(inputs.dir), { product: inputs.product as "Genoa" });
  return { id: String(inputs.dir), outs: { ...inputs, anchor, arkSha256: anchor.ark_sha256 } };
}

// ---------------------------------------------------------------------------------------------
// Local VM

const VM_BOOT_KEYS = [
  "name",
  "platformDir",
  "stateDir",
  "firmware",
  "kernel",
  "initrd",
  "append",
  "vcpus",
  "vcpuType",
  "bootInputsSha256",
  "agentConfig",
];

function checkVm(news: Props): { inputs: Props; failures: CheckFailure[] } {
  const inputs: Props = { ...news };
  const failures: CheckFailure[] = [];
  const need = (k: string, ok: boolean, what: string) => ok || failures.push({ property: k, reason: `${k} ${what}` });
  for (const k of ["platformDir", "stateDir", "firmware"])
    if (!isUnknown(inputs[k])) need(k, absPath(inputs[k]), "must be an absolute path without '..'");
  for (const k of ["kernel", "initrd"])
    if (inputs[k] !== undefined && !isUnknown(inputs[k]))
      need(k, absPath(inputs[k]), "must be an absolute path without '..'");
  need(
    "name",
    typeof inputs.name === "string" && /^[a-z0-9][a-z0-9-]{0,40}$/.test(inputs.name),
    "must be lower-case letters, digits and '-'",
  );
  need(
    "vcpus",
    Number.isInteger(inputs.vcpus) && (inputs.vcpus as number) >= 1 && (inputs.vcpus as number) <= 512,
    "must be an integer 1..512",
  );
  need("vcpuType", typeof inputs.vcpuType === "string" && inputs.vcpuType !== "", "is required");
  if (!isUnknown(inputs.agentConfig))
    need(
      "agentConfig",
      typeof inputs.agentConfig === "string" && inputs.agentConfig.startsWith("{"),
      "must be the enclaivelet config (JSON)",
    );
  return { inputs, failures };
}

/** Is `pid` alive and a local VM of this state directory (not a recycled pid)? */
export function vmAlive(pid: unknown, stateDir: string): boolean {
  return ownedProcessAlive(pid, ["simulate", stateDir]);
}

function vmPid(stateDir: string): number | undefined {
  try {
    return Number(readFileSync(path.join(stateDir, PID_FILE), "utf8").trim());
  } catch {
    return undefined;
  }
}

function logTail(stateDir: string): string {
  try {
    const lines = readFileSync(path.join(stateDir, "vm.log"), "utf8").trim().split("\n");
    return lines.slice(-8).join("\n");
  } catch {
    return "";
  }
}

function vmOutputs(inputs: Props, s: LocalVmStatus): Props {
  return {
    ...inputs,
    pid: s.pid,
    running: true,
    measurement: s.boot?.measurement ?? "",
    kernelMeasured: s.boot?.kernelMeasured ?? false,
    verdict: s.attestation?.verdict ?? "failed",
    reason: s.attestation?.reason ?? "",
    detail: s.attestation?.detail ?? "",
    delivered: s.delivered,
    root: s.root,
    startedAt: s.startedAt,
  };
}

async function startVm(inputs: Props): Promise<Props> {
  const stateDir = String(inputs.stateDir);
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  chmodSync(stateDir, 0o700);
  const agentFile = path.join(stateDir, "agent.json");
  writeFileSync(agentFile, String(inputs.agentConfig), { mode: 0o600 });
  rmSync(path.join(stateDir, "status.json"), { force: true });
  const args = [
    CLI,
    "simulate",
    "vm",
    "--name",
    String(inputs.name),
    "--platform",
    String(inputs.platformDir),
    "--firmware",
    String(inputs.firmware),
    ...(inputs.kernel ? ["--kernel", String(inputs.kernel)] : []),
    ...(inputs.initrd ? ["--initrd", String(inputs.initrd)] : []),
    ...(inputs.append !== undefined ? ["--append", String(inputs.append)] : []),
    "--vcpus",
    String(inputs.vcpus),
    "--vcpu-type",
    String(inputs.vcpuType),
    "--agent-config",
    agentFile,
    "--root",
    path.join(stateDir, "root"),
    "--state-dir",
    stateDir,
  ];
  const log = openSync(path.join(stateDir, "vm.log"), "a", 0o600);
  // detached: its own session, so the VM outlives `pulumi up` (the provider process).
  const child = spawn(process.execPath, args, { detached: true, stdio: ["ignore", log, log], cwd: stateDir });
  closeSync(log);
  let exited: number | null | undefined;
  child.on("exit", (code) => (exited = code));
  child.unref();
  const deadline = Date.now() + 120_000;
  for (;;) {
    const s = readStatus(stateDir);
    if (s?.state === "running") return vmOutputs(inputs, s);
    if (s?.state === "failed" || exited !== undefined) {
      throw new Error(
        `local VM ${String(inputs.name)} did not boot: ${s?.error ?? `exited with ${exited}`}\n${logTail(stateDir)}`,
      );
    }
    if (Date.now() > deadline) {
      stopVm(stateDir, child.pid);
      throw new Error(`local VM ${String(inputs.name)}: no status within 120 s\n${logTail(stateDir)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

function stopVm(stateDir: string, pid?: unknown): void {
  for (const p of new Set([pid, vmPid(stateDir)])) {
    if (!vmAlive(p, stateDir)) continue;
    process.kill(p as number, "SIGTERM");
    const until = Date.now() + 5000;
    while (vmAlive(p, stateDir) && Date.now() < until) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    if (vmAlive(p, stateDir)) process.kill(p as number, "SIGKILL");
  }
}

// ---------------------------------------------------------------------------------------------
// Runtime write: POST a body to a path at create/update; optional DELETE at delete.

function checkWrite(news: Props): { inputs: Props; failures: CheckFailure[] } {
  const failures: CheckFailure[] = [];
  if (
    !isUnknown(news.path) &&
    (typeof news.path !== "string" || !/^[A-Za-z0-9][A-Za-z0-9._\-/]*$/.test(news.path) || news.path.includes(".."))
  ) {
    failures.push({ property: "path", reason: "path must be an API path under /v1/ without '..'" });
  }
  if (news.method !== undefined && !["POST", "PUT"].includes(String(news.method)))
    failures.push({ property: "method", reason: "method must be POST or PUT" });
  return { inputs: { method: "POST", ...news }, failures };
}

async function write(inputs: Props): Promise<Props> {
  await runtimeRequest(
    inputs.connection as RuntimeConnection,
    String(inputs.method) as "POST" | "PUT",
    String(inputs.path),
    inputs.body ?? {},
  );
  return inputs;
}

// ---------------------------------------------------------------------------------------------
// Dispatch (provider/local-vm.ts forwards here)

export function check(kind: string, news: Props): { inputs: Props; failures: CheckFailure[] } {
  if (kind === "platform") return checkPlatform(news);
  if (kind === "vm") return checkVm(news);
  if (kind === "write") return checkWrite(news);
  const bytes = news.bytes ?? 24;
  return {
    inputs: { bytes, ...news },
    failures:
      Number.isInteger(bytes) && (bytes as number) >= 16 && (bytes as number) <= 256
        ? []
        : [{ property: "bytes", reason: "bytes must be an integer 16..256" }],
  };
}

export async function diff(
  kind: string,
  olds: Props,
  news: Props,
): Promise<{ changes: boolean; replaces: string[]; deleteBeforeReplace: boolean }> {
  if (kind === "platform") {
    const replaces = ["dir", "product"].filter((k) => !same(olds[k], news[k]));
    const gone = !existsSync(path.join(String(olds.dir), PLATFORM_FILE));
    return { changes: replaces.length > 0 || gone, replaces: gone ? ["dir"] : replaces, deleteBeforeReplace: true };
  }
  if (kind === "vm") {
    // Different boot inputs are a different VM: replace (stop the old one first, same directory).
    const replaces = VM_BOOT_KEYS.filter((k) => !same(olds[k], news[k]));
    // A VM that is not running any more (host reboot, killed) is booted again by the next `up`.
    const down = replaces.length === 0 && !vmAlive(olds.pid, String(olds.stateDir));
    return { changes: replaces.length > 0 || down, replaces, deleteBeforeReplace: true };
  }
  if (kind === "write") {
    const replaces = ["path", "method"].filter((k) => !same(olds[k], news[k]));
    const changes = replaces.length > 0 || !same(olds.body, news.body) || !same(olds.connection, news.connection);
    return { changes, replaces, deleteBeforeReplace: false };
  }
  return {
    changes: !same(olds.bytes, news.bytes),
    replaces: same(olds.bytes, news.bytes) ? [] : ["bytes"],
    deleteBeforeReplace: false,
  };
}

export async function create(kind: string, inputs: Props): Promise<{ id: string; outs: Props }> {
  if (kind === "platform") return createPlatform(inputs);
  if (kind === "vm") return { id: String(inputs.stateDir), outs: await startVm(inputs) };
  if (kind === "write") return { id: String(inputs.path), outs: await write(inputs) };
  return {
    id: randomBytes(8).toString("hex"),
    outs: { ...inputs, value: randomBytes(Number(inputs.bytes)).toString("base64url") },
  };
}

export async function update(kind: string, _id: string, olds: Props, news: Props): Promise<{ outs: Props }> {
  if (kind === "platform") return { outs: (await createPlatform(news)).outs };
  if (kind === "vm") {
    stopVm(String(olds.stateDir), olds.pid);
    return { outs: await startVm(news) };
  }
  if (kind === "write") return { outs: await write(news) };
  return { outs: { ...olds, ...news } };
}

export async function read(kind: string, id: string, props: Props): Promise<{ id: string; props: Props }> {
  if (kind === "vm") {
    const s = readStatus(String(props.stateDir));
    const running = vmAlive(props.pid, String(props.stateDir));
    return { id, props: s && running ? { ...vmOutputs(props, s), pid: props.pid } : { ...props, running } };
  }
  return { id, props };
}

export async function remove(kind: string, _id: string, props: Props): Promise<void> {
  if (kind === "platform") rmSync(String(props.dir), { recursive: true, force: true });
  else if (kind === "vm") {
    stopVm(String(props.stateDir), props.pid);
    rmSync(String(props.stateDir), { recursive: true, force: true });
    try {
      rmdirSync(path.dirname(String(props.stateDir))); // the VMs' common directory, once empty
    } catch {
      // not empty (other VMs) or already gone
    }
  } else if (kind === "write" && typeof props.deletePath === "string") {
    await runtimeRequest(props.connection as RuntimeConnection, "DELETE", props.deletePath);
  }
}
