// sys/*: seal lifecycle, mounts, auth methods, policies, audit devices and the vault CLI's KV
// preflight, with Vault's paths and shapes. Lifecycle paths (health, seal-status, init, unseal,
// leader) are answered by handleRaw without a token, also while sealed.
import { LogicalError, type LogicalBackend, type LogicalRequest, type LogicalResponse } from "./backend.js";
import type { CoreView, RawResponse } from "./core-view.js";
import { newMount, normalizeMountPath, mountView, type MountEntry } from "./mounts.js";
import { parsePolicy, validPolicyName, PolicyParseError, type Capability } from "./policy.js";
import { parseDuration } from "./duration.js";
import {
  FieldData,
  PathRouter,
  rest,
  withFields,
  type FieldSchema,
  type FieldSchemas,
  type PathHandler,
  type PathSpec,
  type TableBackend,
} from "./framework.js";
import { FileAuditDevice } from "../audit/file.js";
import { GenerateRoot } from "./generate-root.js";
import { Rekey } from "./rekey.js";
import os from "node:os";

/** sys/host-info's shape (gopsutil's field names, which the vault CLI prints). */
function hostInfo(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    timestamp: new Date().toISOString(),
    cpu: cpus.map((c, i) => ({ cpu: i, modelName: c.model, mhz: c.speed, cores: 1 })),
    cpu_times: cpus.map((c, i) => ({
      cpu: `cpu${i}`,
      user: c.times.user / 1000,
      system: c.times.sys / 1000,
      idle: c.times.idle / 1000,
      nice: c.times.nice / 1000,
      irq: c.times.irq / 1000,
    })),
    host: {
      hostname: os.hostname(),
      uptime: Math.floor(os.uptime()),
      os: os.platform(),
      platform: os.type(),
      kernelVersion: os.release(),
      kernelArch: os.arch(),
    },
    memory: { total: os.totalmem(), available: os.freemem(), free: os.freemem(), used: os.totalmem() - os.freemem() },
  };
}

const ACTIVE_SINCE = new WeakMap<CoreView, string>();

/** Vault-shaped refusals for what this runtime deliberately does not implement (never a weaker answer). */
const NOT_LEASED =
  "leases are not implemented by this runtime: credentials it issues carry no lease (lease_id is empty) and are not revoked by lease; for tokens use auth/token/lookup, renew and revoke";
const NO_WRAPPING =
  "response wrapping is not supported by this runtime (sys/wrapping/*, X-Vault-Wrap-TTL): no wrapping token exists here";

const RESERVED_SECRET = ["sys/", "auth/", "cubbyhole/", "identity/"];

/** An integer field of a raw sys/ body (JSON number or numeric string); anything else is the caller's error. */
function toInt(v: unknown, field = "peer_threshold"): number {
  const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n)) throw new LogicalError(400, `${field}: must be an integer`);
  return n;
}

function str(d: Record<string, unknown>, k: string): string | undefined {
  const v = d[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new LogicalError(400, `${k}: must be a string`);
  return v;
}

const MOUNT_PATH: FieldSchema = { type: "string", description: "mount path" };
const POLICY_FIELDS: FieldSchemas = {
  name: { type: "string", description: "policy name" },
  policy: { type: "string", description: "HCL (or base64 of it)" },
  rules: { type: "string", description: "legacy name of policy" },
};

/** Policy paths: the list (no name) and one policy, every operation handled by the same function. */
function policyOps(fn: PathHandler): PathSpec["operations"] {
  return { list: fn, read: fn, update: fn, patch: fn, delete: fn };
}

export class SystemBackend implements LogicalBackend, TableBackend {
  readonly type = "system";
  constructor(private readonly core: CoreView) {}

  /** Paths any valid token may call (they answer only about the caller itself). */
  static selfAuthorized(rel: string): boolean {
    return rel.startsWith("internal/ui/mounts/") || rel === "capabilities-self" || rel === "internal/ui/resultant-acl";
  }

  async handleRaw(
    path: string,
    method: string,
    query: Record<string, string>,
    data: Record<string, unknown>,
  ): Promise<RawResponse> {
    const c = this.core;
    const initialized = await c.initialized();
    switch (path) {
      case "sys/health": {
        if (method !== "GET" && method !== "HEAD") return { status: 405, body: { errors: ["unsupported operation"] } };
        const code = (name: string, dflt: number) =>
          query[name] && /^\d{3}$/.test(query[name]) ? Number(query[name]) : dflt;
        const status = !initialized
          ? code("uninitcode", 501)
          : c.sealed
            ? code("sealedcode", 503)
            : code("activecode", 200);
        const body = {
          initialized,
          sealed: c.sealed,
          standby: false,
          performance_standby: false,
          replication_performance_mode: "disabled",
          replication_dr_mode: "disabled",
          server_time_utc: Math.floor(Date.now() / 1000),
          version: c.sealStatus().version,
          cluster_name: c.clusterName,
          cluster_id: c.clusterId,
        };
        return { status, body: method === "HEAD" ? undefined : body };
      }
      case "sys/seal-status":
        return { status: 200, body: c.sealStatus() };
      case "sys/leader":
        return {
          status: 200,
          body: {
            ha_enabled: false,
            is_self: true,
            // RFC 3339 (the vault CLI parses it): since when this node serves; Go's zero time while sealed.
            active_time: c.sealed ? (ACTIVE_SINCE.delete(c), "0001-01-01T00:00:00Z") : this.activeSince(),
            leader_address: c.opts.apiAddr ?? "",
            leader_cluster_address: "",
            performance_standby: false,
          },
        };
      case "sys/init": {
        if (method === "GET") return { status: 200, body: { initialized } };
        if (method !== "POST" && method !== "PUT") return { status: 405, body: { errors: ["unsupported operation"] } };
        if (data.pgp_keys || data.root_token_pgp_key)
          throw new LogicalError(400, "pgp_keys: PGP-encrypted key shares are not supported");
        const n = Number(data.secret_shares ?? 5),
          t = Number(data.secret_threshold ?? 3);
        const peer = data.peer_threshold;
        const r = await c.initialize(n, t, peer === undefined || peer === null ? {} : { peerThreshold: toInt(peer) });
        return {
          status: 200,
          body: { keys: r.keys, keys_base64: r.keys_base64, root_token: r.root_token, ...r.extra },
        };
      }
      case "sys/unseal": {
        if (method !== "POST" && method !== "PUT") return { status: 405, body: { errors: ["unsupported operation"] } };
        if (data.reset === true) await c.resetUnseal();
        else {
          const key = str(data, "key");
          if (!key) throw new LogicalError(400, "key: required (or reset=true)");
          await c.submitUnsealKey(key);
        }
        return { status: 200, body: c.sealStatus() };
      }
      case "sys/generate-root/attempt":
      case "sys/generate-root/update":
        return this.generateRoot(path, method, data);
      case "sys/rekey/init":
      case "sys/rekey/update":
      case "sys/rekey/verify":
        return this.rekey(path, method, data);
      case "sys/rekey/backup":
        return this.rekeyUnsupported(
          "rekey backups are not supported by this runtime (sys/rekey/init refuses backup and pgp_keys): no backup exists",
        );
      case "sys/rekey-recovery-key/init":
      case "sys/rekey-recovery-key/update":
      case "sys/rekey-recovery-key/verify":
      case "sys/rekey-recovery-key/backup":
        // Vault's answer for a seal without recovery keys: here the operators' shares are shares of the barrier's
        // unseal key itself (auto-unseal wraps that same key), so the target is sys/rekey.
        return this.rekeyUnsupported(
          "recovery rekeying not supported: this runtime has no recovery key; the operators' shares are the unseal key's, rekey them with sys/rekey (vault operator rekey without -target=recovery)",
        );
    }
    return { status: 404, body: { errors: [] } };
  }

  /** sys/generate-root/*: no token (the unseal key shares are the authority), only while unsealed. */
  private async generateRoot(path: string, method: string, data: Record<string, unknown>): Promise<RawResponse> {
    if (!(await this.core.initialized())) return { status: 400, body: { errors: ["Vault is not initialized"] } };
    if (this.core.sealed) return { status: 503, body: { errors: ["Vault is sealed"] } };
    await this.core.refreshSealConfig(); // another replica may have rekeyed
    const g = new GenerateRoot(this.core);
    const put = method === "PUT" || method === "POST";
    if (path === "sys/generate-root/update") {
      if (!put) return { status: 405, body: { errors: ["unsupported operation"] } };
      return { status: 200, body: await g.update(data) };
    }
    if (method === "GET") return { status: 200, body: await g.status() };
    if (put) return { status: 200, body: await g.start(data) };
    if (method === "DELETE") {
      await g.cancel();
      return { status: 204 };
    }
    return { status: 405, body: { errors: ["unsupported operation"] } };
  }

  private async rekeyUnsupported(message: string): Promise<RawResponse> {
    if (!(await this.core.initialized())) return { status: 400, body: { errors: ["Vault is not initialized"] } };
    return { status: 400, body: { errors: [message] } };
  }

  /**
   * sys/rekey/*: no token (the unseal key shares are the authority), only while unsealed. The seal config is
   * re-read first: another replica on the same storage may have rekeyed (other share count and threshold).
   */
  private async rekey(path: string, method: string, data: Record<string, unknown>): Promise<RawResponse> {
    if (!(await this.core.initialized())) return { status: 400, body: { errors: ["Vault is not initialized"] } };
    if (this.core.sealed) return { status: 503, body: { errors: ["Vault is sealed"] } };
    await this.core.refreshSealConfig();
    const r = new Rekey(this.core);
    const put = method === "PUT" || method === "POST";
    if (path === "sys/rekey/update") {
      if (!put) return { status: 405, body: { errors: ["unsupported operation"] } };
      return { status: 200, body: await r.update(data) };
    }
    if (path === "sys/rekey/verify") {
      // Vault's sys/rekey/verify: GET the round, PUT a new share, DELETE restarts the round (new nonce).
      if (method === "GET") return { status: 200, body: await r.verifyStatus() };
      if (put) return { status: 200, body: await r.verify(data) };
      if (method === "DELETE") return { status: 200, body: await r.verifyRestart() };
      return { status: 405, body: { errors: ["unsupported operation"] } };
    }
    if (method === "GET") return { status: 200, body: await r.status() };
    if (put) return { status: 200, body: await r.start(data) };
    if (method === "DELETE") {
      await r.cancel(data);
      return { status: 204 };
    }
    return { status: 405, body: { errors: ["unsupported operation"] } };
  }

  /** When this node became active (first asked after unsealing), as Vault reports it in sys/leader. */
  private activeSince(): string {
    let t = ACTIVE_SINCE.get(this.core);
    if (!t) ACTIVE_SINCE.set(this.core, (t = new Date().toISOString()));
    return t;
  }

  readonly router = new PathRouter([
    {
      pattern: "seal",
      description: "seal the runtime (every worker)",
      operations: {
        update: async () => {
          await this.core.sealByRequest();
          return {};
        },
      },
    },
    {
      pattern: "rotate",
      description: "add a new barrier key",
      operations: {
        update: async () => {
          await this.core.rotateKeyring();
          return {};
        },
      },
    },
    {
      pattern: "key-status",
      description: "the barrier keyring's current term",
      operations: { read: async () => ({ data: this.core.barrier.keyStatus() }) },
    },
    ...this.mountPaths("mounts", "secret"),
    ...this.mountPaths("auth", "auth"),
    {
      pattern: "policies/acl(?:/(?<name>.+))?",
      description: "ACL policies (HCL)",
      fields: POLICY_FIELDS,
      operations: policyOps((req, f) => this.policies(withFields(req, f), f.string("name") ?? "", false)),
    },
    {
      pattern: "policy(?:/(?<name>.+))?",
      description: "ACL policies, legacy shape (rules)",
      fields: POLICY_FIELDS,
      operations: policyOps((req, f) => this.policies(withFields(req, f), f.string("name") ?? "", true)),
    },
    {
      pattern: "internal/ui/mounts(?:/(?<path>.*))?",
      description: "the vault CLI's KV preflight: the mount serving a path, if the caller may use it",
      fields: { path: { type: "string", description: "a path under the mount" } },
      operations: { read: (req, f) => this.uiMount(req, f.string("path") ?? "") },
    },
    {
      pattern: "capabilities-self",
      description: "the caller's capabilities on paths",
      fields: {
        paths: { type: "any", description: "list of paths" },
        path: { type: "any", description: "one path (legacy)" },
      },
      operations: { update: (req, f) => this.capabilitiesSelf(req, f) },
    },
    {
      pattern: "capabilities",
      description: "another token's capabilities on paths (vault token capabilities TOKEN PATH)",
      fields: {
        token: { type: "string", description: "the token to check" },
        paths: { type: "any", description: "list of paths" },
        path: { type: "any", description: "one path (legacy)" },
      },
      operations: { update: (req, f) => this.capabilitiesOf(req, f, "token") },
    },
    {
      pattern: "capabilities-accessor",
      description: "the capabilities on paths of the token with this accessor",
      fields: {
        accessor: { type: "string", description: "the token's accessor" },
        paths: { type: "any", description: "list of paths" },
        path: { type: "any", description: "one path (legacy)" },
      },
      operations: { update: (req, f) => this.capabilitiesOf(req, f, "accessor") },
    },
    {
      pattern: "host-info",
      description: "the host the runtime runs on (CPU, memory, OS), as Vault's sys/host-info",
      operations: { read: async () => ({ data: hostInfo() }) },
    },
    {
      pattern: "remount",
      description: "move a secrets engine or auth method to another path (vault secrets move)",
      fields: {
        from: { type: "string", description: "current mount path" },
        to: { type: "string", description: "new mount path" },
      },
      operations: { update: (req, f) => this.remount(f.string("from"), f.string("to")) },
    },
    {
      pattern: "remount/status/(?<id>.+)",
      description: "a mount move's status (moves finish before sys/remount answers)",
      fields: { id: { type: "string", description: "migration id" } },
      operations: {
        read: async (_req, f) => {
          const m = this.core.mountEntries().find((e) => e.uuid === f.string("id"));
          if (!m) throw new LogicalError(400, "id: no such migration");
          return { data: { migration_id: m.uuid, migration_info: { target_mount: m.path, status: "success" } } };
        },
      },
    },
    {
      pattern:
        "(?:leases/(?:lookup|renew|revoke|revoke-prefix|revoke-force|tidy)|renew|revoke|revoke-prefix|revoke-force)(?:/.*)?",
      description: "leases: not implemented (a clear refusal)",
      fields: { lease_id: { type: "string", description: "lease id" }, increment: { type: "any", description: "" } },
      operations: {
        read: async () => {
          throw new LogicalError(400, NOT_LEASED);
        },
        update: async () => {
          throw new LogicalError(400, NOT_LEASED);
        },
        list: async () => {
          throw new LogicalError(400, NOT_LEASED);
        },
      },
    },
    {
      pattern: "wrapping/(?:wrap|unwrap|lookup|rewrap)",
      description: "response wrapping: not implemented (a clear refusal)",
      fields: { token: { type: "string", description: "wrapping token" } },
      operations: {
        read: async () => {
          throw new LogicalError(400, NO_WRAPPING);
        },
        update: async () => {
          throw new LogicalError(400, NO_WRAPPING);
        },
      },
    },
    {
      pattern: "audit",
      description: "audit devices",
      operations: { read: (req) => this.auditDevices(req, "") },
    },
    {
      pattern: `audit/${rest("path")}`,
      description: "enable or disable a file audit device",
      fields: {
        path: { type: "string", description: "device path" },
        type: { type: "string", description: 'only "file"' },
        description: { type: "string", description: "description" },
        options: { type: "any", description: "file_path (absolute)" },
      },
      operations: {
        update: (req, f) => this.auditDevices(withFields(req, f), f.string("path")!),
        delete: (req, f) => this.auditDevices(req, f.string("path")!),
      },
    },
    {
      pattern: "audit-hash(?:/(?<path>.+))?",
      description: "the audit log's HMAC of a value (one key for every device)",
      fields: {
        path: { type: "string", description: "audit device path" },
        input: { type: "string", description: "value to hash" },
      },
      operations: {
        update: async (_req, f) => {
          const input = f.string("input");
          if (input === undefined) throw new LogicalError(400, "input: required");
          return { data: { hash: this.core.audit.hash(input) } };
        },
      },
    },
  ]);

  handle(req: LogicalRequest): Promise<LogicalResponse | undefined> {
    return this.router.handle(req);
  }

  /** sys/mounts or sys/auth: the table, one mount, and its tune endpoint. */
  private mountPaths(base: string, kind: "secret" | "auth"): PathSpec[] {
    return [
      {
        pattern: base,
        description: `the ${kind === "auth" ? "auth method" : "secrets engine"} mount table`,
        operations: { read: (req) => this.mounts(req, kind, "") },
      },
      {
        pattern: `${base}/(?<path>.+)/tune`,
        description: "a mount's lease TTLs and description",
        fields: {
          path: MOUNT_PATH,
          description: { type: "string", description: "description" },
          default_lease_ttl: { type: "duration", description: "default lease TTL" },
          max_lease_ttl: { type: "duration", description: "maximum lease TTL" },
        },
        // The vault CLI's `auth tune` uses sys/mounts/auth/<path>/tune (Vault serves both spellings).
        operations: {
          read: (req, f) => this.tune(req, kind, f.string("path")!),
          update: (req, f) => this.tune(withFields(req, f), kind, f.string("path")!),
        },
      },
      {
        pattern: `${base}/${rest("path")}`,
        description: "mount, read or unmount an engine",
        fields: {
          path: MOUNT_PATH,
          type: { type: "string", description: "engine type" },
          description: { type: "string", description: "description" },
          options: { type: "any", description: "engine options (kv: version)" },
          local: { type: "any", description: "replication-local (accepted, no effect)" },
          config: { type: "any", description: "default_lease_ttl, max_lease_ttl" },
        },
        operations: {
          read: (req, f) => this.mounts(req, kind, f.string("path")!),
          delete: (req, f) => this.mounts(req, kind, f.string("path")!),
          update: (req, f) => this.mounts(withFields(req, f), kind, f.string("path")!),
        },
      },
    ];
  }

  private tune(req: LogicalRequest, kind: "secret" | "auth", path: string): Promise<LogicalResponse | undefined> {
    if (kind === "secret" && path.startsWith("auth/")) return this.mounts(req, "auth", `${path.slice(5)}/tune`);
    return this.mounts(req, kind, `${path}/tune`);
  }

  /** sys/capabilities (by token) and sys/capabilities-accessor: need the caller's ACL to allow the path. */
  private async capabilitiesOf(req: LogicalRequest, f: FieldData, by: "token" | "accessor"): Promise<LogicalResponse> {
    const tokens = this.core.tokens;
    const key = f.string(by);
    if (!key) throw new LogicalError(400, `${by}: required`);
    const entry = tokens && (by === "token" ? await tokens.lookup(key) : await tokens.lookupAccessor(key));
    if (!entry) throw new LogicalError(400, by === "token" ? "invalid token" : "invalid accessor");
    return this.capabilitiesSelf({ ...req, auth: { ...req.auth, policies: entry.policies } } as LogicalRequest, f);
  }

  /** sys/remount: the mount entry keeps its uuid (so its storage and data) under the new path. */
  private async remount(from: string | undefined, to: string | undefined): Promise<LogicalResponse> {
    const c = this.core;
    const src = from && normalizeMountPath(from);
    const dst = to && normalizeMountPath(to);
    if (!src) throw new LogicalError(400, "from: a mount path is required");
    if (!dst) throw new LogicalError(400, "to: a mount path is required");
    const kind: "secret" | "auth" = src.startsWith("auth/") ? "auth" : "secret";
    if ((dst.startsWith("auth/") ? "auth" : "secret") !== kind)
      throw new LogicalError(400, "to: cannot move between secrets engines and auth methods");
    const existing = c.mountEntries().find((m) => m.path === src && m.kind === kind);
    if (!existing) throw new LogicalError(400, `no mount at '${src}'`);
    if (existing.type === "system" || existing.type === "token" || existing.type === "cubbyhole")
      throw new LogicalError(400, `cannot remount '${src}'`);
    if (kind === "secret" && RESERVED_SECRET.some((r) => dst.startsWith(r)))
      throw new LogicalError(400, `to: '${dst}' is reserved`);
    const conflict = c.mountEntries().find((m) => m !== existing && (m.path.startsWith(dst) || dst.startsWith(m.path)));
    if (conflict) throw new LogicalError(400, `path is already in use at ${conflict.path}`);
    await c.writeTable(kind, (t) => t.map((m) => (m.uuid === existing.uuid ? { ...m, path: dst } : m)));
    // Vault moves asynchronously and returns a migration id; here the move is done when this answers.
    return { data: { migration_id: existing.uuid } };
  }

  private async capabilitiesSelf(req: LogicalRequest, f: FieldData): Promise<LogicalResponse> {
    const raw = f.get("paths");
    const one = f.get("path");
    const paths = Array.isArray(raw)
      ? (raw as string[])
      : typeof raw === "string"
        ? raw.split(",")
        : typeof one === "string"
          ? [one]
          : undefined;
    if (!paths) throw new LogicalError(400, "paths: required");
    const acl = await this.core.aclFor(req.auth?.policies ?? []);
    const data: Record<string, unknown> = {};
    for (const path of paths) {
      const caps = [...acl.capabilities(path.replace(/^\//, ""))];
      data[path] = caps.length ? (acl.root ? ["root"] : caps) : ["deny"];
    }
    if (paths.length === 1) data.capabilities = data[paths[0]];
    return { data };
  }

  private async mounts(
    req: LogicalRequest,
    kind: "secret" | "auth",
    rest: string,
  ): Promise<LogicalResponse | undefined> {
    const c = this.core,
      op = req.operation;
    const prefix = kind === "auth" ? "auth/" : "";
    if (!rest) {
      if (op !== "read") return undefined;
      const data: Record<string, unknown> = {};
      for (const m of c.mountEntries().filter((m) => m.kind === kind)) data[m.path.slice(prefix.length)] = mountView(m);
      return { data };
    }
    const tune = rest.endsWith("/tune");
    const rel = normalizeMountPath(tune ? rest.slice(0, -5) : rest);
    if (!rel) throw new LogicalError(400, "path: invalid mount path");
    const full = prefix + rel;
    const existing = c.mountEntries().find((m) => m.path === full && m.kind === kind);
    if (tune) {
      if (!existing) throw new LogicalError(400, `no mount at '${rel}'`);
      if (op === "read")
        return {
          data: {
            default_lease_ttl: existing.config.default_lease_ttl || c.defaultTtl,
            max_lease_ttl: existing.config.max_lease_ttl || c.maxTtl,
            description: existing.description,
            options: existing.options,
            force_no_cache: false,
          },
        };
      await c.writeTable(kind, (t) =>
        t.map((m) =>
          m.uuid !== existing.uuid
            ? m
            : {
                ...m,
                description: str(req.data, "description") ?? m.description,
                config: {
                  default_lease_ttl: parseDuration(
                    "default_lease_ttl",
                    req.data.default_lease_ttl,
                    m.config.default_lease_ttl,
                  ),
                  max_lease_ttl: parseDuration("max_lease_ttl", req.data.max_lease_ttl, m.config.max_lease_ttl),
                },
              },
        ),
      );
      return {};
    }
    if (op === "read") {
      if (!existing) throw new LogicalError(400, `no mount at '${rel}'`);
      return { data: mountView(existing) };
    }
    if (op === "delete") {
      if (!existing) return {};
      if (existing.type === "system" || (kind === "auth" && existing.type === "token"))
        throw new LogicalError(400, `cannot unmount '${rel}'`);
      await c.writeTable(kind, (t) => t.filter((m) => m.uuid !== existing.uuid));
      return {};
    }
    if (op !== "create" && op !== "update") return undefined;
    let type = str(req.data, "type");
    if (!type) throw new LogicalError(400, "type: required");
    const options: Record<string, string> = {};
    const rawOpts = req.data.options;
    if (rawOpts && typeof rawOpts === "object") for (const [k, v] of Object.entries(rawOpts)) options[k] = String(v);
    if (type === "kv-v2") {
      type = "kv";
      options.version = "2";
    }
    if (type === "kv") {
      if (options.version && options.version !== "2")
        throw new LogicalError(400, "options.version: only KV version 2 is supported");
      options.version = "2";
    }
    if (kind === "secret" && RESERVED_SECRET.some((r) => full.startsWith(r)))
      throw new LogicalError(400, `path: '${rel}' is reserved`);
    const registry = kind === "auth" ? c.registry.auth : c.registry.secret;
    if (!registry.has(type) && !(kind === "auth" && type === "token"))
      throw new LogicalError(
        400,
        `type: unknown ${kind === "auth" ? "auth method" : "secrets engine"} type '${type}' (available: ${[...registry.keys()].sort().join(", ")})`,
      );
    const conflict = c.mountEntries().find((m) => m.path.startsWith(full) || full.startsWith(m.path));
    if (conflict) throw new LogicalError(400, `path is already in use at ${conflict.path}`);
    const cfg = (req.data.config && typeof req.data.config === "object" ? req.data.config : {}) as Record<
      string,
      unknown
    >;
    const entry: MountEntry = newMount(kind, full, type, {
      description: str(req.data, "description") ?? "",
      options,
      local: req.data.local === true,
      config: {
        default_lease_ttl: parseDuration("config.default_lease_ttl", cfg.default_lease_ttl),
        max_lease_ttl: parseDuration("config.max_lease_ttl", cfg.max_lease_ttl),
      },
    });
    await c.writeTable(kind, (t) => [...t, entry]);
    return {};
  }

  private async uiMount(req: LogicalRequest, rawPath: string): Promise<LogicalResponse> {
    const c = this.core;
    const path = rawPath.replace(/^\/+/, "");
    const m = c.resolveMount(path.endsWith("/") ? path : path + "/") ?? c.resolveMount(path);
    const acl = await c.aclFor(req.auth?.policies ?? []);
    if (!m || !acl.anyUnder(m.entry.path))
      throw new LogicalError(
        403,
        `preflight capability check returned 403, please ensure client's policies grant access to path "${path}/"`,
      );
    const e: MountEntry = m.entry;
    return { data: { ...mountView(e), path: e.path.replace(/^auth\//, "") } };
  }

  private async policies(req: LogicalRequest, name: string, legacy: boolean): Promise<LogicalResponse | undefined> {
    const c = this.core,
      op = req.operation;
    if (!name) {
      if (op !== "list" && op !== "read") return undefined;
      const keys = [...(await c.barrier.list("sys/policy/")), "root"].sort();
      return { data: legacy ? { policies: keys, keys } : { keys, policies: keys } };
    }
    if (!validPolicyName(name)) throw new LogicalError(400, "name: invalid policy name");
    const key = `sys/policy/${name}`;
    if (op === "read") {
      if (name === "root") return { data: { name: "root", rules: "", policy: "" } };
      const raw = await c.barrier.get(key);
      if (!raw) return { status: 404 };
      const p = JSON.parse(raw.toString("utf8")) as { name: string; policy: string; version: number; modified: string };
      return {
        data: legacy
          ? { name, rules: p.policy }
          : { name, policy: p.policy, version: p.version, modified: p.modified, cas_required: false },
      };
    }
    if (name === "root") throw new LogicalError(400, "cannot update the root policy");
    if (op === "delete") {
      if (name === "default") throw new LogicalError(400, "cannot delete the default policy");
      await c.barrier.delete(key);
      await c.policyChanged(name);
      return {};
    }
    if (op !== "create" && op !== "update" && op !== "patch") return undefined;
    let text = str(req.data, legacy ? "rules" : "policy") ?? str(req.data, "policy");
    if (text === undefined) throw new LogicalError(400, "policy: required");
    if (!/[{"]/.test(text) && /^[A-Za-z0-9+/=\s]+$/.test(text)) text = Buffer.from(text, "base64").toString("utf8");
    try {
      parsePolicy(name, text);
    } catch (e) {
      if (e instanceof PolicyParseError) throw new LogicalError(400, `failed to parse policy: ${e.message}`);
      throw e;
    }
    await c.barrier.transaction(async (tx) => {
      const old = await tx.get(key);
      const version = old ? (JSON.parse(old.toString("utf8")) as { version: number }).version + 1 : 1;
      await tx.put(
        key,
        Buffer.from(JSON.stringify({ name, policy: text, version, modified: new Date().toISOString() })),
      );
    });
    await c.policyChanged(name);
    return {};
  }

  private async auditDevices(req: LogicalRequest, rest: string): Promise<LogicalResponse | undefined> {
    const c = this.core,
      op = req.operation;
    const table = await c.auditTable();
    if (!rest) {
      if (op !== "read") return undefined;
      const data: Record<string, unknown> = {};
      for (const a of table)
        data[a.path] = { type: a.type, description: a.description, options: a.options, local: false, path: a.path };
      return { data };
    }
    const path = normalizeMountPath(rest);
    if (!path) throw new LogicalError(400, "path: invalid audit device path");
    if (op === "delete") {
      c.audit.remove(path);
      await c.writeAuditTable(table.filter((a) => a.path !== path));
      return {};
    }
    if (op !== "create" && op !== "update") return undefined;
    if (str(req.data, "type") !== "file") throw new LogicalError(400, "type: only 'file' audit devices are supported");
    const opts = (req.data.options ?? {}) as Record<string, unknown>;
    const filePath =
      typeof opts.file_path === "string" ? opts.file_path : typeof opts.path === "string" ? opts.path : undefined;
    if (!filePath || !filePath.startsWith("/"))
      throw new LogicalError(400, "options.file_path: an absolute file path is required");
    if (table.some((a) => a.path === path)) throw new LogicalError(400, `path already in use: ${path}`);
    let device: FileAuditDevice;
    try {
      device = new FileAuditDevice(filePath);
    } catch (e) {
      throw new LogicalError(400, `options.file_path: cannot open (${(e as NodeJS.ErrnoException).code ?? "error"})`);
    }
    c.audit.add(path, device);
    await c.writeAuditTable([
      ...table,
      { path, type: "file", description: str(req.data, "description") ?? "", options: { file_path: filePath } },
    ]);
    return {};
  }
}

export type { Capability };
