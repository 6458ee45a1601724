// What the built-in backends (sys/, auth/token/) see of the Core, and the transport-free request and
// response shapes. The Core implements CoreView and mounts those backends; the backends depend on
// this interface only, so core.ts ↔ sys-backend.ts ↔ token-backend.ts is no longer a cycle.
import type { Barrier } from "./barrier.js";
import type { AuditBroker } from "../audit/broker.js";
import type { Acl } from "./policy.js";
import type { MountEntry } from "./mounts.js";
import type { BackendRegistry } from "./registry.js";
import type { TokenEntry, TokenStore } from "./tokens.js";
import type { LogicalBackend } from "./backend.js";
import type { PendingRekeyVerification } from "./rekey-verification.js";
import type { Storage, StorageWriter } from "../storage/types.js";

export interface RawRequest {
  method: string;
  /** Path after /v1/, e.g. "secret/data/app". */
  path: string;
  query: Record<string, string>;
  body: unknown;
  /** Lower-cased header names. */
  headers: Record<string, string>;
  clientIp: string;
}

/** body: a JSON value, or a string/Buffer sent as-is (raw responses carry their content-type header). */
export interface RawResponse {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

/** A mounted backend with its entry in the mount table and its barrier-encrypted storage view. */
export interface ActiveMount {
  entry: MountEntry;
  backend: LogicalBackend;
  storage: Storage;
}

export interface SealStatus {
  type: "shamir";
  initialized: boolean;
  sealed: boolean;
  t: number;
  n: number;
  progress: number;
  nonce: string;
  version: string;
  build_date: string;
  migration: boolean;
  cluster_name: string;
  cluster_id: string;
  recovery_seal: boolean;
  storage_type: string;
  /**
   * Buckypaper: the check value of the unseal key in force (Barrier.unsealKeyCheck; null while sealed). It changes
   * at every rekey, so whoever kept shares from init (a Vhsm's Pulumi state) can tell they no longer unseal it.
   */
  unseal_key_check: string | null;
}

export interface AuditTableEntry {
  path: string;
  type: string;
  description: string;
  options: Record<string, string>;
}

/** The Core as the sys/ and auth/token/ backends use it. */
export interface CoreView {
  readonly barrier: Barrier;
  readonly registry: BackendRegistry;
  readonly audit: AuditBroker;
  readonly tokens: TokenStore | undefined;
  readonly clusterName: string;
  readonly clusterId: string;
  readonly sealed: boolean;
  readonly defaultTtl: number;
  readonly maxTtl: number;
  readonly opts: { readonly apiAddr?: string };
  initialized(): Promise<boolean>;
  sealStatus(): SealStatus;
  initialize(
    shares: number,
    threshold: number,
    o?: { peerThreshold?: number },
  ): Promise<{ keys: string[]; keys_base64: string[]; root_token: string; extra: Record<string, unknown> }>;
  submitUnsealKey(keyText: string): Promise<void>;
  resetUnseal(): Promise<void>;
  sealByRequest(): Promise<void>;
  rotateKeyring(): Promise<number>;
  refreshSealConfig(): Promise<void>;
  rekeyWrappingKey(current?: Buffer): Promise<Buffer | undefined>;
  rekeyUnsealKey(
    oldKey: Buffer,
    newKey: Buffer,
    shares: number,
    threshold: number,
    inTx: (sealed: StorageWriter) => Promise<void>,
  ): Promise<void>;
  /** A rekey's new key awaiting verification; undefined when this core is one worker of several. */
  readonly pendingRekey: PendingRekeyVerification | undefined;
  tidy(): Promise<number | undefined>;
  mountEntries(): MountEntry[];
  resolveMount(path: string): ActiveMount | undefined;
  writeTable(kind: "secret" | "auth", fn: (t: MountEntry[]) => MountEntry[]): Promise<void>;
  auditTable(): Promise<AuditTableEntry[]>;
  writeAuditTable(t: AuditTableEntry[]): Promise<void>;
  aclFor(policies: string[]): Promise<Acl>;
  policyChanged(name: string): Promise<void>;
  authBlock(token: string, e: TokenEntry): Record<string, unknown>;
}
