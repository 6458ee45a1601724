// JWT auth method (Vault's "jwt" shape): config names where verification keys come from (a JWKS URL,
// OIDC discovery, static PEM keys, or the local Nitride mount in-process), roles bind audiences,
// subject and claims to token policies, and login turns a valid JWT into an `auth` for the token store.
// Attested logins (Nitride tokens) carry workload id, evidence digest, policy hash and reference-value
// version in their metadata, and the token's claims (incl. cnf) for response sealing.
import { createPublicKey, type KeyObject } from "node:crypto";
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors as joseErrors,
  jwtVerify,
  type JWK,
  type JWTPayload,
  type JWTVerifyGetKey,
} from "jose";
import { LogicalError, type LogicalBackend, type LogicalRequest, type LogicalResponse } from "./backend.js";
import { jsonBytes, optBool, optInt, optList, optString, readJson, reqString } from "./fields.js";
import { parseOptionalDuration as parseDuration } from "./duration.js";

/**
 * What the attestation service adds to this auth method, injected by the composition root
 * (runtime/server/nitride/register.ts) so the Vault framework never imports Nitride: the issuer of
 * tokens signed by an in-process mount (`nitride_mount`), and what a role's `seal_responses` needs.
 * Without hooks, `nitride_mount` and `seal_responses=true` are refused with a 400 naming the field.
 */
export interface JwtAuthHooks {
  /** The `iss` of tokens signed by the in-process mount at `mountPoint`. */
  localIssuer(apiAddr: string, mountPoint: string): string;
  /** The caller's attested ephemeral key is present in these verified claims (cnf.jwk). */
  hasSealingKey(claims: Record<string, unknown>): boolean;
  /** Token metadata key whose value "required" makes every response with secrets sealed. */
  readonly sealRequiredMeta: string;
}

interface JwtConfig {
  jwks_url: string;
  oidc_discovery_url: string;
  jwt_validation_pubkeys: string[];
  /** Buckypaper extension: verify against the Nitride mount of this runtime, in-process. */
  nitride_mount: string;
  bound_issuer: string;
  jwt_supported_algs: string[];
  default_role: string;
}

interface JwtRole {
  role_type: "jwt";
  bound_audiences: string[];
  bound_subject: string;
  bound_claims: Record<string, string | string[]>;
  bound_claims_type: "string" | "glob";
  claim_mappings: Record<string, string>;
  user_claim: string;
  token_policies: string[];
  /** Buckypaper/OpenBao-style: "{{claim}}" in token_policies is replaced by that (string) claim. */
  token_policies_template_claims: boolean;
  token_ttl: number;
  token_max_ttl: number;
  clock_skew_leeway: number;
  expiration_leeway: number;
  not_before_leeway: number;
  /** Buckypaper: responses with secrets to tokens of this role are always sealed to the attested key. */
  seal_responses: boolean;
}

const ROLE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const DEFAULT_ALGS = ["RS256", "ES256", "ES384", "EdDSA"];
/** Claims copied into token metadata for attested logins (what the audit log records). */
const ATTESTATION_METADATA: Array<[string, string]> = [
  ["sub", "workload_id"],
  ["evidence_digest", "evidence_digest"],
  ["policy_hash", "policy_hash"],
  ["ref_version", "ref_version"],
  ["platform", "platform"],
  ["measurement", "measurement"],
  ["jti", "attestation_id"],
];

function configFrom(d: Record<string, unknown>): JwtConfig {
  const c: JwtConfig = {
    jwks_url: optString(d, "jwks_url") ?? "",
    oidc_discovery_url: optString(d, "oidc_discovery_url") ?? "",
    jwt_validation_pubkeys: optList(d, "jwt_validation_pubkeys"),
    nitride_mount: (optString(d, "nitride_mount") ?? "").replace(/^\/+|\/+$/g, ""),
    bound_issuer: optString(d, "bound_issuer") ?? "",
    jwt_supported_algs: optList(d, "jwt_supported_algs"),
    default_role: optString(d, "default_role") ?? "",
  };
  const sources = [
    c.jwks_url,
    c.oidc_discovery_url,
    c.jwt_validation_pubkeys.length ? "x" : "",
    c.nitride_mount,
  ].filter(Boolean).length;
  if (sources !== 1)
    throw new LogicalError(
      400,
      "exactly one of jwks_url, oidc_discovery_url, jwt_validation_pubkeys or nitride_mount must be set",
    );
  for (const [i, pem] of c.jwt_validation_pubkeys.entries()) {
    try {
      createPublicKey(pem);
    } catch {
      throw new LogicalError(400, `jwt_validation_pubkeys[${i}]: not a PEM public key`);
    }
  }
  for (const u of [c.jwks_url, c.oidc_discovery_url])
    if (u && !/^https?:\/\//.test(u))
      throw new LogicalError(400, "jwks_url/oidc_discovery_url: must be an http(s) URL");
  return c;
}

function roleFrom(d: Record<string, unknown>): JwtRole {
  const rt = optString(d, "role_type") ?? "jwt";
  if (rt !== "jwt") throw new LogicalError(400, `role_type: only "jwt" is supported`);
  const bc = d.bound_claims ?? {};
  if (typeof bc !== "object" || bc === null || Array.isArray(bc))
    throw new LogicalError(400, "bound_claims: must be an object");
  const bound_claims: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(bc)) {
    if (typeof v === "string") bound_claims[k] = v;
    else if (typeof v === "number" || typeof v === "boolean") bound_claims[k] = String(v);
    else if (Array.isArray(v) && v.every((x) => ["string", "number", "boolean"].includes(typeof x)))
      bound_claims[k] = v.map(String);
    else throw new LogicalError(400, `bound_claims.${k}: must be a string or a list of strings`);
  }
  const bct = optString(d, "bound_claims_type") ?? "string";
  if (bct !== "string" && bct !== "glob") throw new LogicalError(400, `bound_claims_type: must be "string" or "glob"`);
  const cm = d.claim_mappings ?? {};
  if (
    typeof cm !== "object" ||
    cm === null ||
    Array.isArray(cm) ||
    Object.values(cm).some((x) => typeof x !== "string")
  )
    throw new LogicalError(400, "claim_mappings: must map claim names to metadata keys");
  const role: JwtRole = {
    role_type: "jwt",
    bound_audiences: optList(d, "bound_audiences"),
    bound_subject: optString(d, "bound_subject") ?? "",
    bound_claims,
    bound_claims_type: bct,
    claim_mappings: cm as Record<string, string>,
    user_claim: optString(d, "user_claim") ?? "sub",
    token_policies: optList(d, d.token_policies !== undefined ? "token_policies" : "policies"),
    token_policies_template_claims: optBool(d, "token_policies_template_claims", false),
    token_ttl: parseDuration(d.token_ttl ?? d.ttl, "token_ttl") ?? 0,
    token_max_ttl: parseDuration(d.token_max_ttl ?? d.max_ttl, "token_max_ttl") ?? 0,
    clock_skew_leeway: optInt(d, "clock_skew_leeway", 60),
    expiration_leeway: optInt(d, "expiration_leeway", 150),
    not_before_leeway: optInt(d, "not_before_leeway", 150),
    seal_responses: optBool(d, "seal_responses", false),
  };
  if (!role.bound_audiences.length && !role.bound_subject && !Object.keys(role.bound_claims).length) {
    throw new LogicalError(
      400,
      "must have at least one bound constraint (bound_audiences, bound_subject or bound_claims)",
    );
  }
  return role;
}

/** A claim by name or JSON pointer ("/a/b"). */
function claimAt(claims: JWTPayload, key: string): unknown {
  if (!key.startsWith("/")) return (claims as Record<string, unknown>)[key];
  let cur: unknown = claims;
  for (const seg of key
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))) {
    if (typeof cur !== "object" || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

function globMatch(pattern: string, value: string): boolean {
  const re = new RegExp(
    `^${pattern
      .split("*")
      .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
      .join(".*")}$`,
  );
  return re.test(value);
}

function checkBoundClaims(role: JwtRole, claims: JWTPayload): void {
  for (const [key, want] of Object.entries(role.bound_claims)) {
    const got = claimAt(claims, key);
    if (got === undefined) throw new LogicalError(403, `claim "${key}" is missing`);
    const gotList = (Array.isArray(got) ? got : [got]).map((x) =>
      typeof x === "object" ? JSON.stringify(x) : String(x),
    );
    const wantList = Array.isArray(want) ? want : [want];
    const ok = gotList.some((g) =>
      wantList.some((w) => (role.bound_claims_type === "glob" ? globMatch(w, g) : w === g)),
    );
    if (!ok) throw new LogicalError(403, `claim "${key}" does not match any associated bound claim values`);
  }
}

export class JwtAuthBackend implements LogicalBackend {
  readonly type = "jwt";
  constructor(private readonly hooks?: JwtAuthHooks) {}
  readonly unauthenticatedPaths = ["login"];
  private remote = new Map<string, JWTVerifyGetKey>();
  private local: { text: string; getKey: JWTVerifyGetKey } | undefined;

  /** Vault's existence check: writing a new role needs `create`, changing one `update`. */
  async existenceCheck(req: LogicalRequest): Promise<boolean> {
    const m = /^role\/([^/]+)$/.exec(req.path);
    return m ? (await req.storage.get(`role/${m[1]}`)) !== undefined : true;
  }

  async handle(req: LogicalRequest): Promise<LogicalResponse | undefined> {
    const op = req.operation;
    const write = op === "update" || op === "create";
    const p = req.path.replace(/\/+$/, "");
    if (p === "config") {
      if (op === "read") {
        const c = await readJson<JwtConfig>(req.storage, "config");
        if (!c) throw new LogicalError(404, "not configured");
        return { data: { ...c } };
      }
      if (!write) return undefined;
      const config = configFrom(req.data);
      if (config.nitride_mount && !this.hooks)
        throw new LogicalError(400, "nitride_mount: no attestation service in this build");
      await req.storage.put("config", jsonBytes(config));
      this.remote.clear();
      return {};
    }
    if (p === "login" && write) return this.login(req);
    if ((p === "role" || p === "roles") && (op === "list" || op === "read")) {
      const keys = await req.storage.list("role/");
      if (!keys.length) throw new LogicalError(404, "no roles");
      return { data: { keys } };
    }
    const m = /^role\/([^/]+)$/.exec(p);
    if (m) {
      if (!ROLE_RE.test(m[1])) throw new LogicalError(400, "name: invalid role name");
      const key = `role/${m[1]}`;
      if (op === "read") {
        const r = await readJson<JwtRole>(req.storage, key);
        if (!r) throw new LogicalError(404, `role not found: ${m[1]}`);
        return { data: { ...r, policies: r.token_policies } };
      }
      if (write) {
        const role = roleFrom(req.data);
        if (role.seal_responses && !this.hooks)
          throw new LogicalError(400, "seal_responses: no attestation service in this build");
        await req.storage.put(key, jsonBytes(role));
        return {};
      }
      if (op === "delete") {
        await req.storage.delete(key);
        return {};
      }
    }
    return undefined;
  }

  private async keySource(
    req: LogicalRequest,
    c: JwtConfig,
  ): Promise<{ getKey: JWTVerifyGetKey | KeyObject[]; issuer: string }> {
    if (c.nitride_mount) {
      // In-process: no HTTP round trip, and the key ring is read from the same storage the signer uses.
      const r = await req.system.internalRequest("read", `${c.nitride_mount}/jwks`);
      const raw = r?.data?.http_raw_body;
      const text = typeof raw === "string" ? raw : JSON.stringify({ keys: r?.data?.keys ?? [] });
      // Re-importing the keys on every login is measurable; the set only changes on rotation.
      if (this.local?.text !== text)
        this.local = { text, getKey: createLocalJWKSet({ keys: (JSON.parse(text) as { keys?: JWK[] }).keys ?? [] }) };
      if (!this.hooks) throw new LogicalError(400, "nitride_mount: no attestation service in this build");
      return {
        getKey: this.local.getKey,
        issuer: c.bound_issuer || this.hooks.localIssuer(req.system.apiAddr(), c.nitride_mount),
      };
    }
    if (c.jwt_validation_pubkeys.length) {
      return { getKey: c.jwt_validation_pubkeys.map((pem) => createPublicKey(pem)), issuer: c.bound_issuer };
    }
    let jwksUrl = c.jwks_url;
    if (c.oidc_discovery_url) {
      const url = `${c.oidc_discovery_url.replace(/\/+$/, "")}/.well-known/openid-configuration`;
      const doc = (await fetch(url, { signal: AbortSignal.timeout(5000) })
        .then((r) => (r.ok ? r.json() : undefined))
        .catch(() => undefined)) as { jwks_uri?: string; issuer?: string } | undefined;
      if (!doc?.jwks_uri)
        throw new LogicalError(502, "oidc_discovery_url: discovery document unavailable or without jwks_uri");
      jwksUrl = doc.jwks_uri;
    }
    let getKey = this.remote.get(jwksUrl);
    if (!getKey) this.remote.set(jwksUrl, (getKey = createRemoteJWKSet(new URL(jwksUrl), { timeoutDuration: 5000 })));
    return { getKey, issuer: c.bound_issuer };
  }

  private async verify(req: LogicalRequest, c: JwtConfig, role: JwtRole, jwt: string): Promise<JWTPayload> {
    const { getKey, issuer } = await this.keySource(req, c);
    const algorithms = c.jwt_supported_algs.length ? c.jwt_supported_algs : DEFAULT_ALGS;
    // jose checks exp/nbf with one tolerance; use the larger leeway as Vault's separate leeways would allow.
    const tolerance = Math.max(role.clock_skew_leeway, 0) + Math.max(role.expiration_leeway, role.not_before_leeway, 0);
    const opts = { algorithms, clockTolerance: tolerance, ...(issuer ? { issuer } : {}) };
    try {
      if (Array.isArray(getKey)) {
        let last: unknown;
        for (const k of getKey) {
          try {
            return (await jwtVerify(jwt, k, opts)).payload;
          } catch (e) {
            last = e;
            if (!(e instanceof joseErrors.JWSSignatureVerificationFailed)) throw e;
          }
        }
        throw last;
      }
      return (await jwtVerify(jwt, getKey, opts)).payload;
    } catch (e) {
      if (e instanceof LogicalError) throw e;
      if (e instanceof joseErrors.JWTExpired) throw new LogicalError(403, "error validating token: token is expired");
      if (e instanceof joseErrors.JWTClaimValidationFailed)
        throw new LogicalError(403, `error validating token: ${e.claim} claim is invalid`);
      if (e instanceof joseErrors.JWKSNoMatchingKey || e instanceof joseErrors.JWSSignatureVerificationFailed)
        throw new LogicalError(403, "error validating token: signature does not verify with any configured key");
      if (e instanceof joseErrors.JOSEAlgNotAllowed)
        throw new LogicalError(403, "error validating token: signing algorithm not allowed");
      if (e instanceof joseErrors.JOSEError) throw new LogicalError(400, "jwt: not a well-formed signed JWT");
      throw e;
    }
  }

  private async login(req: LogicalRequest): Promise<LogicalResponse> {
    const c = await readJson<JwtConfig>(req.storage, "config");
    if (!c) throw new LogicalError(400, "could not load configuration (POST config first)");
    const roleName = optString(req.data, "role") || c.default_role;
    if (!roleName) throw new LogicalError(400, "role: missing (and no default_role is configured)");
    const role = await readJson<JwtRole>(req.storage, `role/${roleName}`);
    if (!role) throw new LogicalError(400, `role "${roleName}" could not be found`);
    const jwt = reqString(req.data, "jwt");
    const claims = await this.verify(req, c, role, jwt);

    const aud = claims.aud === undefined ? [] : Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (role.bound_audiences.length) {
      if (!aud.some((a) => role.bound_audiences.includes(a)))
        throw new LogicalError(403, "error validating token: aud claim does not match any bound audience");
    } else if (aud.length) {
      throw new LogicalError(403, "audience claim found in JWT but no audiences bound to the role");
    }
    if (role.bound_subject && claims.sub !== role.bound_subject)
      throw new LogicalError(403, "sub claim does not match bound subject");
    checkBoundClaims(role, claims);
    const user = claimAt(claims, role.user_claim);
    if (typeof user !== "string" && typeof user !== "number")
      throw new LogicalError(403, `claim "${role.user_claim}" not found in token`);

    const metadata: Record<string, string> = { role: roleName };
    for (const [claim, key] of Object.entries(role.claim_mappings)) {
      const v = claimAt(claims, claim);
      if (v !== undefined) metadata[key] = typeof v === "object" ? JSON.stringify(v) : String(v);
    }
    const attested = typeof claims.evidence_digest === "string";
    if (attested)
      for (const [claim, key] of ATTESTATION_METADATA)
        if (claims[claim] !== undefined) metadata[key] = String(claims[claim]);
    if (role.seal_responses) {
      if (!this.hooks) throw new LogicalError(400, "seal_responses: no attestation service in this build");
      if (!this.hooks.hasSealingKey(claims as Record<string, unknown>)) {
        throw new LogicalError(403, "role requires sealed responses but the token has no attested key (cnf.jwk)");
      }
      metadata[this.hooks.sealRequiredMeta] = "required";
    }

    const policies = role.token_policies.map((p) => {
      if (!role.token_policies_template_claims) return p;
      return p.replace(/\{\{\s*([A-Za-z0-9_./-]+)\s*\}\}/g, (_, name: string) => {
        const v = claimAt(claims, name);
        if (typeof v !== "string" && typeof v !== "number")
          throw new LogicalError(403, `token_policies: claim "${name}" for the policy template is missing`);
        return String(v);
      });
    });
    return {
      auth: {
        policies,
        ttl: role.token_ttl,
        maxTtl: role.token_max_ttl || undefined,
        renewable: true,
        metadata,
        claims: attested ? (claims as Record<string, unknown>) : { sub: claims.sub, iss: claims.iss },
        displayName: String(user),
      },
    };
  }
}
