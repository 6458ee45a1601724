// The logical-backend contract between the HTTP layer and the secret engines / auth methods, as in
// Vault: the HTTP layer authenticates, checks the ACL, resolves the mount and hands the engine a
// transport-free request; engines never see fastify. Engines: kv (v2), pki, transit, ssh, jwt (auth),
// nitride (attestation, mounted at "nitride/").
import type { Storage } from "../storage/types.js";

export type Operation = "read" | "create" | "update" | "delete" | "list" | "patch";

/** What an authenticated caller is. Absent on unauthenticated paths. */
export interface CallerAuth {
  /** Token accessor (never the token itself). */
  accessor: string;
  policies: string[];
  /** Metadata attached at login (e.g. workload id, evidence digest for attested logins). */
  metadata: Record<string, string>;
  /** Entity/claims the login was bound to (e.g. Nitride token claims). */
  claims?: Record<string, unknown>;
}

export interface LogicalRequest {
  operation: Operation;
  /** Path relative to the mount, without leading slash, e.g. "data/app/db". */
  path: string;
  data: Record<string, unknown>;
  /** Query parameters for read/list (e.g. version=2). */
  query: Record<string, string>;
  /** The mount's private, barrier-encrypted view (keys are relative to the mount). */
  storage: Storage;
  auth?: CallerAuth;
  mountPoint: string;
  clientIp: string;
  /** Lower-cased request headers the engine may need (never logged). */
  headers: Record<string, string>;
  system: SystemView;
}

export interface AuthResult {
  policies: string[];
  /** Seconds. */
  ttl: number;
  maxTtl?: number;
  renewable: boolean;
  metadata: Record<string, string>;
  claims?: Record<string, unknown>;
  displayName?: string;
}

export interface LogicalResponse {
  /** Defaults: 200 with data, 204 without. */
  status?: number;
  data?: Record<string, unknown>;
  /** Set by auth methods on login: the HTTP layer mints a token from it. */
  auth?: AuthResult;
  warnings?: string[];
  /** Keys of `data` that hold secret values: HMAC'd in the audit log, sealable to the workload key. */
  secretKeys?: string[];
}

/** Trusted in-process calls across mounts (e.g. Nitride's provisioning bundle reading KV, issuing PKI). */
export interface SystemView {
  internalRequest(
    operation: Operation,
    path: string,
    data?: Record<string, unknown>,
  ): Promise<LogicalResponse | undefined>;
  /**
   * Would a token with these policies be allowed this request (capability and parameter rules)? For
   * an engine acting on a caller's behalf (e.g. Nitride delegating secrets to a workload): the
   * caller must hold what it hands on.
   */
  authorized(policies: string[], operation: Operation, path: string, data?: Record<string, unknown>): Promise<boolean>;
  /** Default/max token TTLs of the runtime, seconds. */
  ttls(): { defaultTtl: number; maxTtl: number };
  /** Runtime's public URL (issuer for tokens). */
  apiAddr(): string;
}

export interface LogicalBackend {
  readonly type: string;
  /** Paths (globs relative to the mount, "*" suffix allowed) reachable without a token. */
  readonly unauthenticatedPaths?: string[];
  /** Called once when mounted or after unseal, with the mount's storage. */
  initialize?(storage: Storage, system: SystemView): Promise<void>;
  /**
   * For POST/PUT: does the target exist? true → the ACL checks `update`, false → `create` (Vault's
   * existence check). Without it every POST/PUT is an `update`.
   */
  existenceCheck?(req: LogicalRequest): Promise<boolean>;
  /** Returns undefined for an unknown path (→ 404). Throws LogicalError for client errors. */
  handle(req: LogicalRequest): Promise<LogicalResponse | undefined>;
  /**
   * Auth methods: is a token this method issued still backed by what it was issued for (e.g. an
   * attested login by the workload definition it attested against)? Vault asks its auth methods on
   * renewal; the core asks on every use of such a token. Returns why not (the core then revokes the
   * token and refuses the request), or undefined while it stands.
   */
  loginStillValid?(auth: CallerAuth, system: SystemView): Promise<string | undefined>;
}

/** A client-visible error: rendered as Vault's {"errors": [message]} with this status. */
export class LogicalError extends Error {
  override name = "LogicalError";
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}
