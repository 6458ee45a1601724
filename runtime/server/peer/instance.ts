// A replica set whose launch names its runtime instance (`peer_unseal { launch_binds_instance_id = true }`): the
// set's replicas are launched with HOST_DATA (SEV-SNP) / MRCONFIGID (TDX) = replicaSetLaunchBinding(instance id),
// chosen after the first replica's sys/init made the id. A sealed replica cannot know the id (it is behind the
// barrier it wants to open), but its own report carries that field — measured, set at launch — so it can tell
// whether an id is the one its launch names. Without it, a twin (the public image on the set's public HOST_DATA,
// on a blank disk the host initialised) passed every peer check, and its keyring swapped into the replica's
// storage would have been unsealed into (docs/security.md, docs/trust-bootstrap.md "Peer unseal").
// Used three times, each failing as peer.instance-id:
//   - the requester refuses a peer whose attested TLS binds another id (step 1: the id its verified REPORT_DATA binds);
//   - the requester refuses to unseal into a reassembled keyring whose instance secret gives another id;
//   - an unsealed replica releases nothing (challenge and share) while its own id is not the one its launch names
//     (the twin itself, or the first replica's bootstrap launch before it is relaunched into the set).
import { timingSafeEqual } from "node:crypto";
import { replicaSetLaunchBinding } from "../../attestation/binding.js";
import type { Check } from "../../attestation/types.js";
import type { ReplicaReference } from "./reference.js";

/** peer.instance-id: does `instanceId` (hex or bytes) hash to this replica's own HOST_DATA / MRCONFIGID? */
export function launchNamesInstance(
  ref: ReplicaReference,
  instanceId: Uint8Array | string | undefined,
  whose: string,
): Check {
  const id = "peer.instance-id";
  const field = ref.launchField.name;
  const bytes = typeof instanceId === "string" ? Buffer.from(instanceId, "hex") : instanceId;
  if (!bytes || bytes.length !== 32)
    return {
      id,
      ok: false,
      detail: `${whose} runtime binds no instance id (sealed or uninitialised), and this launch's ${field} names one`,
    };
  const want = Buffer.from(ref.launchField.hex, "hex");
  const got = replicaSetLaunchBinding(bytes, ref.platform);
  const short = Buffer.from(bytes).toString("hex").slice(0, 16);
  return got.length === want.length && timingSafeEqual(got, want)
    ? { id, ok: true, detail: `${whose} instance ${short}… is the one this launch's ${field} names` }
    : {
        id,
        ok: false,
        detail: `${whose} instance ${short}… is not the one this launch's ${field} names (a twin initialised on the set's launch, or a launch that names another instance)`,
      };
}

/** The requester's keyring check (Core.unsealWithKey's acceptor): a reason to refuse, or undefined. */
export function keyringAcceptor(ref: ReplicaReference): (instanceId: Buffer | undefined) => string | undefined {
  return (instanceId) => {
    const c = launchNamesInstance(ref, instanceId, "the reassembled keyring's");
    return c.ok ? undefined : `${c.id}: ${c.detail}`;
  };
}
