// The token store. Tokens are random bearer strings handed out once; storage keeps only their
// HMAC-SHA256 under a per-runtime salt (so neither the disk nor the barrier holds a usable token),
// indexed by that hash and by accessor. Lookup is a keyed fetch by hash, followed by a constant-time
// comparison of the stored hash, so no timing depends on how much of a guessed token is right.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Storage } from "../storage/types.js";

export interface TokenEntry {
  idHash: string;
  accessor: string;
  policies: string[];
  meta: Record<string, string>;
  claims?: Record<string, unknown>;
  displayName: string;
  path: string;
  /** Unix seconds. */
  creationTime: number;
  creationTtl: number;
  /** Unix seconds; 0 = never expires (root). */
  expireTime: number;
  explicitMaxTtl: number;
  /** Hard limit on lifetime regardless of renewals (unix seconds; 0 = none). */
  maxExpireTime: number;
  renewable: boolean;
  numUses: number;
  orphan: boolean;
  parent: string;
  type: "service";
  /** Periodic token (seconds): each renewal resets the TTL to this, with no maximum but explicit_max_ttl. */
  period?: number;
}

export interface CreateTokenParams {
  policies: string[];
  meta?: Record<string, string>;
  claims?: Record<string, unknown>;
  displayName?: string;
  path: string;
  ttl: number;
  maxTtl: number;
  explicitMaxTtl?: number;
  renewable: boolean;
  numUses?: number;
  parent?: string;
  /** Only for `runtime init`/dev root tokens and tests. */
  id?: string;
  /** Periodic token: TTL = period at creation and at every renewal; no max TTL but explicitMaxTtl. */
  period?: number;
}

const now = () => Math.floor(Date.now() / 1000);
/** Deepest token tree walked (a longer chain is treated as broken). */
const MAX_TREE_DEPTH = 64;

export class TokenStore {
  /**
   * HMACs of tokens that were found in storage, so a token in steady use is not re-hashed on every
   * request. Only the hash is memoized: every lookup still reads the entry from storage, so
   * revocation (here or on another replica) takes effect at once. Bounded; dropped with the store
   * on seal. Unknown tokens are not added, so guessing cannot churn it.
   */
  private readonly knownHashes = new Map<string, string>();
  /**
   * Parsed entries by token hash, reused while the stored bytes are identical (the bytes are still
   * read from storage on every lookup; only JSON parsing and the hash check are skipped).
   */
  private readonly parsed = new Map<string, { raw: Buffer; entry: TokenEntry; matches: boolean }>();

  constructor(
    private readonly storage: Storage,
    private readonly salt: Buffer,
  ) {}

  hash(token: string): string {
    return this.knownHashes.get(token) ?? createHmac("sha256", this.salt).update(token, "utf8").digest("hex");
  }

  /**
   * A root token (Vault's shape: policy root, path auth/token/root, no TTL, not renewable, an orphan), the one
   * definition for `runtime init`, generate-root and the dev server's chosen id.
   */
  createRoot(id?: string): Promise<{ token: string; entry: TokenEntry }> {
    return this.create({
      policies: ["root"],
      path: "auth/token/root",
      ttl: 0,
      maxTtl: 0,
      renewable: false,
      displayName: "root",
      ...(id !== undefined ? { id } : {}),
    });
  }

  async create(p: CreateTokenParams): Promise<{ token: string; entry: TokenEntry }> {
    const token = p.id ?? "hvs." + randomBytes(24).toString("base64url");
    const t = now();
    const periodic = (p.period ?? 0) > 0;
    const lifetime = periodic ? p.period! : p.ttl > 0 ? Math.min(p.ttl, p.maxTtl > 0 ? p.maxTtl : p.ttl) : 0;
    const explicit = p.explicitMaxTtl && p.explicitMaxTtl > 0 ? p.explicitMaxTtl : 0;
    const hardMax = periodic ? explicit : explicit || p.maxTtl;
    const entry: TokenEntry = {
      idHash: this.hash(token),
      accessor: randomBytes(18).toString("base64url"),
      policies: [...new Set(p.policies)].sort(),
      meta: p.meta ?? {},
      claims: p.claims,
      displayName: p.displayName ?? "token",
      path: p.path,
      creationTime: t,
      creationTtl: lifetime,
      expireTime: lifetime > 0 ? t + lifetime : 0,
      explicitMaxTtl: p.explicitMaxTtl ?? 0,
      maxExpireTime: lifetime > 0 && hardMax > 0 ? t + hardMax : 0,
      renewable: p.renewable && lifetime > 0,
      numUses: p.numUses ?? 0,
      orphan: !p.parent,
      parent: p.parent ?? "",
      type: "service",
      ...(periodic ? { period: p.period } : {}),
    };
    await this.storage.transaction(async (tx) => {
      await tx.put(`id/${entry.idHash}`, Buffer.from(JSON.stringify(entry)));
      await tx.put(`accessor/${entry.accessor}`, Buffer.from(entry.idHash));
      if (entry.parent) await tx.put(`parent/${entry.parent}/${entry.accessor}`, Buffer.alloc(0));
    });
    return { token, entry };
  }

  /** The live entry for a bearer token, or undefined (unknown, expired — expired ones are removed). */
  async lookup(token: string): Promise<TokenEntry | undefined> {
    if (typeof token !== "string" || token.length === 0 || token.length > 256) return undefined;
    const h = this.hash(token);
    const raw = await this.storage.get(`id/${h}`);
    if (!raw) return undefined;
    let p = this.parsed.get(h);
    if (!p || !p.raw.equals(raw)) {
      const parsedEntry = JSON.parse(raw.toString("utf8")) as TokenEntry;
      const stored = Buffer.from(parsedEntry.idHash, "hex"),
        want = Buffer.from(h, "hex");
      // The entry must name the hash it is stored under (a row copied onto another key is refused).
      p = { raw, entry: parsedEntry, matches: stored.length === want.length && timingSafeEqual(stored, want) };
      if (this.parsed.size >= 10_000) this.parsed.clear();
      this.parsed.set(h, p);
    }
    if (!p.matches) return undefined;
    const entry = { ...p.entry }; // callers may change fields (renew) before writing the entry back
    if (!this.knownHashes.has(token)) {
      if (this.knownHashes.size >= 10_000) this.knownHashes.clear();
      this.knownHashes.set(token, h);
    }
    if (entry.expireTime > 0 && entry.expireTime <= now()) {
      await this.revoke(entry);
      return undefined;
    }
    // Vault's token trees: a child lives only while every ancestor does. Checked on each use, so a
    // parent that expired (with nobody looking it up, and no tidy in dev mode), was used up or was
    // revoked takes its tree with it at once, on every worker.
    if (entry.parent && !(await this.ancestorsLive(entry))) {
      await this.revoke(entry);
      return undefined;
    }
    return entry;
  }

  /** True when the chain of parents up to an orphan is intact and unexpired (fails closed on damage). */
  private async ancestorsLive(entry: TokenEntry): Promise<boolean> {
    let accessor = entry.parent;
    for (let depth = 0; accessor; depth++) {
      if (depth >= MAX_TREE_DEPTH) return false;
      let parent: TokenEntry | undefined;
      try {
        parent = await this.lookupAccessor(accessor);
      } catch {
        return false; // an unreadable ancestor never keeps a descendant alive
      }
      if (!parent) return false;
      if (parent.expireTime > 0 && parent.expireTime <= now()) {
        await this.revoke(parent).catch(() => undefined);
        return false;
      }
      accessor = parent.parent;
    }
    return true;
  }

  async lookupAccessor(accessor: string): Promise<TokenEntry | undefined> {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(accessor)) return undefined;
    const h = await this.storage.get(`accessor/${accessor}`);
    const raw = h && (await this.storage.get(`id/${h.toString("utf8")}`));
    return raw ? (JSON.parse(raw.toString("utf8")) as TokenEntry) : undefined;
  }

  /**
   * Counts one use of a limited-use token, atomically (concurrent requests cannot both spend the
   * last use); the last use deletes it. Returns false when the token is already used up or gone.
   */
  async use(entry: TokenEntry): Promise<boolean> {
    if (entry.numUses === 0) return true;
    let spent: TokenEntry | undefined;
    const ok = await this.storage.transaction(async (tx) => {
      const raw = await tx.get(`id/${entry.idHash}`);
      if (!raw) return false;
      const cur = JSON.parse(raw.toString("utf8")) as TokenEntry;
      if (cur.numUses <= 1) {
        await tx.delete(`id/${cur.idHash}`);
        await tx.delete(`accessor/${cur.accessor}`);
        if (cur.parent) await tx.delete(`parent/${cur.parent}/${cur.accessor}`);
        spent = cur;
        return true;
      }
      cur.numUses -= 1;
      await tx.put(`id/${cur.idHash}`, Buffer.from(JSON.stringify(cur)));
      return true;
    });
    // A used-up token is revoked like any other: its children go with it (Vault).
    if (spent) await this.revokeChildren(spent);
    return ok;
  }

  /** Extends the TTL by increment (or the creation TTL), capped by the token's hard maximum. */
  async renew(entry: TokenEntry, increment: number): Promise<TokenEntry> {
    const t = now();
    let exp = t + (entry.period ? entry.period : increment > 0 ? increment : entry.creationTtl);
    if (entry.maxExpireTime > 0) exp = Math.min(exp, entry.maxExpireTime);
    entry.expireTime = exp;
    await this.storage.put(`id/${entry.idHash}`, Buffer.from(JSON.stringify(entry)));
    return entry;
  }

  /**
   * Revokes a token and, recursively, every token created from it. The token itself goes first:
   * whatever happens to its subtree (a damaged index row, a crash half-way), the revoked token is
   * never left valid, and its descendants are refused anyway (lookup checks their ancestors).
   */
  async revoke(entry: TokenEntry): Promise<void> {
    await this.storage.transaction(async (tx) => {
      await tx.delete(`id/${entry.idHash}`);
      await tx.delete(`accessor/${entry.accessor}`);
      if (entry.parent) await tx.delete(`parent/${entry.parent}/${entry.accessor}`);
    });
    await this.revokeChildren(entry);
  }

  /** Best effort over the child index: an unreadable child row is dropped, not allowed to abort. */
  private async revokeChildren(entry: TokenEntry): Promise<void> {
    for (const child of await this.storage.list(`parent/${entry.accessor}/`)) {
      try {
        const c = await this.lookupAccessor(child);
        if (c) await this.revoke(c);
      } catch {
        // Damaged beyond reading: the child cannot pass the ancestor check, so nothing stays usable.
      }
      await this.storage.delete(`parent/${entry.accessor}/${child}`).catch(() => undefined);
    }
  }

  /** Revokes every expired token (lookups remove them lazily; this catches the never-used ones). */
  async tidy(): Promise<number> {
    let removed = 0;
    const t = now();
    for (const h of await this.storage.list("id/")) {
      const raw = await this.storage.get(`id/${h}`);
      const e = raw && (JSON.parse(raw.toString("utf8")) as TokenEntry);
      if (e && e.expireTime > 0 && e.expireTime <= t) {
        await this.revoke(e);
        removed++;
      }
    }
    return removed;
  }

  /** Seconds left (0 for never-expiring tokens). */
  static ttlLeft(entry: TokenEntry): number {
    return entry.expireTime === 0 ? 0 : Math.max(0, entry.expireTime - now());
  }
}
