// The instance identity of a vHSM runtime guest and the SEV-SNP HOST_DATA derived from it. The measurement
// names the image; every copy of the runtime image on the same platform reports it. HOST_DATA is the 32 bytes
// the host hands the PSP at launch (QEMU sev-snp-guest host-data=) and the PSP copies into every report of
// that guest, so the deployer launches its runtime with HOST_DATA = SHA-256 of an identity it chose once for
// this resource, and every verifier (the deployer, the providers, the workload guests' enclaivelets) requires
// exactly that value (policy.host-data): a copy of the image launched as another instance, or without
// HOST_DATA, is refused before anything is sent to it.
// Neither part is a secret (the id is kept in Pulumi state, HOST_DATA is in every report and in the guests'
// user-data): HOST_DATA tells instances apart, it does not authenticate one. Whoever launches guests (the host)
// can launch another copy of the image with the same HOST_DATA; docs/trust-bootstrap.md says what that can and
// cannot reach. Pulumi-free: the VhsmGuest handlers use it in the dynamic-provider process.
import { createHash, randomBytes } from "node:crypto";

/** Domain separation: this hash means "the instance identity of a vHSM runtime guest", version 1. */
export const VHSM_INSTANCE_DOMAIN = "buckypaper-vhsm-instance-v1";

/** A fresh instance id: 16 random bytes, hex. Made once when the runtime guest resource is created. */
export function newInstanceId(): string {
  return randomBytes(16).toString("hex");
}

/**
 * HOST_DATA (64 hex digits) for the instance `instanceId` of the runtime named `instanceName`
 * ("<project>/<stack>/<resource name>"): SHA-256(domain ‖ 0 ‖ name ‖ 0 ‖ id).
 */
export function instanceHostData(instanceName: string, instanceId: string): string {
  if (!/^[0-9a-f]{32}$/.test(instanceId)) throw new RangeError("instanceId: must be 32 lowercase hex digits");
  if (!instanceName || instanceName.includes("\0")) throw new RangeError("instanceName: must be a non-empty name");
  return createHash("sha256").update(`${VHSM_INSTANCE_DOMAIN}\0${instanceName}\0${instanceId}`).digest("hex");
}
