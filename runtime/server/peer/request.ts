// The sealed replica's side of peer unseal: ask the configured peers, one after the other, until shares from
// `threshold` distinct attested peers are in hand, then reassemble the unseal key and open the barrier.
// Per peer:
//   1. verify the PEER first (attested TLS, runtime/client/attested-tls.ts) against this replica's own reference
//      values: a replica accepts shares only from one that runs what it runs. Without this, a host that controls
//      the shared storage could swap in a keyring of its own and hand out shares of that key from any process:
//      the replica would unseal into the host's barrier and serve (and accept writes of) secrets in it.
//   2. POST sys/peer-unseal/challenge on a connection pinned to that verified key → the peer's nonce.
//   3. evidence over peerUnsealReportData(nonce, our ephemeral P-384 + ML-KEM-768 keys) from our own PSP/TDX module.
//   4. POST sys/peer-unseal/share (pinned) → a hybrid seal to our keys; opened in memory; it must answer OUR
//      nonce and name the key we verified (so one peer cannot count twice by relaying another's answer).
// A peer is a MACHINE (hardware.ts): its identity is the CHIP_ID (SEV-SNP) or PPID (TDX) of the evidence verified in
// step 1 — never anything the peer says — and at most one share counts per identity and per share index, so one
// machine restarted k times, or k VMs of the image on one chip, gives one share.
// The ephemeral keys live for one attempt, in memory. Fewer than `threshold` shares leave the runtime sealed.
import { generateKeyPairSync } from "node:crypto";
import { combine } from "shamir-secret-sharing";
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";
import { hybridBindingMaterial, peerUnsealReportData } from "../../attestation/binding.js";
import { hybridOpen } from "../../attestation/hybrid-seal.js";
import type { TrustConfig } from "../../attestation/policy.js";
import { connectPinned, requestOver, verifyRuntime } from "../../client/attested-tls.js";
import { InvalidUnsealKeyError } from "../vault/barrier.js";
import { InstanceRefusedError, type Core, type CoreLogger } from "../vault/core.js";
import type { RuntimeEvidenceSource } from "../http/attested-tls.js";
import type { ReplicaReference } from "./reference.js";
import { hardwareIdentity } from "./hardware.js";
import { keyringAcceptor, launchNamesInstance } from "./instance.js";
import type { PeerSharePayload } from "./serve.js";

export interface PeerUnsealOptions {
  core: Core;
  /** Base URLs (https://host:port) of the other replicas. */
  peers: string[];
  /** This replica's evidence source (the same as its attested TLS). */
  evidence: RuntimeEvidenceSource;
  reference: () => Promise<ReplicaReference>;
  /** Roots the peers' evidence must chain to. */
  trust: TrustConfig;
  logger?: CoreLogger;
  timeoutMs?: number;
  /**
   * `peer_unseal.launch_binds_instance_id`: a peer must bind the instance id this replica's launch names, and so
   * must the keyring the shares open (instance.ts).
   */
  launchBindsInstanceId?: boolean;
}

export interface PeerUnsealResult {
  unsealed: boolean;
  /** Distinct shares received. */
  shares: number;
  threshold?: number;
  /** Peers that released nothing, and why (the check they or we named). */
  refusals: { peer: string; reason: string }[];
  /** The shares opened a keyring of another instance than this launch names (peer.instance-id): not unsealed. */
  instanceRefused?: string;
}

class PeerRefused extends Error {}

/** "snp:Milan:0123456789abcdef…" — enough to tell machines apart in a log line. */
const shortHardware = (id: string) => id.replace(/^((?:snp:[^:]+|tdx:ppid):)(.{16}).+$/, "$1$2…");

const parseJson = (text: string): Record<string, unknown> => {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return {};
  }
};

/** One peer: verify it, get its nonce, attest to it, open its share. Throws PeerRefused naming why. */
async function askPeer(
  url: string,
  o: PeerUnsealOptions,
  ref: ReplicaReference,
  keys: { privateKey: import("node:crypto").KeyObject; jwk: object; ek: Uint8Array; dk: Uint8Array; material: Buffer },
): Promise<{ payload: PeerSharePayload; hardware: string }> {
  const v = await verifyRuntime({
    url,
    expected: { policy: ref.policy, trust: o.trust },
    ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}),
  });
  const launch = ref.extraChecks(v.verdict?.claims).find((c) => !c.ok);
  if (!v.ok || !v.spkiSha256) throw new PeerRefused(`peer not verified: ${v.reason ?? "no key"}`);
  if (launch) throw new PeerRefused(`peer not verified: ${launch.id}: ${launch.detail}`);
  if (o.launchBindsInstanceId) {
    const named = launchNamesInstance(ref, v.instanceId, "the peer's");
    if (!named.ok) throw new PeerRefused(`peer not verified: ${named.id}: ${named.detail}`);
  }
  const hw = hardwareIdentity(v.verdict?.claims, "the peer's");
  if (!hw.id) throw new PeerRefused(`peer not verified: ${hw.check.id}: ${hw.check.detail}`);
  const post = async (path: string, body: unknown) => {
    const socket = await connectPinned(url, v.spkiSha256!, o.timeoutMs);
    const r = await requestOver(socket, url, "POST", `/v1/sys/peer-unseal/${path}`, {
      headers: { "content-type": "application/json" },
      body: Buffer.from(JSON.stringify(body)),
      ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}),
    });
    const j = parseJson(r.text);
    if (r.status !== 200) {
      const errs = Array.isArray(j.errors) ? j.errors.join("; ") : "";
      throw new PeerRefused(`${path}: HTTP ${r.status}${errs ? `: ${errs}` : ""}`);
    }
    return (j.data ?? {}) as Record<string, unknown>;
  };
  const ch = await post("challenge", {});
  const nonce = typeof ch.nonce === "string" && /^[0-9a-f]{64}$/.test(ch.nonce) ? ch.nonce : undefined;
  if (!nonce) throw new PeerRefused("challenge: the answer carries no 32-byte hex nonce");
  const evidence = await o.evidence.collect(peerUnsealReportData(Buffer.from(nonce, "hex"), keys.material));
  const answer = await post("share", {
    nonce,
    evidence,
    p384_public_key: keys.jwk,
    mlkem_public_key: Buffer.from(keys.ek).toString("base64"),
  });
  if (typeof answer.sealed !== "string") throw new PeerRefused("share: the answer is not sealed");
  let p: PeerSharePayload;
  try {
    p = (await hybridOpen(answer.sealed, {
      p384PrivateKey: keys.privateKey,
      mlkemSecretKey: keys.dk,
    })) as PeerSharePayload;
  } catch (e) {
    throw new PeerRefused(`share: the sealed answer does not open with our keys (${(e as Error).name})`);
  }
  if (p?.v !== 1 || typeof p.share !== "string") throw new PeerRefused("share: unknown payload format");
  if (p.nonce !== nonce) throw new PeerRefused("share: the payload answers another challenge");
  if (p.peer_spki_sha256 !== v.spkiSha256)
    throw new PeerRefused("share: the payload names another peer than the one verified (relayed answer)");
  if (!Number.isInteger(p.index) || p.index < 1 || p.index > 255) throw new PeerRefused("share: bad index");
  if (!Number.isInteger(p.threshold) || p.threshold < 1 || p.threshold > 255)
    throw new PeerRefused("share: bad threshold");
  return { payload: p, hardware: hw.id };
}

/**
 * Asks the peers until `threshold` distinct shares are in; unseals the core with the reassembled key. Never
 * throws for a peer's refusal (the result lists them); the runtime simply stays sealed.
 */
export async function unsealFromPeers(o: PeerUnsealOptions): Promise<PeerUnsealResult> {
  const refusals: PeerUnsealResult["refusals"] = [];
  if (!o.core.sealed) return { unsealed: true, shares: 0, refusals };
  const ref = await o.reference();
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
  const { publicKey: ek, secretKey: dk } = ml_kem768.keygen();
  const keys = {
    privateKey,
    jwk: publicKey.export({ format: "jwk" }),
    ek,
    dk,
    material: hybridBindingMaterial(publicKey.export({ type: "spki", format: "der" }), ek),
  };
  const shares = new Map<number, Buffer>();
  /** Hardware identities (chip / platform) a share was counted from: one share per machine. */
  const fromHardware = new Map<string, string>();
  let threshold: number | undefined;
  try {
    for (const url of o.peers) {
      if (threshold !== undefined && shares.size >= threshold) break;
      let p: PeerSharePayload;
      let hardware: string;
      try {
        ({ payload: p, hardware } = await askPeer(url, o, ref, keys));
      } catch (e) {
        const reason = e instanceof PeerRefused ? e.message : `unreachable: ${(e as Error).message}`;
        refusals.push({ peer: url, reason });
        o.logger?.warn(`peer unseal: ${url} released nothing: ${reason}`);
        continue;
      }
      const share = Buffer.from(p.share, "base64");
      p.share = "";
      if (threshold !== undefined && p.threshold !== threshold) {
        share.fill(0);
        refusals.push({ peer: url, reason: `share: threshold ${p.threshold} differs from ${threshold}` });
        continue;
      }
      threshold = p.threshold;
      const sameMachine = fromHardware.get(hardware);
      if (sameMachine !== undefined || shares.has(p.index)) {
        share.fill(0);
        const machine =
          sameMachine === undefined
            ? ""
            : `peer.same-hardware: ${shortHardware(hardware)} already gave a share (through ${sameMachine})`;
        const reason = shares.has(p.index)
          ? `share ${p.index}: already have it (not a distinct peer)${machine ? `; ${machine}` : ""}`
          : `share ${p.index}: ${machine} (not a distinct peer)`;
        refusals.push({ peer: url, reason });
        o.logger?.warn(`peer unseal: ${url}: not counted: ${reason}`);
        continue;
      }
      shares.set(p.index, share);
      fromHardware.set(hardware, url);
      o.logger?.info(`peer unseal: share ${p.index} from ${url} (${shares.size}/${threshold})`);
    }
    if (threshold === undefined || shares.size < threshold) {
      o.logger?.warn(
        `peer unseal: ${shares.size} of ${threshold ?? "?"} shares from attested peers; staying sealed (recovery shares unseal it)`,
      );
      return { unsealed: false, shares: shares.size, ...(threshold ? { threshold } : {}), refusals };
    }
    const parts = [...shares.values()].slice(0, threshold);
    const key =
      threshold === 1 ? Buffer.from(parts[0]) : Buffer.from(await combine(parts.map((s) => new Uint8Array(s))));
    try {
      await o.core.unsealWithKey(
        key,
        `${threshold} attested peer(s)`,
        o.launchBindsInstanceId ? keyringAcceptor(ref) : undefined,
      );
    } catch (e) {
      if (e instanceof InstanceRefusedError) {
        o.logger?.warn(`peer unseal: refused to unseal: ${e.message}; staying sealed`);
        return { unsealed: false, shares: shares.size, threshold, refusals, instanceRefused: e.message };
      }
      if (!(e instanceof InvalidUnsealKeyError)) throw e;
      o.logger?.warn("peer unseal: the peers' shares do not open the keyring; staying sealed");
      return { unsealed: false, shares: shares.size, threshold, refusals };
    } finally {
      key.fill(0);
    }
    return { unsealed: true, shares: shares.size, threshold, refusals };
  } finally {
    for (const s of shares.values()) s.fill(0);
    dk.fill(0);
  }
}
