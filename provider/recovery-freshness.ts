// Whether the recovery shares a runtime resource keeps from init (JWEs; with the insecure opt-out the plain unseal
// keys) still belong to the runtime's unseal key. `buckypaper runtime rekey` (Vault's sys/rekey) replaces that key
// and hands the new shares to the operators, not to Pulumi: the shares in state then unseal nothing live — only a
// copy of the data taken before the rekey. The runtime reports a check value of the key in force
// (`unseal_key_check` in sys/seal-status while unsealed: an HMAC under the key, computed from the key in its memory,
// not from the host's storage); the resource records the value of the key its shares belong to, and when the runtime
// reports another one the shares move out of `recoveryShares` into `retiredRecoveryShares` with the check of their
// key — kept, not deleted (a pre-rekey backup opens only with them), but no longer presented as the way in.
// Pulumi-free, like every handler module.
import type { Props } from "./handler-support.js";

/** Shares of a key the runtime no longer uses, as the resource kept them. */
export interface RetiredShares {
  /** The check value of the key these are shares of. */
  unsealKeyCheck: string;
  recoveryShares?: string[];
  /** Only with insecureKeepRootTokenInState. */
  unsealKeys?: string[];
  /** When this resource saw the runtime report another key (ISO). */
  retiredAt: string;
  reason: string;
}

const CHECK = /^[0-9a-f]{32}$/;

/**
 * The props with the shares retired when `current` (the check value the unsealed runtime reported, over a verified
 * connection) differs from the one they were recorded with; unchanged otherwise — also when either is unknown
 * (a sealed runtime reports none; state from before the check value has none): nothing is judged without both.
 */
export function retireIfRekeyed(props: Props, current: unknown, now = new Date()): Props {
  const recorded = props.unsealKeyCheck;
  if (typeof current !== "string" || !CHECK.test(current)) return props;
  if (typeof recorded !== "string" || recorded === current) return props;
  const shares = Array.isArray(props.recoveryShares) ? (props.recoveryShares as string[]) : [];
  const keys = Array.isArray(props.unsealKeys) ? (props.unsealKeys as string[]) : [];
  const retired: RetiredShares = {
    unsealKeyCheck: recorded,
    ...(shares.length ? { recoveryShares: shares } : {}),
    ...(keys.length ? { unsealKeys: keys } : {}),
    retiredAt: now.toISOString(),
    reason:
      `the runtime's unseal key changed (check ${current.slice(0, 8)}…, these are shares of ${recorded.slice(0, 8)}…): ` +
      "it was rekeyed, and the new shares went to the operators; these open only data from before the rekey",
  };
  const { unsealKeys, ...rest } = props;
  void unsealKeys;
  return {
    ...rest,
    recoveryShares: [],
    unsealKeyCheck: current,
    retiredRecoveryShares: [
      ...(Array.isArray(props.retiredRecoveryShares) ? (props.retiredRecoveryShares as RetiredShares[]) : []),
      ...(shares.length || keys.length ? [retired] : []),
    ],
  };
}
