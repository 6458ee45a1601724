// The transport-free heart of the runtime, as Vault's core: seal state (Shamir init/unseal over the
// barrier), the mount table, tokens, ACLs and audit. `handle()` takes a parsed HTTP request and
// returns status + JSON body; runtime/server/ only adapts fastify to it.
import type { PathSpec, TableBackend } from "./framework.js";
import { randomBytes, timingSafeEqual } from "node:crypto";
import { combine } from "shamir-secret-sharing";
import {
  LogicalError,
  type CallerAuth,
  type LogicalBackend,
  type LogicalRequest,
  type LogicalResponse,
  type Operation,
  type SystemView,
} from "./backend.js";
import {
  AUTO_UNSEAL_KEY,
  Barrier,
  InvalidUnsealKeyError,
  StaleUnsealKeyError,
  unwrapUnsealKey,
  wrapUnsealKey,
} from "./barrier.js";
import { PermissionDeniedError, SealedError } from "./errors.js";
import { checkShareConfig, splitKey } from "./share-config.js";
import { PendingRekeyVerification } from "./rekey-verification.js";
import { Acl, parsePolicy, DEFAULT_POLICY_TEXT, type Capability, type Policy } from "./policy.js";
import { TokenStore, type TokenEntry } from "./tokens.js";
import { newMount, mountStoragePrefix, type MountEntry } from "./mounts.js";
import { BackendRegistry } from "./registry.js";
import { PrefixedStorage } from "../storage/prefixed.js";
import { StorageCorruptionError, type Storage, type StorageWriter } from "../storage/types.js";
import { AuditBroker, newRequestId, type AuditRequest } from "../audit/broker.js";
import { FileAuditDevice } from "../audit/file.js";
import { SystemBackend } from "./sys-backend.js";
import {
  checkPeerThreshold,
  createPeerShares,
  peerShareFor,
  peerSharesRecord,
  peerThreshold,
  PEER_SHARES_KEY,
  type PeerShare,
} from "./peer-shares.js";
import { TokenBackend, AUTH_BLOCK } from "./token-backend.js";
import type { ActiveMount, AuditTableEntry, CoreView, RawRequest, RawResponse, SealStatus } from "./core-view.js";
import { canonicalPath, canonicalRequest, errorResponse, type CanonicalRequest } from "./request.js";

export { errorResponse };

export type { RawRequest, RawResponse } from "./core-view.js";
// The request header asking for response sealing (see Nitride's responseSealer).
import { SEAL_HEADER } from "../../protocol/seal.js";
import { runtimeInstanceId } from "../../attestation/binding.js";

/** Behind the barrier: the 32-byte secret whose hash is the runtime's public instance id (never served). */
const INSTANCE_SECRET_KEY = "core/instance-secret";

/**
 * Judges the instance id a key would unseal into (undefined: the barrier holds no instance secret): a reason to
 * refuse, or undefined to accept. Peer unseal's check that the reassembled keyring is the set's instance.
 */
export type InstanceAcceptor = (instanceId: Buffer | undefined) => string | undefined;

/** unsealWithKey refused the instance the key opens; the runtime stays sealed. */
export class InstanceRefusedError extends Error {
  override name = "InstanceRefusedError";
}

export const RUNTIME_VERSION = "1.19.0+buckypaper.0.1.0";

export interface SealConfig {
  type: "shamir";
  secret_shares: number;
  secret_threshold: number;
  /** Shares from this many attested peers unseal a replica (peer-shares.ts); absent: no peer unseal. */
  peer_threshold?: number;
}

/** What one worker process tells the others of a multi-worker runtime (see runtime/server/cluster.ts). */
export type PeerEvent =
  | { kind: "unsealed"; key: Buffer }
  | { kind: "sealed" }
  /** sys/rekey committed a new unseal key (the keyring is under it, the seal config has the new shares). */
  | { kind: "rekeyed"; key: Buffer }
  | { kind: "initialized" }
  | { kind: "changed"; what: "mounts" | "audit" }
  | { kind: "changed"; what: "policy"; name: string };

/**
 * The other worker processes serving the same listener and storage. Unseal progress is kept once for
 * all of them (a client's key shares may land on different workers), and seal-state and
 * configuration changes are applied everywhere before the request that made them is answered, so a
 * client never sees one worker unsealed and the next one sealed.
 */
export interface CorePeers {
  /** Adds a key share to the runtime-wide progress (repeats ignored); resolves with every share so far. */
  addUnsealShare(share: Buffer): Promise<Buffer[]>;
  resetUnseal(): Promise<void>;
  /** Runtime-wide unseal progress, for seal-status. */
  readonly progress: number;
  /** Resolves once every other worker has applied the event (Core.applyPeerEvent). */
  announce(event: PeerEvent): Promise<void>;
}

/** Storage that can run work on exactly one replica at a time (PostgreSQL). */
export interface LeaderLocking {
  withLeaderLock<T>(name: string, fn: () => Promise<T>): Promise<T | undefined>;
}

export interface CoreLogger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export interface CoreOptions {
  /** Physical storage (SQLite, PostgreSQL, memory); the core puts the barrier over it. */
  physical: Storage;
  registry?: BackendRegistry;
  apiAddr?: string;
  /** Token TTLs in seconds (Vault's defaults: 768h). */
  defaultTtl?: number;
  maxTtl?: number;
  clusterName?: string;
  logger?: CoreLogger;
  /** An audit file enabled from the server config (in addition to sys/audit devices). */
  auditFile?: string;
  /** Runs inside sys/init after the barrier exists; returned fields are added to the init response. */
  onInitialize?: (barrier: Storage) => Promise<Record<string, unknown>>;
  /** Set when this core is one worker of several (runtime server with `workers` > 1). */
  peers?: CorePeers;
  /** Attested TLS: the instance the listener key has served (set only when the listener key is attested). */
  listenerInstance?: ListenerInstance;
  /**
   * Auto-unseal: at init the unseal key is also wrapped with this provider's key and kept outside the
   * barrier; start() unwraps it and unseals without operators. The Shamir shares returned by init stay
   * the recovery path (a provider that derives another key — changed image, other chip — cannot unseal).
   */
  autoUnseal?: AutoUnsealProvider;
  /** Runs after every unseal (e.g. load the runtime CA from the barrier). */
  onUnseal?: (barrier: Storage) => Promise<void>;
  /**
   * Transforms a response body carrying secrets (e.g. Nitride's response sealing to the attested
   * ephemeral key when the request asks for it). Return undefined to leave it unchanged.
   */
  responseSealer?: (ctx: {
    headers: Record<string, string>;
    auth?: CallerAuth;
    body: Record<string, unknown>;
    secretKeys: string[];
    login?: boolean;
  }) => Promise<Record<string, unknown> | undefined>;
}

const SEAL_CONFIG_KEY = "core/seal-config";

/**
 * One attested listener key serves one runtime instance for its whole life. Verifiers (provider, enclaivelet)
 * verify a key once and cache the verdict — with the instance id the evidence bound — for every later request on
 * it, so a key that went on serving after the storage under the running process was swapped or wiped and
 * re-initialised (the host's storage; an uninitialised runtime takes sys/init from anyone) would carry the
 * deployer's requests and the workloads' evidence to the host's instance under a verdict for the deployer's. The
 * core therefore refuses to initialise or open another instance once its key served one; a restart brings a new
 * key, which every verifier attests afresh.
 */
export interface ListenerInstance {
  /** The instance id this listener key has served, if any. */
  served(): Buffer | undefined;
  /** Records the first instance served (a no-op for the same one). */
  serve(id: Buffer): void;
}

/** The storage under a running process now holds another instance than the one its attested key served. */
export class InstanceChangedError extends LogicalError {
  constructor(served: Buffer, found: Buffer | "uninitialised storage") {
    super(
      409,
      `runtime instance changed under a running process: its attested TLS key served instance ${served.toString("hex")}, ` +
        `the storage now holds ${found === "uninitialised storage" ? found : `instance ${found.toString("hex")}`} ` +
        `(swapped or re-initialised); staying sealed — restart the runtime to serve it under a new key`,
    );
  }
}

/** A source of a 32-byte key that only this platform/launch can reproduce (e.g. SNP_GET_DERIVED_KEY). */
export interface AutoUnsealProvider {
  /** Seal type name as in the server config (`seal "snp-derived-key"`); bound into the wrapping. */
  type: string;
  deriveKey(): Promise<Uint8Array>;
}
const POLICY_TTL_MS = 1000;
/** Operations whose body the ACL's parameter constraints (allowed/denied/required_parameters) judge. */
const WRITES = new Set<Operation>(["create", "update", "patch"]);
/** Error texts the audit log keeps in clear: fixed refusals that carry nothing from the request. */
const AUDIT_CLEAR_ERRORS = new Set([
  "permission denied",
  "permission denied (missing client token)",
  "Vault is sealed",
  "",
]);
const silent: CoreLogger = { info() {}, warn() {}, error() {} };
/** Help text for a path: the matching entry of the engine's path table, then the whole table. */
function pathHelp(m: ActiveMount, rel: string): string {
  const router = (m.backend as Partial<TableBackend>).router;
  const head = `## ${m.entry.type} engine at ${m.entry.path}${m.entry.description ? ` — ${m.entry.description}` : ""}`;
  if (!router) return `${head}\n\n(this engine does not describe its paths)`;
  const hit = router.match(rel);
  const line = (p: PathSpec) => `    ^${p.pattern}$\n        ${p.description ?? ""}`;
  return [
    head,
    ...(hit ? ["", `${rel || "(mount root)"}: ${hit.spec.description ?? ""}`] : []),
    "",
    "## PATHS",
    "",
    ...router.paths.map(line),
  ].join("\n");
}

/** sys paths served without a token and while sealed. Their bodies are not wrapped in the envelope. */
const RAW_SYS = new Set([
  "sys/health",
  "sys/seal-status",
  "sys/init",
  "sys/unseal",
  "sys/leader",
  "sys/generate-root/attempt",
  "sys/generate-root/update",
  "sys/rekey/init",
  "sys/rekey/update",
  "sys/rekey/verify",
  "sys/rekey/backup",
  "sys/rekey-recovery-key/init",
  "sys/rekey-recovery-key/update",
  "sys/rekey-recovery-key/verify",
  "sys/rekey-recovery-key/backup",
]);
/**
 * Raw sys paths that are audited all the same (Vault's handleAuditNonLogical, hashicorp/vault#8301): the
 * quorum minting a root token must leave a trace. Request before, response after, every string HMAC'd like
 * any other record (the unseal key shares, the OTP, the nonce and the encoded root token never in clear).
 * Only while unsealed: the audit devices and their HMAC key live behind the barrier.
 */
const AUDITED_RAW_SYS = new Set([
  "sys/generate-root/attempt",
  "sys/generate-root/update",
  // the same for the quorum replacing the unseal key shares: the new shares are HMAC'd in the response record
  "sys/rekey/init",
  "sys/rekey/update",
  // the new-key quorum that puts a verified rekey in force
  "sys/rekey/verify",
]);
/** Paths that additionally need `sudo` (for these operations). */
const SUDO: Array<{ re: RegExp; ops?: Operation[] }> = [
  { re: /^sys\/seal$/ },
  { re: /^sys\/rotate$/ },
  { re: /^sys\/audit(\/.*)?$/, ops: ["create", "update", "delete"] },
  { re: /^sys\/auth\/.+/, ops: ["create", "update", "delete"] },
  // the same auth mounts through sys/mounts/auth/… (tune), and moving any mount (Vault: root paths)
  { re: /^sys\/mounts\/auth\/.+/, ops: ["create", "update", "delete"] },
  { re: /^sys\/remount$/ },
  { re: /^auth\/token\/create-orphan$/ },
];

export class Core implements CoreView {
  readonly barrier: Barrier;
  readonly registry: BackendRegistry;
  readonly audit = new AuditBroker();
  readonly logger: CoreLogger;
  tokens: TokenStore | undefined;
  private sealConfig: SealConfig | undefined;
  private unsealShares: Buffer[] = [];
  #instanceId: Buffer | undefined;
  private mounts: ActiveMount[] = [];
  private mountsLoadedAt = 0;
  private policyCache = new Map<string, { raw: Buffer | undefined; policy: Policy | undefined; at: number }>();
  readonly clusterName: string;
  readonly clusterId: string;
  /**
   * A rekey's new key awaiting verification (require_verification), in this process's memory only. Undefined in
   * a runtime of several workers: a verification share sent to another worker could not reach it.
   */
  readonly pendingRekey: PendingRekeyVerification | undefined;

  constructor(readonly opts: CoreOptions) {
    this.barrier = new Barrier(opts.physical);
    this.registry = opts.registry ?? new BackendRegistry();
    this.logger = opts.logger ?? silent;
    this.clusterName = opts.clusterName ?? "buckypaper-runtime";
    this.clusterId = randomBytes(16).toString("hex");
    this.pendingRekey = opts.peers ? undefined : new PendingRekeyVerification();
  }

  get defaultTtl() {
    return this.opts.defaultTtl ?? 768 * 3600;
  }
  get maxTtl() {
    return this.opts.maxTtl ?? 768 * 3600;
  }
  get sealed() {
    return this.barrier.sealed;
  }

  /**
   * The public id of this initialised runtime (runtimeInstanceId of the secret drawn at sys/init behind the
   * barrier), while unsealed; undefined when sealed. Replicas sharing the storage share it. Attested TLS binds
   * it into REPORT_DATA, so a verifier tells this runtime from a twin launched from the same image.
   */
  get instanceId(): Buffer | undefined {
    return this.sealed ? undefined : this.#instanceId;
  }

  /** Reads the seal configuration (plaintext, not secret) so status works before unseal. */
  async start(): Promise<void> {
    const raw = await this.opts.physical.get(SEAL_CONFIG_KEY);
    this.sealConfig = raw ? (JSON.parse(raw.toString("utf8")) as SealConfig) : undefined;
    if (this.sealConfig && this.sealed) await this.autoUnseal();
  }

  /**
   * Unseals with the auto-unseal provider when the wrapped key is present. Returns whether it did; a
   * key that does not open the wrapping (other chip, changed measurement) leaves the runtime sealed for
   * the recovery shares, with a warning — never an error that stops the server.
   */
  async autoUnseal(): Promise<boolean> {
    const provider = this.opts.autoUnseal;
    if (!provider || !this.sealed) return false;
    const blob = await this.opts.physical.get(AUTO_UNSEAL_KEY);
    if (!blob) return false;
    let wrapping: Uint8Array;
    try {
      wrapping = await provider.deriveKey();
    } catch (e) {
      this.logger.warn(
        `auto-unseal (${provider.type}): no key from the provider (${(e as Error).message}); staying sealed, use the recovery shares`,
      );
      return false;
    }
    const key = unwrapUnsealKey(wrapping, provider.type, blob);
    Buffer.from(wrapping.buffer, wrapping.byteOffset, wrapping.byteLength).fill(0);
    if (!key) {
      this.logger.warn(
        `auto-unseal (${provider.type}): the derived key does not open the sealed unseal key (other chip, image or policy); staying sealed, use the recovery shares`,
      );
      return false;
    }
    try {
      await this.barrier.unseal(key);
    } finally {
      key.fill(0);
    }
    try {
      await this.postUnseal();
    } catch (e) {
      if (!(e instanceof InstanceChangedError)) throw e;
      this.logger.warn(`auto-unseal (${provider.type}): ${e.message}`);
      return false;
    }
    this.logger.info(`runtime unsealed by ${provider.type}`);
    return true;
  }

  /** The peer_threshold given at init (plaintext seal config: informational; the shares live in the barrier). */
  get sealConfigPeerThreshold(): number | undefined {
    return this.sealConfig?.peer_threshold;
  }

  async initialized(): Promise<boolean> {
    if (!this.sealConfig) await this.start();
    return this.sealConfig !== undefined;
  }

  sealStatus(): SealStatus {
    return {
      type: "shamir",
      initialized: this.sealConfig !== undefined,
      sealed: this.sealed,
      t: this.sealConfig?.secret_threshold ?? 0,
      n: this.sealConfig?.secret_shares ?? 0,
      progress: this.opts.peers ? this.opts.peers.progress : this.unsealShares.length,
      nonce: "",
      version: RUNTIME_VERSION,
      build_date: "2026-11-22T00:00:00Z",
      migration: false,
      cluster_name: this.clusterName,
      cluster_id: this.clusterId,
      recovery_seal: false,
      storage_type: "buckypaper",
      unseal_key_check: this.sealed ? null : (this.barrier.unsealKeyCheck() ?? null),
    };
  }

  /** sys/init: creates the keyring, splits the unseal key, mints the root token; leaves the runtime sealed. */
  async initialize(
    shares: number,
    threshold: number,
    o: { peerThreshold?: number } = {},
  ): Promise<{ keys: string[]; keys_base64: string[]; root_token: string; extra: Record<string, unknown> }> {
    checkShareConfig(shares, threshold);
    if (o.peerThreshold !== undefined) checkPeerThreshold(o.peerThreshold);
    // Storage wiped under a process whose attested key served an instance: not a fresh runtime to initialise.
    const served = this.opts.listenerInstance?.served();
    if (served && !(await this.opts.physical.get(SEAL_CONFIG_KEY)))
      throw new InstanceChangedError(served, "uninitialised storage");
    if (await this.initialized()) throw new LogicalError(400, "Vault is already initialized");
    // The wrapping key first: a provider that refuses (no device, a PSP that gives no key to an unbound
    // launch) must leave the runtime uninitialised and init retryable, not a barrier without its seal config.
    let wrapping: Uint8Array | undefined;
    const provider = this.opts.autoUnseal;
    if (provider) {
      try {
        wrapping = await provider.deriveKey();
      } catch (e) {
        throw new LogicalError(
          500,
          `auto-unseal (${provider.type}): no key from the provider (${(e as Error).message}); not initialized`,
        );
      }
      if (wrapping.length !== 32)
        throw new Error(`auto-unseal (${provider.type}): the provider returned ${wrapping.length} bytes, expected 32`);
    }
    const key = randomBytes(32);
    try {
      await this.barrier.initialize(key);
    } catch (e) {
      if (/already initialized/.test((e as Error).message)) throw new LogicalError(400, "Vault is already initialized");
      throw e;
    }
    if (provider && wrapping) {
      await this.opts.physical.put(AUTO_UNSEAL_KEY, wrapUnsealKey(wrapping, provider.type, key));
      Buffer.from(wrapping.buffer, wrapping.byteOffset, wrapping.byteLength).fill(0);
    }
    if (o.peerThreshold !== undefined) await createPeerShares(this.barrier, key, o.peerThreshold);
    const config: SealConfig = {
      type: "shamir",
      secret_shares: shares,
      secret_threshold: threshold,
      ...(o.peerThreshold !== undefined ? { peer_threshold: o.peerThreshold } : {}),
    };
    await this.opts.physical.put(SEAL_CONFIG_KEY, Buffer.from(JSON.stringify(config)));
    this.sealConfig = config;
    await this.barrier.put("core/token-salt", randomBytes(32));
    await this.barrier.put(INSTANCE_SECRET_KEY, randomBytes(32));
    await this.barrier.put("core/audit-hmac-key", randomBytes(32));
    await this.barrier.put("core/mounts", Buffer.from(JSON.stringify(this.defaultMounts())));
    await this.barrier.put(
      "core/auth",
      Buffer.from(
        JSON.stringify([newMount("auth", "auth/token/", "token", { description: "token based credentials" })]),
      ),
    );
    await this.barrier.put("core/audit", Buffer.from("[]"));
    await this.barrier.put(
      "sys/policy/default",
      Buffer.from(
        JSON.stringify({
          name: "default",
          policy: DEFAULT_POLICY_TEXT,
          version: 1,
          modified: new Date().toISOString(),
        }),
      ),
    );
    await this.postUnseal();
    const { token } = await this.tokens!.createRoot();
    const extra = this.opts.onInitialize ? await this.opts.onInitialize(this.barrier) : {};
    await this.seal();
    const bufs = await splitKey(key, shares, threshold);
    key.fill(0);
    await this.opts.peers?.announce({ kind: "initialized" });
    return {
      keys: bufs.map((b) => b.toString("hex")),
      keys_base64: bufs.map((b) => b.toString("base64")),
      root_token: token,
      extra,
    };
  }

  private defaultMounts(): MountEntry[] {
    const out = [
      newMount("secret", "sys/", "system", { description: "system endpoints used for control, policy and debugging" }),
    ];
    if (this.registry.secret.has("nitride"))
      out.push(newMount("secret", "nitride/", "nitride", { description: "Nitride attestation service" }));
    return out;
  }

  /** sys/unseal: collects key shares; at the threshold combines them and opens the barrier. */
  async submitUnsealKey(keyText: string): Promise<void> {
    if (!this.sealConfig) throw new LogicalError(400, "Vault is not initialized");
    if (!this.sealed) return;
    await this.refreshSealConfig(); // another replica may have rekeyed (other share count and threshold)
    const share =
      /^[0-9a-fA-F]+$/.test(keyText) && keyText.length % 2 === 0
        ? Buffer.from(keyText, "hex")
        : Buffer.from(keyText, "base64");
    const expected = this.sealConfig.secret_shares === 1 ? 32 : 33;
    if (share.length !== expected)
      throw new LogicalError(400, `key: expected a ${expected}-byte key share (hex or base64)`);
    const peers = this.opts.peers;
    let shares: Buffer[];
    if (peers) shares = await peers.addUnsealShare(share);
    else {
      if (!this.unsealShares.some((s) => s.equals(share))) this.unsealShares.push(share); // Vault ignores a repeated share
      shares = this.unsealShares;
    }
    if (shares.length < this.sealConfig.secret_threshold) return;
    this.unsealShares = [];
    let key: Buffer;
    try {
      key = shares.length === 1 ? shares[0] : Buffer.from(await combine(shares.map((s) => new Uint8Array(s))));
      await this.barrier.unseal(key);
    } catch (e) {
      await peers?.resetUnseal();
      if (e instanceof InvalidUnsealKeyError || /shares/.test((e as Error).message))
        throw new LogicalError(400, "unseal failed: invalid key shares (progress reset)");
      throw e;
    }
    try {
      await this.postUnseal();
    } catch (e) {
      await peers?.resetUnseal();
      throw e;
    }
    await peers?.announce({ kind: "unsealed", key });
    this.logger.info("runtime unsealed");
  }

  /**
   * Opens the barrier with an unseal key a caller reassembled itself (peer unseal: k shares from k attested
   * peers). A key that does not open the keyring throws InvalidUnsealKeyError and leaves the runtime sealed.
   */
  async unsealWithKey(key: Buffer, by: string, acceptInstance?: InstanceAcceptor): Promise<void> {
    if (!this.sealConfig) throw new LogicalError(400, "Vault is not initialized");
    if (!this.sealed) return;
    if (acceptInstance) {
      // Judge the instance on a detached barrier first: this core stays sealed (serves nothing) until it passed.
      const trial = new Barrier(this.opts.physical);
      await trial.unseal(key);
      try {
        const secret = await trial.get(INSTANCE_SECRET_KEY);
        const refusal = acceptInstance(secret?.length === 32 ? runtimeInstanceId(secret) : undefined);
        if (refusal) throw new InstanceRefusedError(refusal);
      } finally {
        trial.seal();
      }
    }
    await this.barrier.unseal(key);
    await this.postUnseal();
    // Storage is the host's: judged again on what this barrier actually opened.
    const again = acceptInstance?.(this.#instanceId);
    if (again) {
      await this.seal();
      throw new InstanceRefusedError(again);
    }
    await this.opts.peers?.announce({ kind: "unsealed", key });
    this.logger.info(`runtime unsealed by ${by}`);
  }

  /**
   * This replica's peer-unseal share (its slot's, claimed on first use; `holder` = its hardware identity, the chip
   * or platform its own verified evidence names), for a requester the caller has verified. Undefined when the runtime was initialised without peer_threshold.
   */
  async peerShare(holder: string): Promise<PeerShare | undefined> {
    if (this.sealed) throw new SealedError();
    return peerShareFor(this.barrier, holder);
  }

  async resetUnseal(): Promise<void> {
    this.unsealShares = [];
    await this.opts.peers?.resetUnseal();
  }

  /** sys/seal: seals this core and, in a multi-worker runtime, every other worker before answering. */
  async sealByRequest(): Promise<void> {
    await this.seal();
    await this.opts.peers?.announce({ kind: "sealed" });
  }

  /**
   * Applies what another worker announced. Unseal opens the barrier with the combined key (the
   * other worker has just verified it against the keyring); configuration changes drop the caches
   * they make stale.
   */
  async applyPeerEvent(ev: PeerEvent): Promise<void> {
    switch (ev.kind) {
      case "unsealed":
        if (!this.sealed) return;
        this.unsealShares = [];
        await this.barrier.unseal(ev.key);
        await this.postUnseal();
        return;
      case "sealed":
        if (!this.sealed) await this.seal();
        return;
      case "rekeyed":
        await this.refreshSealConfig();
        if (!this.sealed) await this.barrier.adoptUnsealKey(ev.key);
        return;
      case "initialized":
        await this.start();
        return;
      case "changed":
        if (this.sealed) return;
        if (ev.what === "mounts") await this.loadMounts();
        else if (ev.what === "policy") {
          this.policyCache.delete(ev.name);
          this.aclCache.clear();
        } else await this.syncAuditDevices();
        return;
    }
  }

  /** Opens audit devices added to the table elsewhere and closes removed ones. */
  private async syncAuditDevices(): Promise<void> {
    const table = await this.auditTable();
    const want = new Set(table.map((a) => a.path));
    for (const [path] of this.audit.list()) if (path !== "config/" && !want.has(path)) this.audit.remove(path);
    const have = new Set(this.audit.list().map(([p]) => p));
    for (const a of table) {
      if (have.has(a.path)) continue;
      try {
        this.audit.add(a.path, new FileAuditDevice(a.options.file_path));
      } catch (e) {
        this.logger.error(`audit device ${a.path} failed to open: ${(e as Error).message}`);
      }
    }
  }

  /** Convenience for dev mode and tests: submit all shares at once. */
  async unsealWith(keys: string[]): Promise<void> {
    for (const k of keys) await this.submitUnsealKey(k);
  }

  async seal(): Promise<void> {
    this.audit.closeAll();
    this.mounts = [];
    this.tokens = undefined;
    this.policyCache.clear();
    this.aclCache.clear();
    this.#instanceId = undefined;
    this.pendingRekey?.discard(); // a rekey awaiting verification dies with the seal (Vault): the old key stays
    this.barrier.seal();
  }

  /**
   * Removes expired tokens. On storage with a cluster-wide leader lock (PostgreSQL) only one replica
   * runs it at a time; returns undefined when another replica holds the lock.
   */
  async tidy(): Promise<number | undefined> {
    if (this.sealed || !this.tokens) throw new SealedError();
    const tokens = this.tokens;
    const physical = this.opts.physical as Storage & Partial<LeaderLocking>;
    return physical.withLeaderLock ? physical.withLeaderLock("token-tidy", () => tokens.tidy()) : tokens.tidy();
  }

  async rotateKeyring(): Promise<number> {
    if (this.sealed) throw new SealedError();
    return this.barrier.rotate();
  }

  /** Re-reads the seal configuration (secret_shares, secret_threshold) another replica may have rekeyed. */
  async refreshSealConfig(): Promise<void> {
    const raw = await this.opts.physical.get(SEAL_CONFIG_KEY);
    if (raw) this.sealConfig = JSON.parse(raw.toString("utf8")) as SealConfig;
  }

  /**
   * Whether this replica can rekey: storage that holds an auto-unseal wrapping of the unseal key needs it
   * re-wrapped in the same transaction, with this replica's provider, and only a provider whose key opens the
   * current wrapping may do it (a replica on another chip or launch would otherwise replace the wrapping with
   * one the auto-unsealing replicas cannot open). Returns the wrapping key to use (the caller zeroes it), or
   * undefined when there is no wrapping. `current`: the unseal key the wrapping must hold (checked at completion).
   */
  async rekeyWrappingKey(current?: Buffer): Promise<Buffer | undefined> {
    const blob = await this.opts.physical.get(AUTO_UNSEAL_KEY);
    if (!blob) return undefined;
    const provider = this.opts.autoUnseal;
    const cannot = (why: string) =>
      new LogicalError(
        400,
        `rekey refused: the storage holds the unseal key wrapped for auto-unseal, and ${why}; ` +
          "rekey through a replica that auto-unseals (same chip and launch), so the wrapping is renewed with the new key",
      );
    if (!provider) throw cannot("this replica has no seal stanza to renew that wrapping");
    let derived: Uint8Array;
    try {
      derived = await provider.deriveKey();
    } catch (e) {
      throw cannot(`this replica's ${provider.type} provider gave no key (${(e as Error).message})`);
    }
    const wrapping = Buffer.from(derived);
    Buffer.from(derived.buffer, derived.byteOffset, derived.byteLength).fill(0);
    const inner = unwrapUnsealKey(wrapping, provider.type, blob);
    const matches =
      inner !== undefined && (!current || (inner.length === current.length && timingSafeEqual(inner, current)));
    inner?.fill(0);
    if (!matches) {
      wrapping.fill(0);
      throw cannot(`this replica's ${provider.type} key does not open it (another chip, image or policy)`);
    }
    return wrapping;
  }

  /**
   * sys/rekey's last step: `newKey` (drawn and already split into the operators' shares by the caller, so a
   * failing split cannot leave a key no operator holds) replaces `oldKey` (reassembled from the current shares)
   * in one storage transaction — the keyring re-encrypted under it, the auto-unseal wrapping renewed, the
   * peer-unseal shares re-split with the same peer threshold, the seal config's share count and threshold, and
   * `inTx` (the caller's attempt bookkeeping). Any failure commits nothing: the old shares keep working. Used
   * both when the old-key quorum completes and, with require_verification, when the new-key quorum does.
   */
  async rekeyUnsealKey(
    oldKey: Buffer,
    newKey: Buffer,
    shares: number,
    threshold: number,
    inTx: (sealed: StorageWriter) => Promise<void>,
  ): Promise<void> {
    if (this.sealed) throw new SealedError();
    checkShareConfig(shares, threshold);
    if (!(await this.barrier.verifyUnsealKey(oldKey))) throw new InvalidUnsealKeyError();
    const wrapping = await this.rekeyWrappingKey(oldKey);
    const peerK = await peerThreshold(this.barrier);
    try {
      const peerRecord = peerK === undefined ? undefined : await peerSharesRecord(newKey, peerK);
      const wrapped = wrapping && wrapUnsealKey(wrapping, this.opts.autoUnseal!.type, newKey);
      let config: SealConfig | undefined;
      await this.barrier.rekey(oldKey, newKey, async (raw, sealed) => {
        await inTx(sealed);
        const current = await raw.get(SEAL_CONFIG_KEY);
        if (!current) throw new StorageCorruptionError("seal configuration missing from storage", SEAL_CONFIG_KEY);
        config = {
          ...(JSON.parse(current.toString("utf8")) as SealConfig),
          secret_shares: shares,
          secret_threshold: threshold,
        };
        await raw.put(SEAL_CONFIG_KEY, Buffer.from(JSON.stringify(config)));
        if (wrapped) await raw.put(AUTO_UNSEAL_KEY, wrapped);
        if (peerRecord) await sealed.put(PEER_SHARES_KEY, peerRecord);
      });
      peerRecord?.fill(0);
      this.sealConfig = config;
      this.unsealShares = [];
      await this.opts.peers?.announce({ kind: "rekeyed", key: newKey });
      this.logger.info(
        `runtime rekeyed: ${shares} key shares, threshold ${threshold}` +
          `${wrapped ? "; auto-unseal wrapping renewed" : ""}${peerK !== undefined ? `; peer-unseal shares re-split (threshold ${peerK})` : ""}`,
      );
    } finally {
      wrapping?.fill(0);
    }
  }

  private async postUnseal(): Promise<void> {
    const salt = await this.barrier.get("core/token-salt");
    if (!salt) throw new StorageCorruptionError("token salt missing from storage", "core/token-salt");
    this.tokens = new TokenStore(new PrefixedStorage(this.barrier, "sys/token/"), salt);
    const id = await this.loadInstanceId();
    const served = this.opts.listenerInstance?.served();
    if (served && !served.equals(id)) {
      await this.seal();
      throw new InstanceChangedError(served, id);
    }
    this.opts.listenerInstance?.serve(id);
    this.#instanceId = id;
    this.audit.setKey((await this.barrier.get("core/audit-hmac-key")) ?? Buffer.alloc(0));
    await this.loadMounts();
    for (const a of await this.auditTable()) {
      try {
        this.audit.add(a.path, new FileAuditDevice(a.options.file_path));
      } catch (e) {
        this.logger.error(`audit device ${a.path} failed to open: ${(e as Error).message}`);
      }
    }
    if (this.opts.auditFile) this.audit.add("config/", new FileAuditDevice(this.opts.auditFile));
    if (this.opts.onUnseal) await this.opts.onUnseal(this.barrier);
  }

  /**
   * The instance secret, created at sys/init. Storage initialised before instance ids existed gets one at its
   * first unseal, in a transaction, so replicas unsealing together agree on a single one.
   */
  private async loadInstanceId(): Promise<Buffer> {
    let secret = await this.barrier.get(INSTANCE_SECRET_KEY);
    if (!secret)
      secret = await this.barrier.transaction(async (tx) => {
        const have = await tx.get(INSTANCE_SECRET_KEY);
        if (have) return have;
        const fresh = randomBytes(32);
        await tx.put(INSTANCE_SECRET_KEY, fresh);
        return fresh;
      });
    if (secret.length !== 32) throw new StorageCorruptionError("instance secret is not 32 bytes", INSTANCE_SECRET_KEY);
    return runtimeInstanceId(secret);
  }

  // ---- mount table ----

  async readTable(kind: "secret" | "auth"): Promise<MountEntry[]> {
    const raw = await this.barrier.get(kind === "auth" ? "core/auth" : "core/mounts");
    return raw ? (JSON.parse(raw.toString("utf8")) as MountEntry[]) : [];
  }

  async writeTable(kind: "secret" | "auth", fn: (t: MountEntry[]) => MountEntry[]): Promise<void> {
    const key = kind === "auth" ? "core/auth" : "core/mounts";
    await this.barrier.transaction(async (tx) => {
      const raw = await tx.get(key);
      const t = raw ? (JSON.parse(raw.toString("utf8")) as MountEntry[]) : [];
      await tx.put(key, Buffer.from(JSON.stringify(fn(t))));
    });
    await this.loadMounts();
    await this.opts.peers?.announce({ kind: "changed", what: "mounts" });
  }

  async auditTable(): Promise<AuditTableEntry[]> {
    const raw = await this.barrier.get("core/audit");
    return raw ? JSON.parse(raw.toString("utf8")) : [];
  }

  async writeAuditTable(t: AuditTableEntry[]): Promise<void> {
    await this.barrier.put("core/audit", Buffer.from(JSON.stringify(t)));
    await this.opts.peers?.announce({ kind: "changed", what: "audit" });
  }

  /** (Re)builds live backends from the stored tables, reusing instances whose mount is unchanged. */
  async loadMounts(): Promise<void> {
    const entries = [...(await this.readTable("secret")), ...(await this.readTable("auth"))];
    const next: ActiveMount[] = [];
    for (const e of entries) {
      const existing = this.mounts.find((m) => m.entry.uuid === e.uuid);
      if (existing) {
        existing.entry = e;
        next.push(existing);
        continue;
      }
      const backend = this.instantiate(e);
      if (!backend) {
        this.logger.warn(`mount ${e.path}: no engine of type '${e.type}' in this build`);
        continue;
      }
      const storage = new PrefixedStorage(this.barrier, mountStoragePrefix(e));
      if (backend.initialize) await backend.initialize(storage, this.systemView());
      next.push({ entry: e, backend, storage });
    }
    next.sort((a, b) => b.entry.path.length - a.entry.path.length);
    this.mounts = next;
    this.mountsLoadedAt = Date.now();
  }

  private instantiate(e: MountEntry): LogicalBackend | undefined {
    if (e.type === "system") return new SystemBackend(this);
    if (e.kind === "auth" && e.type === "token") return new TokenBackend(this);
    const f = e.kind === "auth" ? this.registry.auth.get(e.type) : this.registry.secret.get(e.type);
    return f?.(e);
  }

  mountEntries(): MountEntry[] {
    return this.mounts.map((m) => m.entry);
  }

  resolveMount(path: string): ActiveMount | undefined {
    return this.mounts.find((m) => path.startsWith(m.entry.path) || path + "/" === m.entry.path);
  }

  private reloading: Promise<void> | undefined;

  /** Re-reads the mount tables, coalescing concurrent callers into one read. */
  private reloadMounts(): Promise<void> {
    this.reloading ??= this.loadMounts().finally(() => {
      this.reloading = undefined;
    });
    return this.reloading;
  }

  private async resolveFresh(path: string): Promise<ActiveMount | undefined> {
    // Replicas share the mount tables through storage: refresh every few seconds (so unmounts
    // elsewhere propagate) and on any miss (so a fresh mount elsewhere is usable at once).
    if (Date.now() - this.mountsLoadedAt > 5000) await this.reloadMounts();
    let m = this.resolveMount(path);
    if (!m) {
      await this.reloadMounts();
      m = this.resolveMount(path);
    }
    return m;
  }

  /** resolveFresh without a promise when the table is fresh and the path mounted (the hot path). */
  private resolveFreshFast(path: string): ActiveMount | undefined {
    return Date.now() - this.mountsLoadedAt > 5000 ? undefined : this.resolveMount(path);
  }

  // ---- policies ----

  /**
   * A parsed policy. Writes through this runtime invalidate the cache at once; changes and deletions
   * made by another replica are picked up within POLICY_TTL_MS, new policies at once (tokens, unlike
   * policies, are read from storage on every request, so revocation is immediate everywhere).
   */
  async getPolicy(name: string): Promise<Policy | undefined> {
    if (name === "root") return undefined;
    const hit = this.policyCache.get(name);
    if (hit && Date.now() - hit.at < POLICY_TTL_MS) return hit.policy;
    const raw = await this.barrier.get(`sys/policy/${name}`);
    const policy = !raw
      ? undefined
      : hit?.raw && hit.raw.equals(raw)
        ? hit.policy
        : parsePolicy(name, (JSON.parse(raw.toString("utf8")) as { policy: string }).policy);
    if (!policy) {
      this.policyCache.delete(name);
      return undefined;
    } // a policy created elsewhere is seen at once
    if (this.policyCache.size > 10_000) this.policyCache.clear();
    this.policyCache.set(name, { raw, policy, at: Date.now() });
    return policy;
  }

  /** After a policy write or delete: drop it here and on the other workers. */
  async policyChanged(name: string): Promise<void> {
    this.policyCache.delete(name);
    await this.opts.peers?.announce({ kind: "changed", what: "policy", name });
  }

  private aclCache = new Map<string, { parts: Policy[]; acl: Acl }>();

  /** The ACL of a policy set; policies are re-read each time (replicas may change them), compiled once per version. */
  async aclFor(policies: string[]): Promise<Acl> {
    if (policies.includes("root")) return new Acl([], true);
    const ps: Policy[] = [];
    for (const n of policies) {
      const p = await this.getPolicy(n);
      if (p) ps.push(p);
    }
    const key = policies.join("\0");
    const hit = this.aclCache.get(key);
    if (hit && hit.parts.length === ps.length && hit.parts.every((p, i) => p === ps[i])) return hit.acl;
    const acl = new Acl(ps);
    if (this.aclCache.size > 1000) this.aclCache.clear();
    this.aclCache.set(key, { parts: ps, acl });
    return acl;
  }

  private sysView: SystemView | undefined;

  systemView(): SystemView {
    return (this.sysView ??= {
      internalRequest: async (operation, path, data = {}) => {
        const m = this.resolveMount(path);
        if (!m) return undefined;
        return m.backend.handle(this.logicalRequest(m, operation, path, data, {}, {}, "127.0.0.1", undefined));
      },
      ttls: () => ({ defaultTtl: this.defaultTtl, maxTtl: this.maxTtl }),
      authorized: async (policies, operation, path, data = {}) => {
        const acl = await this.aclFor(policies);
        const p = canonicalPath(path);
        if (!acl.capabilities(p).has(operation as Capability)) return false;
        return !WRITES.has(operation) || acl.parametersAllowed(p, data);
      },
      apiAddr: () => this.opts.apiAddr ?? "http://127.0.0.1:8200",
    });
  }

  private logicalRequest(
    m: ActiveMount,
    operation: Operation,
    path: string,
    data: Record<string, unknown>,
    query: Record<string, string>,
    headers: Record<string, string>,
    clientIp: string,
    auth: CallerAuth | undefined,
  ): LogicalRequest {
    return {
      operation,
      path: path.slice(m.entry.path.length).replace(/\/+$/, ""),
      data,
      query,
      storage: m.storage,
      auth,
      mountPoint: m.entry.path,
      clientIp,
      headers,
      system: this.systemView(),
    };
  }

  callerAuth(e: TokenEntry): CallerAuth {
    return { accessor: e.accessor, policies: e.policies, metadata: e.meta, claims: e.claims };
  }

  /** Mints a token for an auth method's login response (policies get "default" added). */
  async mintLoginToken(m: MountEntry, a: NonNullable<LogicalResponse["auth"]>) {
    const ttl = Math.min(a.ttl > 0 ? a.ttl : this.defaultTtl, a.maxTtl && a.maxTtl > 0 ? a.maxTtl : this.maxTtl);
    const policies = a.policies.includes("root") ? a.policies.filter((p) => p !== "root") : a.policies;
    const { token, entry } = await this.tokens!.create({
      policies: ["default", ...policies],
      meta: a.metadata,
      claims: a.claims,
      displayName: `${m.path.replace(/^auth\//, "").replace(/\/$/, "")}-${a.displayName ?? "login"}`,
      path: `${m.path}login`,
      ttl,
      maxTtl: a.maxTtl && a.maxTtl > 0 ? Math.min(a.maxTtl, this.maxTtl) : this.maxTtl,
      renewable: a.renewable,
    });
    return { block: this.authBlock(token, entry), callerAuth: this.callerAuth(entry) };
  }

  authBlock(token: string, e: TokenEntry) {
    return {
      client_token: token,
      accessor: e.accessor,
      policies: e.policies,
      token_policies: e.policies,
      identity_policies: null,
      metadata: e.meta,
      lease_duration: TokenStore.ttlLeft(e),
      renewable: e.renewable,
      entity_id: "",
      token_type: e.type,
      orphan: e.orphan,
      mfa_requirement: null,
      num_uses: e.numUses,
    };
  }

  // ---- request handling ----

  /**
   * One request, in named steps: canonicalise (request.ts) → resolve the mount → authenticate →
   * authorise → dispatch to the engine → render. Every step after the first uses the canonical path.
   */
  async handle(raw: RawRequest): Promise<RawResponse> {
    this.opts.physical.beginRequest?.();
    const req = canonicalRequest(raw, newRequestId());
    if (!("path" in req)) return req;
    const audit: AuditRequest = {
      id: req.id,
      operation: req.operation,
      path: req.path,
      data: raw.body ?? undefined,
      remoteAddress: raw.clientIp,
    };
    try {
      if (RAW_SYS.has(req.bare)) {
        if (!AUDITED_RAW_SYS.has(req.bare) || this.sealed || !this.audit.enabled)
          return await new SystemBackend(this).handleRaw(req.bare, req.method, raw.query, req.data);
        return await this.auditedRaw(req.bare, req.method, raw.query, req.data, audit);
      }
      const target = await this.resolve(req);
      audit.mountType = target.mount.entry.type;
      const caller = await this.authenticate(req, target);
      if (caller.entry) audit.auth = auditAuth(req.token, caller.entry);
      // Response wrapping is not implemented: refuse rather than send the secret back unwrapped, in
      // clear, to a client that asked for it to be wrapped (Vault Agent, the vault CLI's -wrap-ttl).
      if (raw.headers["x-vault-wrap-ttl"] !== undefined)
        throw new LogicalError(
          400,
          "response wrapping (X-Vault-Wrap-TTL) is not supported by this runtime; nothing was returned — repeat without -wrap-ttl",
        );
      const lreq = this.logicalRequest(
        target.mount,
        req.operation,
        req.path,
        req.data,
        raw.query,
        raw.headers,
        raw.clientIp,
        caller.auth,
      );
      req.operation = lreq.operation = await this.writeOperation(target.mount, lreq);
      audit.operation = req.operation;
      await this.authorise(req, target, caller);
      this.audit.logRequest(audit);
      // `vault path-help` (GET …?help=1): the engine's path table, as Vault's help text.
      if (raw.query.help !== undefined && req.operation === "read")
        return { status: 200, body: { help: pathHelp(target.mount, lreq.path), see_also: null } };
      if (caller.entry && caller.entry.numUses !== 0 && !(await this.tokens!.use(caller.entry)))
        throw new PermissionDeniedError(); // unlimited tokens: nothing to count
      const res = await this.dispatch(target.mount, lreq);
      const out = await this.render(target.mount.entry, res, req.id, raw.headers, caller.auth);
      this.audit.logResponse(audit, {
        status: out.status,
        data: res.data,
        auth: (out.body as { auth?: never } | undefined)?.auth,
      });
      return systemEnvelope(target.mount.entry, res, out);
    } catch (e) {
      return this.failed(e, audit);
    }
  }

  /**
   * A raw sys request with its audit records (AUDITED_RAW_SYS). Like every audited request it fails closed:
   * when the request record cannot be written, nothing is done.
   */
  private async auditedRaw(
    bare: string,
    method: string,
    query: Record<string, string>,
    data: Record<string, unknown>,
    audit: AuditRequest,
  ): Promise<RawResponse> {
    audit.mountType = "system";
    this.audit.logRequest(audit);
    const r = await new SystemBackend(this).handleRaw(bare, method, query, data);
    this.audit.logResponse(
      audit,
      r.status >= 400 ? { status: r.status, error: this.auditError(r) } : { status: r.status, data: r.body },
    );
    return r;
  }

  /** The mount serving the canonical path (503 while sealed, 404 when nothing is mounted there). */
  private async resolve(req: CanonicalRequest): Promise<RequestTarget> {
    if (this.sealed) throw new SealedError();
    const mount = this.resolveFreshFast(req.path) ?? (await this.resolveFresh(req.path));
    if (!mount) throw new LogicalError(404, `no handler for route "${req.bare}". route entry not found.`);
    const rel = req.path.slice(mount.entry.path.length);
    const unauthenticated = matchesAny(rel.replace(/\/+$/, ""), mount.backend.unauthenticatedPaths ?? []);
    return { mount, rel, unauthenticated };
  }

  /** The caller's token entry; required unless the engine serves this path without a token. */
  private async authenticate(req: CanonicalRequest, target: RequestTarget): Promise<Caller> {
    let entry = req.token ? await this.tokens!.lookup(req.token) : undefined;
    const stale = entry && (await this.loginNoLongerStands(entry));
    if (entry && stale) {
      await this.tokens!.revoke(entry);
      entry = undefined;
      if (!target.unauthenticated) throw new PermissionDeniedError(`permission denied: ${stale}`);
    }
    if (!entry && !target.unauthenticated)
      throw new PermissionDeniedError(req.token ? "permission denied" : "permission denied (missing client token)");
    return { entry, auth: entry ? this.callerAuth(entry) : undefined };
  }

  /** Asks the auth method that issued a login token whether the login still stands; why not, if not. */
  private async loginNoLongerStands(entry: TokenEntry): Promise<string | undefined> {
    if (!entry.path.startsWith("auth/")) return undefined;
    const m = this.resolveMount(entry.path);
    if (!m?.backend.loginStillValid) return undefined;
    return m.backend.loginStillValid(this.callerAuth(entry), this.systemView());
  }

  /** Vault's existence check: a POST/PUT to something that does not exist yet is a `create`. */
  private async writeOperation(mount: ActiveMount, lreq: LogicalRequest): Promise<Operation> {
    if (lreq.operation !== "update" || !mount.backend.existenceCheck) return lreq.operation;
    return (await mount.backend.existenceCheck(lreq)) ? "update" : "create";
  }

  /** The ACL of the caller's policies must grant the operation on the canonical path (and sudo where needed). */
  private async authorise(req: CanonicalRequest, target: RequestTarget, caller: Caller): Promise<void> {
    if (target.unauthenticated) return;
    if (target.mount.entry.type === "system" && SystemBackend.selfAuthorized(target.rel)) return;
    const acl = await this.aclFor(caller.entry!.policies);
    const caps = acl.capabilities(req.path);
    if (!caps.has(req.operation as Capability)) throw new PermissionDeniedError();
    if (WRITES.has(req.operation) && !acl.parametersAllowed(req.path, req.data)) throw new PermissionDeniedError();
    const sudo = SUDO.find((s) => s.re.test(req.bare) && (!s.ops || s.ops.includes(req.operation)));
    if (sudo && !caps.has("sudo")) throw new PermissionDeniedError();
  }

  /** The engine's answer; an engine that does not serve the path answers undefined (404). */
  private async dispatch(mount: ActiveMount, lreq: LogicalRequest): Promise<LogicalResponse> {
    const res = await mount.backend.handle(lreq);
    if (!res) throw new LogicalError(404, "unsupported path");
    return res;
  }

  /** A failed request: Vault's error shape, and an audit entry when auditing is on. */
  private failed(e: unknown, audit: AuditRequest): RawResponse {
    const r = this.errorFrom(e);
    if (this.audit.enabled && !this.sealed) {
      try {
        this.audit.logResponse(audit, { status: r.status, error: this.auditError(r) });
      } catch {
        /* the request already failed */
      }
    }
    return r;
  }

  private async render(
    m: MountEntry,
    res: LogicalResponse,
    requestId: string,
    headers: Record<string, string>,
    auth?: CallerAuth,
  ): Promise<RawResponse> {
    let authOut: Record<string, unknown> | null = null;
    let sealAuth = auth;
    if (res.auth) {
      const minted = await this.mintLoginToken(m, res.auth);
      authOut = minted.block;
      sealAuth = minted.callerAuth; // a login's response is sealed to the key bound in that login
    }
    if (m.type === "token" && res.data && AUTH_BLOCK in res.data) {
      authOut = res.data[AUTH_BLOCK] as Record<string, unknown>;
      res = { ...res, data: undefined };
    }
    const raw = rawBody(res.data);
    if (raw) return raw;
    const status = res.status ?? (res.data || authOut || res.warnings?.length ? 200 : 204);
    if (status >= 400) {
      const msg = typeof res.data?.error === "string" ? [res.data.error] : [];
      return { status, body: res.data ? { errors: msg, data: res.data } : { errors: msg } };
    }
    if (status === 204) return { status };
    let body: Record<string, unknown> = {
      request_id: requestId,
      lease_id: "",
      renewable: false,
      lease_duration: 0,
      data: res.data ?? null,
      wrap_info: null,
      warnings: res.warnings?.length ? res.warnings : null,
      auth: authOut,
      mount_type: m.type,
    };
    // A new token is a secret too, but a login is sealed only on explicit request (SEAL_HEADER): a
    // client must always be able to read the token it was just issued.
    const sealLogin = authOut !== null && headers[SEAL_HEADER] !== undefined;
    const secretKeys = [...(res.secretKeys ?? []), ...(sealLogin ? ["auth"] : [])];
    if (this.opts.responseSealer && secretKeys.length) {
      const sealedBody = await this.opts.responseSealer({
        headers,
        auth: sealAuth,
        body,
        secretKeys,
        login: res.auth !== undefined,
      });
      if (sealedBody) body = sealedBody;
    }
    return { status, body };
  }

  /**
   * The audit record's `error`: error text can echo what the client sent (a policy-parse error
   * quotes the submitted policy), so it is HMAC'd like request data; only the runtime's fixed
   * refusals, which carry nothing from the request, stay readable.
   */
  private auditError(r: RawResponse): string {
    const text = ((r.body as { errors?: string[] }).errors ?? []).join("; ");
    return AUDIT_CLEAR_ERRORS.has(text) ? text : this.audit.hash(text);
  }

  private errorFrom(e: unknown): RawResponse {
    if (e instanceof LogicalError) return errorResponse(e.status, e.message);
    if (e instanceof StaleUnsealKeyError) {
      // Unavailable here, not corrupt: the replica must restart to unseal with the current key.
      this.logger.error(e.message);
      return errorResponse(503, e.message);
    }
    if (e instanceof StorageCorruptionError) {
      // The message names the internal storage key (it reveals KV paths and token accessors): the
      // operator's log gets it, the client does not.
      this.logger.error(`storage corruption: ${e.message}`);
      return errorResponse(500, "storage corruption: a stored value failed its integrity check (see the server log)");
    }
    this.logger.error(`internal error: ${describeForLog(e)}`);
    return errorResponse(500, "internal error");
  }
}

/**
 * Vault's raw-response convention: data with `http_raw_body` (string or bytes) is sent as the body
 * itself with `http_content_type` and `http_status_code` (e.g. PEM/DER certificates, JWKS).
 */
function rawBody(data: Record<string, unknown> | undefined): RawResponse | undefined {
  if (!data || !("http_raw_body" in data)) return undefined;
  const b = data.http_raw_body;
  const body = typeof b === "string" ? b : b instanceof Uint8Array ? Buffer.from(b) : JSON.stringify(b ?? "");
  const status = typeof data.http_status_code === "number" ? data.http_status_code : 200;
  const type = typeof data.http_content_type === "string" ? data.http_content_type : "application/octet-stream";
  return { status, body, headers: { "content-type": type } };
}

/**
 * An unexpected error for the log: name, message and stack frames — except that JSON syntax errors
 * quote the text they failed on (which may be decrypted secret data), so their message is withheld.
 */
export function describeForLog(e: unknown): string {
  if (!(e instanceof Error)) return "non-Error thrown";
  const frames = (e.stack ?? "")
    .split("\n")
    .filter((l) => /^\s+at /.test(l))
    .slice(0, 8)
    .join("\n");
  const msg = e instanceof SyntaxError ? "(message withheld: it may quote the data being parsed)" : e.message;
  return `${e.name}: ${msg}${frames ? "\n" + frames : ""}`;
}

export function matchesAny(path: string, patterns: string[]): boolean {
  return patterns.some((p) => (p.endsWith("*") ? path.startsWith(p.slice(0, -1)) : path === p));
}

interface RequestTarget {
  mount: ActiveMount;
  /** The canonical path relative to the mount. */
  rel: string;
  /** The engine serves this path without a token (e.g. a login path). */
  unauthenticated: boolean;
}

interface Caller {
  entry: TokenEntry | undefined;
  auth: CallerAuth | undefined;
}

function auditAuth(token: string | undefined, entry: TokenEntry): AuditRequest["auth"] {
  return {
    token,
    accessor: entry.accessor,
    policies: entry.policies,
    metadata: entry.meta,
    displayName: entry.displayName,
  };
}

/** sys/ responses carry their data at the top level too (Vault's legacy sys shapes). */
function systemEnvelope(m: MountEntry, res: LogicalResponse, out: RawResponse): RawResponse {
  if (m.type === "system" && out.body && typeof out.body === "object" && !Buffer.isBuffer(out.body) && res.data)
    out.body = { ...res.data, ...(out.body as object) };
  return out;
}
