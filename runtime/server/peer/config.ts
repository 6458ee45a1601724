// The `peer_unseal` stanza: the other replicas a sealed replica asks for their shares (docs/trust-bootstrap.md
// "Peer unseal").
//   peer_unseal {
//     peers          = ["https://10.0.0.2:8200", "https://10.0.0.3:8200"]   # the other replicas
//     retry_interval = "30s"                                                # while sealed, ask again this often
//     kds            = "off"     # VCEK chain: the evidence's own certificate table ("off"), or AMD KDS ("online"/"offline")
//     launch_binds_instance_id = true   # the set's HOST_DATA / MRCONFIGID = replicaSetLaunchBinding(instance id)
//   }
// launch_binds_instance_id (default false) is part of the measured config: it makes this replica refuse a peer, and
// a reassembled keyring, of another instance than its launch names, and release nothing while its own instance is
// not the one its launch names (instance.ts).
// The threshold is not here: it is fixed at init (sys/init peer_threshold) and travels inside the sealed shares.
// The reference values are not here either: a replica's peers must run exactly what it runs (reference.ts).
import type { HclBody, HclValue } from "../vault/hcl.js";
import { parseDuration } from "../vault/duration.js";
import { LogicalError } from "../vault/backend.js";

export interface PeerUnsealStanza {
  peers: string[];
  /** Seconds between attempts while sealed. */
  retryInterval: number;
  kds: "online" | "offline" | "off";
  /** The launch's HOST_DATA / MRCONFIGID names the set's instance id (instance.ts). */
  launchBindsInstanceId: boolean;
}

const ALLOWED = ["peers", "retry_interval", "kds", "launch_binds_instance_id"];

/** Parses `peer_unseal { … }` (HCL block) or `"peer_unseal": {…}` (JSON); `bad` makes the caller's error type. */
export function parsePeerUnseal(body: HclBody, bad: (msg: string) => Error): PeerUnsealStanza | undefined {
  const blocks = body.blocks.filter((b) => b.type === "peer_unseal");
  const attr = body.attrs.peer_unseal;
  if (blocks.length + (attr === undefined ? 0 : 1) > 1) throw bad("peer_unseal: at most one peer_unseal block");
  let attrs: Record<string, HclValue>;
  if (blocks.length) {
    if (blocks[0].labels.length) throw bad("peer_unseal: the block takes no label");
    attrs = blocks[0].body.attrs;
  } else if (attr !== undefined) {
    if (typeof attr !== "object" || Array.isArray(attr)) throw bad("peer_unseal: must be an object");
    attrs = attr;
  } else return undefined;
  for (const k of Object.keys(attrs))
    if (!ALLOWED.includes(k)) throw bad(`peer_unseal: unknown setting '${k}' (${ALLOWED.join(", ")})`);
  const peers = attrs.peers;
  if (!Array.isArray(peers) || peers.length === 0 || peers.some((p) => typeof p !== "string"))
    throw bad("peer_unseal.peers: must be a non-empty list of https:// URLs");
  for (const [i, p] of (peers as string[]).entries()) {
    let u: URL | undefined;
    try {
      u = new URL(p);
    } catch {
      /* below */
    }
    if (!u || u.protocol !== "https:") throw bad(`peer_unseal.peers[${i}]: must be an https:// URL, got '${p}'`);
  }
  let retryInterval: number;
  try {
    retryInterval = parseDuration("peer_unseal.retry_interval", attrs.retry_interval, 30);
  } catch (e) {
    throw bad(e instanceof LogicalError ? e.message : String(e));
  }
  if (retryInterval < 1) throw bad("peer_unseal.retry_interval: must be at least 1s");
  const kds = attrs.kds ?? "off";
  if (kds !== "online" && kds !== "offline" && kds !== "off")
    throw bad(`peer_unseal.kds: must be online, offline or off, got '${String(kds)}'`);
  const bind = attrs.launch_binds_instance_id ?? false;
  if (typeof bind !== "boolean")
    throw bad(`peer_unseal.launch_binds_instance_id: must be true or false, got '${String(bind)}'`);
  return { peers: peers as string[], retryInterval, kds, launchBindsInstanceId: bind };
}
