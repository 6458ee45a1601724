// What the handlers of the two runtimes that prove what they run — the local stack's runtime guest (VhsmGuest,
// provider/vhsm-guest-handlers.ts) and a runtime on SEV-SNP hardware (AttestedRuntime,
// provider/attested-runtime-handlers.ts) — do alike around their bootstrap (provider/attested-init.ts): which
// inputs are another bootstrap, the checks of the expectation and the key shares, what an update keeps and
// re-keys, and which key files go with the runtime. Pulumi-free, like every handler module.
import { existsSync, renameSync, rmSync } from "node:fs";
import { isUnknown, type Props } from "./handler-support.js";
import { readUnsealKeyCheck, type AttestedInitInputs } from "./attested-init.js";
import { retireIfRekeyed } from "./recovery-freshness.js";
import { rotateDeployerKey } from "./bootstrap.js";
import { writePrivateFile, type DeployerAuth } from "../runtime/client/deployer.js";
import type { RuntimeAttestation } from "../runtime/client/connection.js";

type Need = (k: string, ok: boolean, what: string) => unknown;

/** Inputs whose change is another bootstrap (replace): the key shares, who holds them, the root writes, the opt-out. */
export const BOOTSTRAP_REPLACE_KEYS = [
  "keyShares",
  "keyThreshold",
  "recoveryKeys",
  "rootWrites",
  "insecureKeepRootTokenInState",
] as const;

/** The expectation names the measurement to verify: no trust on first use. */
export function checkExpectedMeasurement(inputs: Props, need: Need): void {
  if (isUnknown(inputs.attestation)) return;
  const a = inputs.attestation as RuntimeAttestation | undefined;
  need(
    "attestation",
    !!a && Array.isArray(a.snpMeasurements) && a.snpMeasurements.length > 0,
    "must name the expected measurement (snpMeasurements): no trust on first use",
  );
}

/** keyShares 1..255 and keyThreshold 1..keyShares (as Vault's sys/init). */
export function checkKeyShares(inputs: Props, need: Need): void {
  const n = inputs.keyShares as number;
  const t = inputs.keyThreshold as number;
  need("keyShares", Number.isInteger(n) && n >= 1 && n <= 255, "must be an integer 1..255");
  need("keyThreshold", Number.isInteger(t) && t >= 1 && t <= n, "must be an integer 1..keyShares");
}

export function initInputs(p: Props): AttestedInitInputs & { recoveryShares?: string[]; unsealKeys?: string[] } {
  return p as unknown as AttestedInitInputs & { recoveryShares?: string[]; unsealKeys?: string[] };
}

/** What an update keeps from the bootstrap: where the credential is, the workload audience read then, the
 *  encrypted shares (the opt-out's keys), the runtime's instance id. */
export function keptFromBootstrap(olds: Props): Props {
  return {
    deployer: olds.deployer,
    workloadAudience: olds.workloadAudience,
    recoveryShares: olds.recoveryShares,
    rootToken: olds.rootToken,
    unsealKeys: olds.unsealKeys,
    // Which key the shares belong to, and those a rekey retired (recovery-freshness.ts).
    unsealKeyCheck: olds.unsealKeyCheck,
    retiredRecoveryShares: olds.retiredRecoveryShares,
    // The instance learnt at bootstrap: required by every later verification (a twin is refused). State from
    // before instance ids has none: the update learns it (and must not overwrite it with undefined).
    ...(typeof olds.runtimeInstanceId === "string" ? { runtimeInstanceId: olds.runtimeInstanceId } : {}),
  };
}

/**
 * Refresh: the runtime verified as the instance bootstrapped (runtimeInstanceId required), then asked which unseal key
 * is in force; shares of another key are retired (recovery-freshness.ts). A runtime that cannot be reached, is
 * refused or is sealed teaches nothing: the props stay as they are (the next `up` verifies and says why).
 */
export async function refreshRecoveryShares(props: Props): Promise<Props> {
  if (typeof props.unsealKeyCheck !== "string" || typeof props.url !== "string") return props;
  const a = props.attestation as RuntimeAttestation | undefined;
  if (!a || typeof props.runtimeInstanceId !== "string") return props;
  let current: string | undefined;
  try {
    current = await readUnsealKeyCheck({
      ...initInputs(props),
      attestation: { ...a, runtimeInstanceId: props.runtimeInstanceId },
      timeoutMs: 30_000,
    });
  } catch {
    return props;
  }
  return retireIfRekeyed(props, current);
}

/** After the runtime was verified again: a changed deployerKeyRotation rotates the deployer key (pinned TLS). */
export async function rotateDeployerKeyIfAsked(olds: Props, news: Props, kept: Props): Promise<void> {
  if (kept.deployer && (olds.deployerKeyRotation ?? "") !== (news.deployerKeyRotation ?? ""))
    await rotateDeployerKey({
      url: String(news.url),
      deployer: kept.deployer as DeployerAuth,
      attestation: {
        ...(news.attestation as RuntimeAttestation),
        ...(typeof kept.runtimeInstanceId === "string" ? { runtimeInstanceId: kept.runtimeInstanceId } : {}),
      },
    });
}

/**
 * Launches whose data volume is a resource of its own (AWS EBS, a GCE disk): it follows the zone, not the instance,
 * so it outlives this resource when the instance is replaced — and a new instance attaches it, sealed.
 */
const SEPARATE_DATA_VOLUME = /^(aws|gcp):/;

/**
 * The runtime is gone: so is what unlocked it (the key files made for it, not the deployer's own). Except where its
 * data volume can outlive it (the clouds: a replaced instance attaches the old volume, and Pulumi deletes this
 * resource before creating the next): there the local recovery key and the share it opens are kept as
 * `<key file without .jwk>.retired-<instance>.jwk` / `.share.jwe` (0600) — deleting them would leave that data
 * sealed for good, since the JWE also leaves the state with this resource. `buckypaper runtime unseal --share
 * <.share.jwe> --recovery-key <.jwk>` opens it (docs/trust-bootstrap.md, "A replaced instance").
 */
export function removeBootstrapKeyFiles(props: Props): void {
  if (typeof props.deployerKeyFile === "string" && !props.deployerPublicKey)
    rmSync(props.deployerKeyFile, { force: true });
  const file = props.localRecoveryKeyFile;
  if (typeof file !== "string") return;
  const shares = Array.isArray(props.recoveryShares) ? (props.recoveryShares as string[]) : [];
  if (SEPARATE_DATA_VOLUME.test(String(props.launch ?? "")) && shares.length === 1 && existsSync(file)) {
    const tag = typeof props.runtimeInstanceId === "string" ? props.runtimeInstanceId.slice(0, 16) : "unknown";
    const base = `${file.replace(/\.jwk$/, "")}.retired-${tag}`;
    writePrivateFile(`${base}.share.jwe`, `${shares[0]}\n`);
    renameSync(file, `${base}.jwk`);
    return;
  }
  rmSync(file, { force: true });
}
