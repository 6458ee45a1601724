// Peer-unseal shares: a second Shamir split of the unseal key, made at sys/init when `peer_threshold` k is
// given, kept INSIDE the barrier (so only an unsealed replica can read it). An unsealed replica releases one of
// these shares — never the key — to a sealed replica that proved, with fresh hardware evidence, that it runs
// what the replica set runs (runtime/server/peer/). The sealed one needs k shares from k distinct peers.
//
// Which share a peer releases: each MACHINE — its hardware identity from its own verified evidence (SEV-SNP CHIP_ID,
// TDX PPID; runtime/server/peer/hardware.ts), not its process, whose attested TLS key is new at every start — holds
// one slot of the table `core/peer-unseal/slots`, claimed in a storage transaction the first time it releases. So
// a replica restarted on the same chip, or another VM of the image there, releases the same share index again, and
// two machines never release the same one. The table has PEER_SHARES slots and, when full, the least recently used
// slot is taken over (a machine long gone); the requester counts one share per machine whatever the index, so a
// takeover cannot make one machine count twice either.
import { split } from "shamir-secret-sharing";
import type { Storage } from "../storage/types.js";
import { LogicalError } from "./backend.js";

/** Shares made at init: one per concurrently live replica, at most (GF(256) Shamir allows 255). */
export const PEER_SHARES = 255;
/** Inside the barrier. */
export const PEER_SHARES_KEY = "core/peer-unseal/shares";
const SHARES_KEY = PEER_SHARES_KEY;
const SLOTS_KEY = "core/peer-unseal/slots";

interface StoredShares {
  v: 1;
  threshold: number;
  /** Base64 Shamir shares, index i+1 at position i. */
  shares: string[];
}

interface Slot {
  /** The holder's hardware identity ("snp:<product>:<hwID>", "tdx:ppid:<PPID>"). */
  holder: string;
  /** Last release by this holder (ms since epoch). */
  seen: number;
}

/** One peer's share: what it seals to an attested requester. `share` is secret: zero it after use. */
export interface PeerShare {
  /** 1-based, the share's Shamir x-coordinate order among PEER_SHARES. */
  index: number;
  threshold: number;
  share: Buffer;
}

/** The `peer_threshold` of sys/init: an integer 1..PEER_SHARES. */
export function checkPeerThreshold(k: unknown): number {
  if (typeof k !== "number" || !Number.isInteger(k) || k < 1 || k > PEER_SHARES)
    throw new LogicalError(400, `peer_threshold: must be an integer between 1 and ${PEER_SHARES}`);
  return k;
}

/** The stored record of a fresh peer split of the unseal key (what `PEER_SHARES_KEY` holds inside the barrier). */
export async function peerSharesRecord(unsealKey: Buffer, threshold: number): Promise<Buffer> {
  checkPeerThreshold(threshold);
  const parts =
    threshold === 1
      ? Array.from({ length: PEER_SHARES }, () => new Uint8Array(unsealKey))
      : await split(new Uint8Array(unsealKey), PEER_SHARES, threshold);
  const stored: StoredShares = { v: 1, threshold, shares: parts.map((p) => Buffer.from(p).toString("base64")) };
  for (const p of parts) p.fill(0);
  return Buffer.from(JSON.stringify(stored));
}

/** Splits the unseal key for peers and stores the shares in the (open) barrier. */
export async function createPeerShares(barrier: Storage, unsealKey: Buffer, threshold: number): Promise<void> {
  await barrier.put(SHARES_KEY, await peerSharesRecord(unsealKey, threshold));
}

/** The threshold, or undefined when this runtime was initialised without peer unseal. */
export async function peerThreshold(barrier: Storage): Promise<number | undefined> {
  const raw = await barrier.get(SHARES_KEY);
  return raw ? (JSON.parse(raw.toString("utf8")) as StoredShares).threshold : undefined;
}

/**
 * The share of the slot `holder` (a hardware identity) holds, claiming one first; undefined when peer unseal is not
 * configured.
 * The claim is one storage transaction, so concurrent replicas on one database get distinct slots.
 */
export async function peerShareFor(barrier: Storage, holder: string, now = Date.now()): Promise<PeerShare | undefined> {
  const raw = await barrier.get(SHARES_KEY);
  if (!raw) return undefined;
  const stored = JSON.parse(raw.toString("utf8")) as StoredShares;
  const index = await barrier.transaction(async (tx) => {
    const t = await tx.get(SLOTS_KEY);
    const slots = (t ? JSON.parse(t.toString("utf8")) : {}) as Record<string, Slot>;
    let idx = Object.keys(slots).find((i) => slots[i].holder === holder);
    if (!idx) {
      const free = Array.from({ length: stored.shares.length }, (_, i) => String(i + 1)).find((i) => !slots[i]);
      idx = free ?? Object.keys(slots).sort((a, b) => slots[a].seen - slots[b].seen)[0];
    }
    slots[idx] = { holder, seen: now };
    await tx.put(SLOTS_KEY, Buffer.from(JSON.stringify(slots)));
    return Number(idx);
  });
  return { index, threshold: stored.threshold, share: Buffer.from(stored.shares[index - 1], "base64") };
}
