// What the AttestedRuntime resource does (provider/attested-runtime.ts): the vHSM runtime in a confidential VM
// on SEV-SNP hardware, launched by the QEMU-host or Proxmox component. create waits until the runtime's
// listener accepts TLS (only connection errors are retried: a refused verification never is), verifies it over
// attested TLS and bootstraps it (provider/attested-init.ts). A refusal fails `pulumi up` naming the failed
// check; nothing but the evidence request was sent, and nothing was written here. update verifies again (a
// restarted VM of the same launch on the same chip unseals itself with its derived key; otherwise the recovery
// shares the recovery key on this machine opens unseal it). delete removes the deployer/recovery key files made
// for it (the VM and its data disk are the platform component's) — on the clouds, whose data volume outlives the
// instance, the recovery key and its share are kept aside instead (removeBootstrapKeyFiles). read (refresh) retires
// shares a rekey replaced (recovery-freshness.ts). State holds no secret (unless the insecure opt-out is set).
import { isUnknown, same, type CheckFailure, type Props } from "./handler-support.js";
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
import { RuntimeAttestationError, openTls } from "../runtime/client/attested-tls.js";
import type { RuntimeAttestation } from "../runtime/client/connection.js";

/** Inputs whose change is another runtime (a new launch, a new bootstrap). */
const REPLACE_KEYS = ["url", "attestation", "launch", ...BOOTSTRAP_REPLACE_KEYS];

export function check(_kind: string, news: Props): { inputs: Props; failures: CheckFailure[] } {
  const inputs: Props = { timeoutSeconds: 900, keyShares: 1, keyThreshold: 1, ...news };
  const failures: CheckFailure[] = [];
  const need = (k: string, ok: boolean, what: string) => ok || failures.push({ property: k, reason: `${k} ${what}` });
  if (!isUnknown(inputs.url)) {
    let ok: boolean;
    try {
      const u = new URL(String(inputs.url));
      ok = u.protocol === "https:" && u.pathname === "/" && !u.search && !!u.port;
    } catch {
      ok = false;
    }
    need("url", ok, "must be https://<host>:<port> (attested TLS)");
  }
  checkExpectedMeasurement(inputs, need);
  if (!isUnknown(inputs.attestation)) {
    const a = inputs.attestation as RuntimeAttestation | undefined;
    need(
      "attestation",
      !!a && (typeof a.snpHostData === "string" || a.allowAnyInstance === true),
      "must pin the instance (snpHostData) or say allowAnyInstance",
    );
  }
  if (!isUnknown(inputs.launch))
    need("launch", typeof inputs.launch === "string" && inputs.launch !== "", "is required");
  const t0 = inputs.timeoutSeconds as number;
  need("timeoutSeconds", Number.isInteger(t0) && t0 >= 10, "must be an integer >= 10");
  checkKeyShares(inputs, need);
  return { inputs, failures };
}

/**
 * Waits until something accepts TLS at `url` (the VM boots, the runtime starts): connection errors only. No
 * judgement here — the certificate carries no trust; the verification that follows decides.
 */
export async function waitForListener(url: string, timeoutSeconds: number, pollMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  let last: string;
  for (;;) {
    try {
      const { socket } = await openTls(url, 10_000);
      socket.destroy();
      return;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() >= deadline)
      throw new Error(
        `the vHSM runtime at ${url} did not accept TLS within ${timeoutSeconds} s (last: ${last}); is the VM running and the address reachable from here?`,
      );
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

function refusal(e: unknown, inputs: Props): Error {
  if (!(e instanceof RuntimeAttestationError)) return e as Error;
  const a = inputs.attestation as RuntimeAttestation;
  return new Error(
    `vHSM runtime at ${String(inputs.url)} refused before anything was sent to it (attested TLS): ${e.reason}. ` +
      `Expected measurement ${(a.snpMeasurements?.[0] ?? "?").slice(0, 16)}… (computed from the image manifest and the ` +
      `SNP launch parameters)${a.snpHostData ? `, HOST_DATA ${a.snpHostData.slice(0, 16)}…` : ""}. The VM was left as ` +
      `it is for inspection; \`pulumi destroy\` removes it.`,
  );
}

export async function create(_kind: string, inputs: Props): Promise<{ id: string; outs: Props }> {
  try {
    await waitForListener(String(inputs.url), Number(inputs.timeoutSeconds));
    const r = await initAttestedRuntime(initInputs(inputs));
    return { id: `${String(inputs.url)}#${String(inputs.launch).slice(0, 16)}`, outs: defined({ ...inputs, ...r }) };
  } catch (e) {
    throw refusal(e, inputs);
  }
}

export async function diff(
  _kind: string,
  olds: Props,
  news: Props,
): Promise<{ changes: boolean; replaces: string[]; deleteBeforeReplace: boolean }> {
  const replaces = REPLACE_KEYS.filter((k) => !same(olds[k], news[k]));
  const other = ["deployerKeyRotation", "timeoutSeconds"].some((k) => !same(olds[k], news[k]));
  return { changes: replaces.length > 0 || other, replaces, deleteBeforeReplace: true };
}

export async function update(_kind: string, _id: string, olds: Props, news: Props): Promise<{ outs: Props }> {
  const kept = keptFromBootstrap(olds);
  let summary;
  try {
    await waitForListener(String(news.url), Number(news.timeoutSeconds));
    summary = await reattestRuntime(initInputs({ ...news, ...kept }));
  } catch (e) {
    throw refusal(e, news);
  }
  const { autoUnsealed, unsealKeyCheck, ...attested } = summary;
  void autoUnsealed;
  await rotateDeployerKeyIfAsked(olds, news, kept);
  return { outs: defined(retireIfRekeyed({ ...news, ...attested, ...kept }, unsealKeyCheck)) };
}

/** Refresh (`pulumi refresh`): the recovery shares in state retired if the runtime was rekeyed since. */
export async function read(_kind: string, id: string, props: Props): Promise<{ id: string; props: Props }> {
  return { id, props: await refreshRecoveryShares(props) };
}

export async function remove(_kind: string, _id: string, props: Props): Promise<void> {
  // The runtime and its data go with the VM: so does what unlocked them.
  removeBootstrapKeyFiles(props);
}
