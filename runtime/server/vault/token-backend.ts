// auth/token: create (child and orphan), lookup(-self/-accessor), renew(-self), revoke(-self/
// -accessor), with Vault's shapes. Child tokens may only carry a subset of the parent's policies
// unless the parent is root, and are revoked with their parent.
import { LogicalError, type LogicalBackend, type LogicalRequest, type LogicalResponse } from "./backend.js";
import type { CoreView } from "./core-view.js";
import { TokenStore, type TokenEntry } from "./tokens.js";
import { parseDuration } from "./duration.js";
import { PermissionDeniedError } from "./errors.js";

/** Key under which the token backend hands a ready auth block to the core (rendered as `auth`). */
export const AUTH_BLOCK = "__auth_block";

function stringList(field: string, v: unknown): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === "string")
    return v
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
  if (Array.isArray(v) && v.every((x) => typeof x === "string")) return v as string[];
  throw new LogicalError(400, `${field}: must be a list of strings`);
}

function stringMap(field: string, v: unknown): Record<string, string> | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "object" || Array.isArray(v) || Object.values(v).some((x) => typeof x !== "string"))
    throw new LogicalError(400, `${field}: must be a map of strings`);
  return v as Record<string, string>;
}

export class TokenBackend implements LogicalBackend {
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

  private lookupData(e: TokenEntry, showId: boolean) {
    const iso = (s: number) => (s ? new Date(s * 1000).toISOString() : null);
    return {
      accessor: e.accessor,
      creation_time: e.creationTime,
      creation_ttl: e.creationTtl,
      display_name: e.displayName,
      entity_id: "",
      expire_time: iso(e.expireTime),
      explicit_max_ttl: e.explicitMaxTtl,
      id: showId ? "" : "",
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
    };
  }

  async handle(req: LogicalRequest): Promise<LogicalResponse | undefined> {
    const op = req.operation;
    const write = op === "create" || op === "update";
    switch (req.path) {
      case "create":
      case "create-orphan":
        if (!write) return undefined;
        return this.create(req, req.path === "create-orphan");
      case "lookup-self":
        if (op !== "read" && !write) return undefined;
        return { data: this.lookupData(await this.caller(req), true) };
      case "lookup": {
        if (!write) return undefined;
        const token = req.data.token;
        if (typeof token !== "string" || !token) throw new LogicalError(400, "token: required");
        const e = await this.store.lookup(token);
        if (!e) throw new LogicalError(403, "bad token");
        return { data: this.lookupData(e, false) };
      }
      case "lookup-accessor": {
        if (!write) return undefined;
        const e =
          typeof req.data.accessor === "string" ? await this.store.lookupAccessor(req.data.accessor) : undefined;
        if (!e) throw new LogicalError(400, "accessor: invalid accessor");
        return { data: this.lookupData(e, false) };
      }
      case "renew-self":
      case "renew": {
        if (!write) return undefined;
        let e: TokenEntry | undefined;
        if (req.path === "renew-self") e = await this.caller(req);
        else {
          if (typeof req.data.token !== "string") throw new LogicalError(400, "token: required");
          e = await this.store.lookup(req.data.token);
          if (!e) throw new LogicalError(400, "token: invalid or expired token");
        }
        if (!e.renewable) throw new LogicalError(400, "lease is not renewable");
        const inc = parseDuration("increment", req.data.increment);
        const renewed = await this.store.renew(e, inc);
        return { status: 200, data: { [AUTH_BLOCK]: { ...this.core.authBlock("", renewed), client_token: "" } } };
      }
      case "tidy": {
        if (!write) return undefined;
        const removed = await this.core.tidy();
        return { data: { removed: removed ?? 0, skipped: removed === undefined } };
      }
      case "revoke-self":
        if (!write) return undefined;
        await this.store.revoke(await this.caller(req));
        return {};
      case "revoke":
      case "revoke-accessor": {
        if (!write) return undefined;
        const e =
          req.path === "revoke"
            ? typeof req.data.token === "string"
              ? await this.store.lookup(req.data.token)
              : undefined
            : typeof req.data.accessor === "string"
              ? await this.store.lookupAccessor(req.data.accessor)
              : undefined;
        if (e) await this.store.revoke(e);
        return {};
      }
    }
    return undefined;
  }

  private async create(req: LogicalRequest, orphan: boolean): Promise<LogicalResponse> {
    const parent = await this.caller(req);
    const parentIsRoot = parent.policies.includes("root");
    const d = req.data;
    let policies = stringList("policies", d.policies) ?? parent.policies.filter((p) => p !== "default" || parentIsRoot);
    if (!parentIsRoot) {
      const extra = policies.filter((p) => p !== "default" && !parent.policies.includes(p));
      if (extra.length)
        throw new PermissionDeniedError(
          `child policies must be a subset of the parent's policies (not allowed: ${extra.join(", ")})`,
        );
    }
    if (d.id !== undefined && !parentIsRoot) throw new PermissionDeniedError("only root tokens may set a token id");
    if (d.no_parent === true && !parentIsRoot)
      throw new PermissionDeniedError("only root tokens may create orphan tokens with no_parent");
    if (d.no_default_policy !== true && !policies.includes("root")) policies = ["default", ...policies];
    policies = [...new Set(policies)];
    const ttl = parseDuration("ttl", d.ttl);
    const explicitMax = parseDuration("explicit_max_ttl", d.explicit_max_ttl);
    const numUses = d.num_uses === undefined ? 0 : Number(d.num_uses);
    if (!Number.isInteger(numUses) || numUses < 0)
      throw new LogicalError(400, "num_uses: must be a non-negative integer");
    const rootChild = policies.includes("root");
    if (rootChild && !parentIsRoot) throw new PermissionDeniedError();
    const effectiveTtl = ttl > 0 ? ttl : rootChild ? 0 : this.core.defaultTtl;
    const { token, entry } = await this.store.create({
      policies,
      meta: stringMap("meta", d.meta),
      displayName: typeof d.display_name === "string" ? `token-${d.display_name}` : "token",
      path: orphan ? "auth/token/create-orphan" : "auth/token/create",
      ttl: effectiveTtl,
      maxTtl: rootChild && ttl === 0 ? 0 : this.core.maxTtl,
      explicitMaxTtl: explicitMax,
      renewable: d.renewable !== false,
      numUses,
      parent: orphan || d.no_parent === true ? undefined : parent.accessor,
      id: typeof d.id === "string" && d.id ? d.id : undefined,
    });
    return { status: 200, data: { [AUTH_BLOCK]: this.core.authBlock(token, entry) } };
  }
}
