// KV version 2 as a LogicalBackend: versioned secrets with check-and-set, soft delete, undelete,
// destroy and per-key metadata, with Vault's paths and response shapes. Layout in the mount's
// storage: `config`, `meta/<path>` (listable by path), `ver/<sha256(path)>/<n>` (one value per version).
import { createHash } from "node:crypto";
import { LogicalError, type LogicalBackend, type LogicalRequest, type LogicalResponse } from "../backend.js";
import type { StorageWriter } from "../../storage/types.js";
import { FieldData, PathRouter, rest, type FieldSchema, type FieldSchemas, type TableBackend } from "../framework.js";

interface VersionMeta {
  created_time: string;
  deletion_time: string;
  destroyed: boolean;
}
interface KeyMeta {
  created_time: string;
  updated_time: string;
  current_version: number;
  oldest_version: number;
  max_versions: number;
  cas_required: boolean;
  delete_version_after: number;
  custom_metadata: Record<string, string> | null;
  versions: Record<string, VersionMeta>;
}
interface KvConfig {
  max_versions: number;
  cas_required: boolean;
  delete_version_after: number;
}

const DEFAULT_MAX_VERSIONS = 10;
const iso = () => new Date().toISOString();
const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const parse = <T>(b: Buffer | undefined): T | undefined => (b ? (JSON.parse(b.toString("utf8")) as T) : undefined);
/** sha256(path) per secret path, memoized: every read needs it and the hash is pure (bounded map). */
const pathHashes = new Map<string, string>();
function verKey(path: string, n: number): string {
  let h = pathHashes.get(path);
  if (h === undefined) {
    h = createHash("sha256").update(path).digest("hex");
    if (pathHashes.size >= 10_000) pathHashes.clear();
    pathHashes.set(path, h);
  }
  return `ver/${h}/${n}`;
}

export function formatDuration(sec: number): string {
  if (!sec) return "0s";
  const h = Math.floor(sec / 3600),
    m = Math.floor((sec % 3600) / 60),
    s = sec % 60;
  return `${h ? h + "h" : ""}${h || m ? m + "m" : ""}${s}s`;
}

function secretPath(rest: string): string {
  const p = rest.replace(/^\/+/, "");
  if (p.split("/").some((s) => s === "." || s === ".."))
    throw new LogicalError(400, "path: '.' and '..' segments are not allowed");
  return p;
}

function versionsField(v: unknown): number[] {
  const list = Array.isArray(v) ? v : typeof v === "string" ? v.split(",") : typeof v === "number" ? [v] : undefined;
  const nums = list?.map((x) => Number(x));
  if (!nums || nums.length === 0 || nums.some((n) => !Number.isInteger(n) || n <= 0))
    throw new LogicalError(400, "versions: a non-empty list of positive version numbers is required");
  return nums;
}

/** max_versions, cas_required, delete_version_after: set on the mount's config or one secret's metadata. */
function applySettings(target: Pick<KvConfig, "max_versions" | "cas_required" | "delete_version_after">, f: FieldData) {
  const max = f.int("max_versions");
  if (max !== undefined) {
    if (max < 0) throw new LogicalError(400, "max_versions: must be a non-negative integer");
    target.max_versions = max;
  }
  const cas = f.bool("cas_required");
  if (cas !== undefined) target.cas_required = cas;
  const after = f.duration("delete_version_after");
  if (after !== undefined) target.delete_version_after = after;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function mergePatch(target: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...target };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else if (isObject(v) && isObject(out[k])) out[k] = mergePatch(out[k] as Record<string, unknown>, v);
    else out[k] = v;
  }
  return out;
}

function subkeys(v: unknown, depth: number, level = 1): unknown {
  if (!isObject(v)) return null;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v))
    out[k] = isObject(x) && (depth === 0 || level < depth) ? subkeys(x, depth, level + 1) : null;
  return out;
}

const PATH_FIELD: FieldSchema = { type: "string", description: "the secret's path" };
const SETTINGS: FieldSchemas = {
  max_versions: { type: "int", description: "versions kept (0: the mount's default, 10)" },
  cas_required: { type: "bool", description: "writes must carry options.cas" },
  delete_version_after: { type: "duration", description: "versions expire this long after being written" },
};

const missingPath = async (): Promise<never> => {
  throw new LogicalError(400, "missing path");
};

/** Vault's existence check: writing a new secret (or its metadata) needs `create`. */
const secretExists = async (req: LogicalRequest, f: FieldData) =>
  (await req.storage.get(`meta/${secretPath(f.string("path")!)}`)) !== undefined;

export class KvV2Backend implements LogicalBackend, TableBackend {
  readonly type = "kv";

  private cachedConfig: { at: number; cfg: KvConfig } | undefined;
  /** Parsed key metadata for reads, reused while the stored bytes are identical (never mutated). */
  private readonly metaCache = new Map<string, { raw: Buffer; meta: KeyMeta }>();

  private async readKeyMeta(storage: StorageWriter, path: string): Promise<KeyMeta | undefined> {
    const raw = await storage.get(`meta/${path}`);
    if (!raw) return undefined;
    const hit = this.metaCache.get(path);
    if (hit && hit.raw.equals(raw)) return hit.meta;
    const meta = JSON.parse(raw.toString("utf8")) as KeyMeta;
    if (this.metaCache.size >= 10_000) this.metaCache.clear();
    this.metaCache.set(path, { raw, meta });
    return meta;
  }

  /** Config for the read path: at most 1 s stale (it only decides delete_version_after expiry). */
  private async readConfig(s: StorageWriter): Promise<KvConfig> {
    if (this.cachedConfig && Date.now() - this.cachedConfig.at < 1000) return this.cachedConfig.cfg;
    const cfg = await this.config(s);
    this.cachedConfig = { at: Date.now(), cfg };
    return cfg;
  }

  private async config(s: StorageWriter): Promise<KvConfig> {
    return parse<KvConfig>(await s.get("config")) ?? { max_versions: 0, cas_required: false, delete_version_after: 0 };
  }

  readonly router = new PathRouter([
    {
      pattern: "config",
      description: "mount-wide defaults: max_versions, cas_required, delete_version_after",
      fields: SETTINGS,
      operations: {
        read: async (req) => {
          const c = await this.config(req.storage);
          return { data: { ...c, delete_version_after: formatDuration(c.delete_version_after) } };
        },
        update: (req, f) => this.writeConfig(req, f),
      },
    },
    {
      pattern: "(?:data|metadata|delete|undelete|destroy)",
      description: "a versioned-secret path without the secret's path",
      operations: {
        read: missingPath,
        update: missingPath,
        patch: missingPath,
        delete: missingPath,
        list: (req) => (req.path === "metadata" ? this.listKeys(req, "") : Promise.resolve(undefined)),
      },
    },
    {
      pattern: `data/${rest("path")}`,
      description: "a secret's versions: read (?version=N), write (options.cas), patch, soft-delete the latest",
      fields: {
        path: PATH_FIELD,
        data: { type: "any", description: "the secret's key/value pairs (an object)" },
        options: { type: "any", description: "write options: cas (integer)" },
        version: { type: "int", description: "version to read (0 or absent: the latest)" },
      },
      existenceCheck: secretExists,
      operations: {
        read: (req, f) => this.readData(req, secretPath(f.string("path")!), f.int("version")),
        update: (req, f) => this.writeData(req, secretPath(f.string("path")!), false, f),
        patch: (req, f) => this.writeData(req, secretPath(f.string("path")!), true, f),
        delete: (req, f) => this.deleteLatest(req, secretPath(f.string("path")!)),
      },
    },
    {
      pattern: `metadata/${rest("path")}`,
      description: "a secret's metadata: list keys under it, read, write, patch, delete all versions",
      fields: {
        path: PATH_FIELD,
        ...SETTINGS,
        custom_metadata: { type: "any", description: "string map (null clears)" },
      },
      existenceCheck: secretExists,
      operations: {
        list: (req, f) => this.listKeys(req, secretPath(f.string("path")!)),
        read: (req, f) => this.readMeta(req, secretPath(f.string("path")!)),
        update: (req, f) => this.writeMeta(req, secretPath(f.string("path")!), false, f),
        patch: (req, f) => this.writeMeta(req, secretPath(f.string("path")!), true, f),
        delete: (req, f) => this.destroyAll(req, secretPath(f.string("path")!)),
      },
    },
    {
      pattern: `(?<action>delete|undelete|destroy)/${rest("path")}`,
      description: "soft-delete, undelete or destroy listed versions",
      fields: {
        action: { type: "string", description: "delete, undelete or destroy" },
        path: PATH_FIELD,
        versions: { type: "any", description: "version numbers (list, comma-separated string or number)" },
      },
      operations: {
        update: async (req, f) => {
          const action = f.string("action") as "delete" | "undelete" | "destroy";
          return this.versionOp(req, action, secretPath(f.string("path")!), f);
        },
      },
    },
    {
      pattern: `subkeys/${rest("path")}`,
      description: "the secret's key structure without values",
      fields: {
        path: PATH_FIELD,
        depth: { type: "int", default: 0, description: "levels to descend (0: all)" },
        version: { type: "int", description: "version to read" },
      },
      operations: { read: (req, f) => this.readSubkeys(req, secretPath(f.string("path")!), f) },
    },
  ]);

  existenceCheck(req: LogicalRequest): Promise<boolean> {
    return this.router.existenceCheck(req);
  }

  handle(req: LogicalRequest): Promise<LogicalResponse | undefined> {
    return this.router.handle(req);
  }

  private async writeConfig(req: LogicalRequest, f: FieldData): Promise<LogicalResponse> {
    await req.storage.transaction(async (tx) => {
      const c = await this.config(tx);
      applySettings(c, f);
      await tx.put("config", json(c));
    });
    this.cachedConfig = undefined;
    return {};
  }

  private versionView(m: KeyMeta, n: number) {
    const v = m.versions[String(n)];
    return {
      created_time: v.created_time,
      custom_metadata: m.custom_metadata,
      deletion_time: v.deletion_time,
      destroyed: v.destroyed,
      version: n,
    };
  }

  private expired(m: KeyMeta, v: VersionMeta, cfg: KvConfig): boolean {
    const after = m.delete_version_after || cfg.delete_version_after;
    return after > 0 && Date.parse(v.created_time) + after * 1000 <= Date.now();
  }

  private async readData(req: LogicalRequest, path: string, version: number | undefined): Promise<LogicalResponse> {
    const m = await this.readKeyMeta(req.storage, path);
    const n = version ? version : m?.current_version;
    if (!m || !n || !m.versions[String(n)]) return { status: 404 };
    const v = m.versions[String(n)];
    const cfg = await this.readConfig(req.storage);
    const meta = this.versionView(m, n);
    if (v.destroyed || v.deletion_time || this.expired(m, v, cfg)) {
      if (!v.deletion_time && this.expired(m, v, cfg))
        meta.deletion_time = new Date(
          Date.parse(v.created_time) + (m.delete_version_after || cfg.delete_version_after) * 1000,
        ).toISOString();
      return { status: 404, data: { data: null, metadata: meta } };
    }
    const stored = parse<{ data: Record<string, unknown> }>(await req.storage.get(verKey(path, n)));
    if (!stored) return { status: 404 };
    return { data: { data: stored.data, metadata: meta }, secretKeys: ["data"] };
  }

  private async writeData(req: LogicalRequest, path: string, patch: boolean, f: FieldData): Promise<LogicalResponse> {
    const body = f.get("data");
    if (!isObject(body)) throw new LogicalError(400, "no data provided");
    const opt = f.get("options");
    const options = isObject(opt) ? opt : {};
    const casRaw = options.cas;
    if (casRaw !== undefined && !Number.isInteger(Number(casRaw)))
      throw new LogicalError(400, "options.cas: must be an integer");
    return req.storage.transaction(async (tx) => {
      const cfg = await this.config(tx);
      const now = iso();
      const m: KeyMeta = parse<KeyMeta>(await tx.get(`meta/${path}`)) ?? {
        created_time: now,
        updated_time: now,
        current_version: 0,
        oldest_version: 0,
        max_versions: 0,
        cas_required: false,
        delete_version_after: 0,
        custom_metadata: null,
        versions: {},
      };
      if (casRaw === undefined && (cfg.cas_required || m.cas_required) && !patch)
        throw new LogicalError(400, "check-and-set parameter required for this call");
      if (casRaw !== undefined && Number(casRaw) !== m.current_version)
        throw new LogicalError(400, "check-and-set parameter did not match the current version");
      let data = body;
      if (patch) {
        const cur = m.versions[String(m.current_version)];
        const old =
          cur && !cur.deletion_time && !cur.destroyed
            ? parse<{ data: Record<string, unknown> }>(await tx.get(verKey(path, m.current_version)))
            : undefined;
        if (!old) throw new LogicalError(404, "no value found at the current version to patch");
        data = mergePatch(old.data, body);
      }
      const n = m.current_version + 1;
      await tx.put(verKey(path, n), json({ data }));
      m.current_version = n;
      m.updated_time = now;
      if (!m.oldest_version) m.oldest_version = n;
      m.versions[String(n)] = { created_time: now, deletion_time: "", destroyed: false };
      const max = m.max_versions || cfg.max_versions || DEFAULT_MAX_VERSIONS;
      for (const k of Object.keys(m.versions)
        .map(Number)
        .sort((a, b) => a - b)) {
        if (n - k < max) break;
        delete m.versions[String(k)];
        await tx.delete(verKey(path, k));
      }
      m.oldest_version = Math.min(...Object.keys(m.versions).map(Number));
      await tx.put(`meta/${path}`, json(m));
      return { data: this.versionView(m, n) };
    });
  }

  private async deleteLatest(req: LogicalRequest, path: string): Promise<LogicalResponse> {
    await req.storage.transaction(async (tx) => {
      const m = parse<KeyMeta>(await tx.get(`meta/${path}`));
      const v = m?.versions[String(m.current_version)];
      if (!m || !v || v.deletion_time) return;
      v.deletion_time = iso();
      await tx.put(`meta/${path}`, json(m));
    });
    return {};
  }

  private async versionOp(
    req: LogicalRequest,
    op: "delete" | "undelete" | "destroy",
    path: string,
    f: FieldData,
  ): Promise<LogicalResponse> {
    const versions = versionsField(f.get("versions"));
    await req.storage.transaction(async (tx) => {
      const m = parse<KeyMeta>(await tx.get(`meta/${path}`));
      if (!m) return;
      for (const n of versions) {
        const v = m.versions[String(n)];
        if (!v) continue;
        if (op === "delete" && !v.deletion_time && !v.destroyed) v.deletion_time = iso();
        if (op === "undelete" && !v.destroyed) v.deletion_time = "";
        if (op === "destroy" && !v.destroyed) {
          v.destroyed = true;
          await tx.delete(verKey(path, n));
        }
      }
      await tx.put(`meta/${path}`, json(m));
    });
    return {};
  }

  private async listKeys(req: LogicalRequest, prefix: string): Promise<LogicalResponse> {
    const p = prefix === "" || prefix.endsWith("/") ? prefix : prefix + "/";
    const keys = await req.storage.list(`meta/${p}`);
    if (keys.length === 0) return { status: 404 };
    return { data: { keys } };
  }

  private async readMeta(req: LogicalRequest, path: string): Promise<LogicalResponse> {
    const m = parse<KeyMeta>(await req.storage.get(`meta/${path}`));
    if (!m) return { status: 404 };
    return {
      data: {
        cas_required: m.cas_required,
        created_time: m.created_time,
        current_version: m.current_version,
        custom_metadata: m.custom_metadata,
        delete_version_after: formatDuration(m.delete_version_after),
        max_versions: m.max_versions,
        oldest_version: m.oldest_version,
        updated_time: m.updated_time,
        versions: m.versions,
      },
    };
  }

  private async writeMeta(req: LogicalRequest, path: string, patch: boolean, f: FieldData): Promise<LogicalResponse> {
    const custom = f.get("custom_metadata");
    if (
      custom !== undefined &&
      custom !== null &&
      (!isObject(custom) || Object.values(custom).some((v) => typeof v !== "string"))
    )
      throw new LogicalError(400, "custom_metadata: must be a map of strings");
    await req.storage.transaction(async (tx) => {
      const now = iso();
      const existing = parse<KeyMeta>(await tx.get(`meta/${path}`));
      if (!existing && patch) throw new LogicalError(404, "no metadata found to patch");
      const m: KeyMeta = existing ?? {
        created_time: now,
        updated_time: now,
        current_version: 0,
        oldest_version: 0,
        max_versions: 0,
        cas_required: false,
        delete_version_after: 0,
        custom_metadata: null,
        versions: {},
      };
      applySettings(m, f);
      if (custom !== undefined) {
        m.custom_metadata =
          patch && isObject(custom)
            ? (mergePatch(m.custom_metadata ?? {}, custom) as Record<string, string>)
            : ((custom as Record<string, string> | null) ?? null);
      }
      m.updated_time = now;
      await tx.put(`meta/${path}`, json(m));
    });
    return {};
  }

  private async destroyAll(req: LogicalRequest, path: string): Promise<LogicalResponse> {
    await req.storage.transaction(async (tx) => {
      const m = parse<KeyMeta>(await tx.get(`meta/${path}`));
      if (!m) return;
      for (const n of Object.keys(m.versions)) await tx.delete(verKey(path, Number(n)));
      await tx.delete(`meta/${path}`);
    });
    return {};
  }

  private async readSubkeys(req: LogicalRequest, path: string, f: FieldData): Promise<LogicalResponse> {
    const r = await this.readData(req, path, f.int("version"));
    if (r.status === 404 || !r.data) return r;
    const depth = f.int("depth")!;
    const inner = r.data as { data: unknown; metadata: unknown };
    return {
      data: {
        subkeys: subkeys(inner.data, Number.isInteger(depth) && depth > 0 ? depth : 0),
        metadata: inner.metadata,
      },
    };
  }
}
