// auth/token: create (child and orphan), lookup(-self/-accessor), renew(-self), revoke(-self/
// -accessor), with Vault's shapes. Child tokens may only carry a subset of the parent's policies
// unless the parent is root, and are revoked with their parent.
import { LogicalError, type LogicalBackend, type LogicalRequest, type LogicalResponse } from "./backend.js";
import type { CoreView } from "./core-view.js";
import { TokenStore, type TokenEntry } from "./tokens.js";
import { FieldData, PathRouter, type FieldSchema, type FieldSchemas, type TableBackend } from "./framework.js";
import { PermissionDeniedError } from "./errors.js";

/** Key under which the token backend hands a ready auth block to the core (rendered as `auth`). */
export const AUTH_BLOCK = "__auth_block";

const TOKEN_FIELD: FieldSchema = { type: "string", description: "the token" };
const ACCESSOR_FIELD: FieldSchema = { type: "string", description: "the token's accessor" };

const CREATE_FIELDS: FieldSchemas = {
  orphan: { type: "string", description: '"-orphan" for create-orphan' },
  id: { type: "string", description: "token id (root callers only)" },
  policies: { type: "comma-string-slice", description: "a subset of the caller's policies (default: the caller's)" },
  meta: { type: "kv-pairs", description: "token metadata" },
  no_parent: { type: "bool", default: false, description: "root callers: no parent (an orphan)" },
  no_default_policy: { type: "bool", default: false, description: 'do not add "default"' },
  renewable: { type: "bool", default: true, description: "the token may be renewed" },
  ttl: { type: "duration", default: 0, description: "initial TTL" },
  explicit_max_ttl: { type: "duration", default: 0, description: "hard limit on the token's life" },
  display_name: { type: "string", description: "display name (prefixed with token-)" },
  num_uses: { type: "int", default: 0, description: "uses before the token is revoked (0: unlimited)" },
  period: {
    type: "duration",
    default: 0,
    description: "periodic token: every renewal resets the TTL to this (root callers)",
  },
};

export class TokenBackend implements LogicalBackend, TableBackend {
  readonly type = "token";
  constructor(private readonly core: CoreView) {}

  private get store(): TokenStore {
    return this.core.tokens!;
  }

  private async caller(req: LogicalRequest): Promise<TokenEntry> {
    const e = req.auth && (await this.store.lookupAccessor(req.auth.accessor));
    if (!e) throw new PermissionDeniedError();
    return e;
  }

  /**
   * The token the caller presented (X-Vault-Token or Authorization: Bearer), if it is the one whose
   * entry this is: Vault shows `id` to whoever already holds the token, and the vault CLI's
   * `login` stores exactly that value.
   */
  private async presented(req: LogicalRequest, e: TokenEntry): Promise<string | undefined> {
    const h = req.headers;
    const bearer = /^Bearer\s+(\S+)$/i.exec(h.authorization ?? "")?.[1];
    const token = h["x-vault-token"] ?? bearer;
    if (!token) return undefined;
    const found = await this.store.lookup(token);
    return found?.accessor === e.accessor ? token : undefined;
  }

  private lookupData(e: TokenEntry, id = "") {
    const iso = (s: number) => (s ? new Date(s * 1000).toISOString() : null);
    return {
      accessor: e.accessor,
      creation_time: e.creationTime,
      creation_ttl: e.creationTtl,
      display_name: e.displayName,
      entity_id: "",
      expire_time: iso(e.expireTime),
      explicit_max_ttl: e.explicitMaxTtl,
      id,
      identity_policies: null,
      issue_time: iso(e.creationTime),
      meta: Object.keys(e.meta).length ? e.meta : null,
      num_uses: e.numUses,
      orphan: e.orphan,
      path: e.path,
      policies: e.policies,
      renewable: e.renewable,
      ttl: TokenStore.ttlLeft(e),
      type: e.type,
      period: e.period ?? 0,
    };
  }

  private async lookupSelf(req: LogicalRequest): Promise<LogicalResponse> {
    const e = await this.caller(req);
    return { data: this.lookupData(e, await this.presented(req, e)), secretKeys: ["id"] };
  }

  readonly router = new PathRouter([
    {
      pattern: "create(?<orphan>-orphan)?",
      description: "create a child token (create-orphan: without a parent)",
      fields: CREATE_FIELDS,
      operations: { update: (req, f) => this.create(req, f, f.string("orphan") === "-orphan") },
    },
    {
      pattern: "lookup-self",
      description: "the calling token's properties",
      operations: {
        read: (req) => this.lookupSelf(req),
        update: (req) => this.lookupSelf(req),
      },
    },
    {
      pattern: "lookup",
      description: "a token's properties",
      fields: { token: TOKEN_FIELD },
      operations: {
        update: async (_req, f) => {
          const token = f.string("token");
          if (!token) throw new LogicalError(400, "token: required");
          const e = await this.store.lookup(token);
          if (!e) throw new LogicalError(403, "bad token");
          // the caller sent this token in the body, so it holds it already
          return { data: this.lookupData(e, token), secretKeys: ["id"] };
        },
      },
    },
    {
      pattern: "lookup-accessor",
      description: "a token's properties by accessor",
      fields: { accessor: ACCESSOR_FIELD },
      operations: {
        update: async (_req, f) => {
          const accessor = f.string("accessor");
          const e = accessor !== undefined ? await this.store.lookupAccessor(accessor) : undefined;
          if (!e) throw new LogicalError(400, "accessor: invalid accessor");
          return { data: this.lookupData(e) };
        },
      },
    },
    {
      pattern: "renew(?<self>-self)?",
      description: "extend a token's lease (renew-self: the caller's)",
      fields: {
        self: { type: "string", description: '"-self" for renew-self' },
        token: TOKEN_FIELD,
        increment: { type: "duration", default: 0, description: "requested extension" },
      },
      operations: {
        update: async (req, f) => {
          let e: TokenEntry | undefined;
          if (f.string("self")) e = await this.caller(req);
          else {
            const token = f.string("token");
            if (token === undefined) throw new LogicalError(400, "token: required");
            e = await this.store.lookup(token);
            if (!e) throw new LogicalError(400, "token: invalid or expired token");
          }
          if (!e.renewable) throw new LogicalError(400, "lease is not renewable");
          const renewed = await this.store.renew(e, f.duration("increment")!);
          return { status: 200, data: { [AUTH_BLOCK]: { ...this.core.authBlock("", renewed), client_token: "" } } };
        },
      },
    },
    {
      pattern: "tidy",
      description: "remove expired tokens",
      operations: {
        update: async () => {
          const removed = await this.core.tidy();
          return { data: { removed: removed ?? 0, skipped: removed === undefined } };
        },
      },
    },
    {
      pattern: "revoke-self",
      description: "revoke the calling token",
      operations: {
        update: async (req) => {
          await this.store.revoke(await this.caller(req));
          return {};
        },
      },
    },
    {
      pattern: "revoke",
      description: "revoke a token and its children",
      fields: { token: TOKEN_FIELD },
      operations: {
        update: async (_req, f) => {
          const token = f.string("token");
          const e = token !== undefined ? await this.store.lookup(token) : undefined;
          if (e) await this.store.revoke(e);
          return {};
        },
      },
    },
    {
      pattern: "revoke-accessor",
      description: "revoke a token by accessor",
      fields: { accessor: ACCESSOR_FIELD },
      operations: {
        update: async (_req, f) => {
          const accessor = f.string("accessor");
          const e = accessor !== undefined ? await this.store.lookupAccessor(accessor) : undefined;
          if (e) await this.store.revoke(e);
          return {};
        },
      },
    },
  ]);

  handle(req: LogicalRequest): Promise<LogicalResponse | undefined> {
    return this.router.handle(req);
  }

  private async create(req: LogicalRequest, f: FieldData, orphan: boolean): Promise<LogicalResponse> {
    const parent = await this.caller(req);
    const parentIsRoot = parent.policies.includes("root");
    let policies = f.list("policies") ?? parent.policies.filter((p) => p !== "default" || parentIsRoot);
    if (!parentIsRoot) {
      const extra = policies.filter((p) => p !== "default" && !parent.policies.includes(p));
      if (extra.length)
        throw new PermissionDeniedError(
          `child policies must be a subset of the parent's policies (not allowed: ${extra.join(", ")})`,
        );
    }
    if (f.has("id") && !parentIsRoot) throw new PermissionDeniedError("only root tokens may set a token id");
    if (f.bool("no_parent") && !parentIsRoot)
      throw new PermissionDeniedError("only root tokens may create orphan tokens with no_parent");
    if (!f.bool("no_default_policy") && !policies.includes("root")) policies = ["default", ...policies];
    policies = [...new Set(policies)];
    const ttl = f.duration("ttl")!;
    const explicitMax = f.duration("explicit_max_ttl")!;
    const numUses = f.int("num_uses")!;
    const period = f.duration("period")!;
    // Vault: only root (or sudo) may create a periodic token — it can be renewed forever.
    if (period > 0 && !parentIsRoot) throw new PermissionDeniedError("only root tokens may create periodic tokens");
    if (numUses < 0) throw new LogicalError(400, "num_uses: must be a non-negative integer");
    const rootChild = policies.includes("root");
    if (rootChild && !parentIsRoot) throw new PermissionDeniedError();
    const effectiveTtl = ttl > 0 ? ttl : rootChild ? 0 : this.core.defaultTtl;
    const { token, entry } = await this.store.create({
      policies,
      meta: f.map<string>("meta"),
      displayName: f.has("display_name") ? `token-${f.string("display_name")}` : "token",
      path: orphan ? "auth/token/create-orphan" : "auth/token/create",
      ttl: effectiveTtl,
      maxTtl: rootChild && ttl === 0 ? 0 : this.core.maxTtl,
      explicitMaxTtl: explicitMax,
      renewable: f.bool("renewable")!,
      numUses,
      parent: orphan || f.bool("no_parent") ? undefined : parent.accessor,
      id: f.string("id") || undefined,
      period: period || undefined,
    });
    return { status: 200, data: { [AUTH_BLOCK]: this.core.authBlock(token, entry) } };
  }
}
