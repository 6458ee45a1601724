// What the VhsmGuest resource does (provider/vhsm-guest.ts): the vHSM runtime in its own real QEMU guest of
// the local stack. create boots the guest under the same detached supervisor as the workload guests
// (`buckypaper simulate qemu-guest`: the guest outlives `pulumi up`; the simulated PSP measures the files QEMU
// starts with), waits for the runtime's listener, then verifies it over attested TLS against the measurement
// the component computed from the same argv and bootstraps it (provider/attested-init.ts). A refusal stops
// the guest, removes its files and fails `pulumi up` with the failed check: nothing was sent to it.
// A guest that is not running any more (host reboot) is booted again by the next `up`, verified again and,
// being the same launch on the same chip, unseals itself. delete stops it and removes its disks and the
// deployer/recovery key files made for it. State holds no secret (unless the insecure opt-out is set).
// Instance binding: create makes the instance id once (state, not a secret) and launches the guest with
// HOST_DATA = SHA-256 of it and the runtime's name (provider/vhsm-instance.ts); every verification of this
// runtime — here, and by the clients that get `attestation` with `snpHostData` — requires exactly that HOST_DATA.
import { rmSync } from "node:fs";
import path from "node:path";
import { readGuestStatus } from "../runtime/sim/qemu/supervise.js";
import {
  checkGuestNameAndPaths,
  guestAlive,
  guestDiff,
  read as readGuest,
  startGuest,
  stopGuest,
} from "./qemu-guest-handlers.js";
import { isUnknown, type CheckFailure, type Props } from "./handler-support.js";
import { initAttestedRuntime, reattestRuntime } from "./attested-init.js";
import {
  BOOTSTRAP_REPLACE_KEYS,
  checkExpectedMeasurement,
  checkKeyShares,
  initInputs,
  keptFromBootstrap,
  refreshRecoveryShares,
  removeBootstrapKeyFiles,
  rotateDeployerKeyIfAsked,
} from "./attested-bootstrap-handlers.js";
import { defined } from "./service.js";
import { retireIfRekeyed } from "./recovery-freshness.js";
import { instanceHostData, newInstanceId } from "./vhsm-instance.js";
import { RuntimeAttestationError } from "../runtime/client/attested-tls.js";
import type { RuntimeAttestation } from "../runtime/client/connection.js";

/** Inputs whose change is another runtime (replace: a new guest, a new data disk, a new bootstrap). */
const REPLACE_KEYS = [
  "name",
  "instanceName",
  "platformDir",
  "stateDir",
  "argv",
  "baseImage",
  "dataDiskGb",
  "bootInputsSha256",
  "url",
  "attestation",
  ...BOOTSTRAP_REPLACE_KEYS,
];

export function check(_kind: string, news: Props): { inputs: Props; failures: CheckFailure[] } {
  const inputs: Props = {
    timeoutSeconds: 1500,
    keyShares: 1,
    keyThreshold: 1,
    userData: "#cloud-config\n{}\n",
    ...news,
  };
  const failures: CheckFailure[] = [];
  const need = (k: string, ok: boolean, what: string) => ok || failures.push({ property: k, reason: `${k} ${what}` });
  checkGuestNameAndPaths(inputs, need);
  if (!isUnknown(inputs.url))
    need(
      "url",
      typeof inputs.url === "string" && /^https:\/\/127\.0\.0\.1:\d+$/.test(inputs.url),
      "must be https://127.0.0.1:<port>",
    );
  if (!isUnknown(inputs.instanceName))
    need(
      "instanceName",
      typeof inputs.instanceName === "string" && /^[A-Za-z0-9._/-]{1,200}$/.test(inputs.instanceName),
      "must be <project>/<stack>/<name> (letters, digits, '.', '_', '-', '/')",
    );
  checkExpectedMeasurement(inputs, need);
  // This resource chooses its instance's HOST_DATA and requires it; an expectation may not loosen or replace it.
  const a = inputs.attestation as RuntimeAttestation | undefined;
  if (!isUnknown(a) && a && (a.snpHostData !== undefined || a.allowAnyInstance !== undefined))
    need(
      "attestation",
      false,
      "must not carry snpHostData or allowAnyInstance: the runtime guest's HOST_DATA is this resource's instance identity",
    );
  if (inputs.readyPattern != null && !isUnknown(inputs.readyPattern))
    need("readyPattern", typeof inputs.readyPattern === "string", "must be a string");
  checkKeyShares(inputs, need);
  return { inputs, failures };
}

function guestOutputs(stateDir: string): Props {
  const s = readGuestStatus(stateDir);
  return {
    pid: s?.pid ?? 0,
    qemuPid: s?.qemuPid ?? 0,
    accel: s?.accel ?? "",
    launchMeasurement: s?.measurement ?? "",
    kernelMeasured: s?.kernelMeasured ?? false,
    bootSeconds: s?.bootSeconds ?? 0,
    consoleLog: path.join(stateDir, "console.log"),
    running: true,
  };
}

/** Boots the guest with HOST_DATA and waits for its listener; the supervisor's verdict is readiness only (no trust). */
async function boot(inputs: Props, snpHostData: string): Promise<void> {
  await startGuest({ ...inputs, snpHostData, readyPattern: inputs.readyPattern ?? "bk-runtime: listening on" });
}

/** What every verification of this runtime requires: the expected measurement AND this instance's HOST_DATA. */
export function instanceExpectation(attestation: RuntimeAttestation, snpHostData: string): RuntimeAttestation {
  return { ...attestation, snpHostData };
}

function refusal(e: unknown, inputs: Props, stateDir: string): Error {
  if (!(e instanceof RuntimeAttestationError)) return e as Error;
  const measured = readGuestStatus(stateDir)?.measurement ?? "?";
  const a = inputs.attestation as RuntimeAttestation;
  const expected = a.snpMeasurements?.[0] ?? "?";
  return new Error(
    `vHSM guest ${String(inputs.name)} refused before anything was sent to it (attested TLS): ${e.reason}. ` +
      `Expected measurement ${expected.slice(0, 16)}… (computed from the boot inputs) and HOST_DATA ` +
      `${(a.snpHostData ?? "?").slice(0, 16)}… (this instance), the simulated PSP measured ` +
      `${measured.slice(0, 16)}… from the files QEMU was started with. The guest was stopped.`,
  );
}

export async function create(_kind: string, inputs: Props): Promise<{ id: string; outs: Props }> {
  const stateDir = String(inputs.stateDir);
  // Once per resource: a replacement is another instance with another identity.
  const instanceId = newInstanceId();
  const snpHostData = instanceHostData(String(inputs.instanceName), instanceId);
  const attestation = instanceExpectation(inputs.attestation as RuntimeAttestation, snpHostData);
  try {
    await boot(inputs, snpHostData);
    const r = await initAttestedRuntime(initInputs({ ...inputs, attestation }));
    return {
      id: stateDir,
      outs: defined({ ...inputs, instanceId, snpHostData, ...guestOutputs(stateDir), ...r }),
    };
  } catch (e) {
    const s = readGuestStatus(stateDir);
    const err = refusal(e, { ...inputs, attestation }, stateDir);
    stopGuest(stateDir, [s?.pid, s?.qemuPid]);
    rmSync(stateDir, { recursive: true, force: true });
    throw err;
  }
}

export async function diff(
  _kind: string,
  olds: Props,
  news: Props,
): Promise<{ changes: boolean; replaces: string[]; deleteBeforeReplace: boolean }> {
  return guestDiff(olds, news, REPLACE_KEYS, ["deployerKeyRotation", "timeoutSeconds"]);
}

export async function update(_kind: string, _id: string, olds: Props, news: Props): Promise<{ outs: Props }> {
  const stateDir = String(news.stateDir);
  const kept = { ...keptFromBootstrap(olds), instanceId: olds.instanceId, snpHostData: olds.snpHostData };
  if (typeof kept.snpHostData !== "string")
    throw new Error(`vHSM guest ${String(news.name)}: no instance HOST_DATA in its state (replace the resource)`);
  const attestation = instanceExpectation(news.attestation as RuntimeAttestation, kept.snpHostData);
  if (!guestAlive(olds.pid, String(olds.stateDir))) {
    stopGuest(String(olds.stateDir), [olds.pid, olds.qemuPid]);
    await boot(news, kept.snpHostData);
  }
  let summary;
  try {
    summary = await reattestRuntime(initInputs({ ...news, ...kept, attestation }));
  } catch (e) {
    const s = readGuestStatus(stateDir);
    const err = refusal(e, { ...news, attestation }, stateDir);
    // Refused: stop it (nothing is sent to it), but keep its data disk for the operators.
    if (e instanceof RuntimeAttestationError) stopGuest(stateDir, [s?.pid, s?.qemuPid]);
    throw err;
  }
  const { autoUnsealed, unsealKeyCheck, ...attested } = summary;
  void autoUnsealed;
  await rotateDeployerKeyIfAsked(olds, { ...news, attestation }, kept);
  return {
    outs: defined(retireIfRekeyed({ ...news, ...guestOutputs(stateDir), ...attested, ...kept }, unsealKeyCheck)),
  };
}

/**
 * Refresh: the workload guests' (is the supervisor or its QEMU still running), then — when it runs — the recovery
 * shares retired if the runtime was rekeyed since (verified on the instance's HOST_DATA and id).
 */
export async function read(kind: string, id: string, props: Props): Promise<{ id: string; props: Props }> {
  const r = await readGuest(kind, id, props);
  if (!r.props.running || typeof props.snpHostData !== "string") return r;
  const attestation = instanceExpectation(props.attestation as RuntimeAttestation, props.snpHostData);
  const fresh = await refreshRecoveryShares({ ...r.props, attestation });
  return { id, props: { ...fresh, attestation: props.attestation } };
}

export async function remove(_kind: string, _id: string, props: Props): Promise<void> {
  stopGuest(String(props.stateDir), [props.pid, props.qemuPid]);
  rmSync(String(props.stateDir), { recursive: true, force: true });
  // The runtime and its data are gone: so is what unlocked them.
  removeBootstrapKeyFiles(props);
}
