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
import {
  LogicalError,
  type CallerAuth,
  type LogicalBackend,
  type LogicalRequest,
  type LogicalResponse,
  type SystemView,
} from "./backend.js";
import { jsonBytes, readJson } from "./fields.js";
import { consumeJti } from "./jti-cache.js";
import {
  isMlDsaJws,
  JoseFormatError,
  JwsVerificationError,
  ML_DSA_65,
  verifyMlDsaJwt,
} from "../../attestation/ml-dsa-jose.js";
import { FieldData, PathRouter, segment, type FieldSchemas, type TableBackend } from "./framework.js";

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
  /**
   * Is an attested login still backed by its workload's current definition (the policy hash it
   * attested against)? False once reference values or policy changed or the workload is gone.
   */
  attestationCurrent(system: SystemView, mount: string, workloadId: string, policyHash: string): Promise<boolean>;
  /**
   * The workload whose attestation-managed policy this is (e.g. "nitride-workload-web" → "web"), or
   * undefined for any other policy. Such policies go only to attested logins of that workload.
   */
  workloadOfPolicy(policy: string): string | undefined;
  /**
   * For JWTs verified through another key source (e.g. oidc_discovery_url pointing at this runtime):
   * the in-process Nitride mount whose own key ring this JWT's signature also verifies against (its
   * iss must be that mount's issuer), or undefined. Only such a login is attested.
   */
  localAttestation(system: SystemView, jwt: string, claims: Record<string, unknown>): Promise<string | undefined>;
}

/** Token metadata: set to ATTESTED_BY_NITRIDE only when the JWT verified against the in-process Nitride key ring. */
export const ATTESTED_META = "attested";
export const ATTESTED_BY_NITRIDE = "nitride";
/** Token metadata: the Nitride mount whose key ring verified an attested login. */
export const ATTESTED_MOUNT_META = "nitride_mount";

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
  /**
   * Buckypaper: each JWT logs in once — its jti is required and kept in the replay cache until the JWT
   * expires. Off by default (Vault accepts a JWT until it expires); the deployer role turns it on.
   */
  single_use_jti?: boolean;
}

const ROLE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** ML-DSA-65 (RFC 9964) is verified here with @noble/post-quantum: jose has no ML-DSA on Node 22. */
const DEFAULT_ALGS = ["RS256", "ES256", "ES384", "EdDSA", ML_DSA_65];
/** How long a remote JWKS fetched for ML-DSA verification is reused. */
const RAW_JWKS_CACHE_MS = 60_000;
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

/**
 * Metadata keys only this auth method writes: a role's claim_mappings may not produce them (as
 * Vault reserves "role"), or a self-signed JWT on another mount could claim to be attested.
 */
const RESERVED_METADATA = new Set([
  "role",
  ATTESTED_META,
  ATTESTED_MOUNT_META,
  "seal_responses",
  "workload_id",
  "policy_hash",
]);
/** Vault's defaults for leeways set to 0 (vault-plugin-auth-jwt: claimDefaultLeeway, jwt.DefaultLeeway). */
const DEFAULT_EXP_NBF_LEEWAY = 150;
const DEFAULT_CLOCK_SKEW_LEEWAY = 60;

/** Vault's leeway values: negative disables (0 s), 0 selects the default, N is N seconds. */
function effectiveLeeway(v: number, dflt: number): number {
  return v < 0 ? 0 : v === 0 ? dflt : v;
}

/**
 * exp/nbf/iat as vault-plugin-auth-jwt validates them: expiration_leeway and not_before_leeway only
 * stand in for a missing exp (latest of iat/nbf + leeway) or a missing nbf (iat, else exp − leeway);
 * clock_skew_leeway is the tolerance of every time check, applied separately to exp, nbf and iat.
 * Returns the last second at which the token would still be accepted (for the jti replay cache).
 */
export function checkTimeClaims(
  claims: JWTPayload,
  role: Pick<JwtRole, "clock_skew_leeway" | "expiration_leeway" | "not_before_leeway">,
  now = Math.floor(Date.now() / 1000),
): number {
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);
  const iat = num(claims.iat);
  let exp = num(claims.exp);
  let nbf = num(claims.nbf);
  if (!iat && !exp && !nbf)
    throw new LogicalError(
      403,
      "error validating token: no issue time, notbefore, or expiration time encoded in token",
    );
  if (!exp) exp = Math.max(iat, nbf) + effectiveLeeway(role.expiration_leeway, DEFAULT_EXP_NBF_LEEWAY);
  if (!nbf) nbf = iat ? iat : exp - effectiveLeeway(role.not_before_leeway, DEFAULT_EXP_NBF_LEEWAY);
  const skew = effectiveLeeway(role.clock_skew_leeway, DEFAULT_CLOCK_SKEW_LEEWAY);
  if (now - skew > exp) throw new LogicalError(403, "error validating token: token is expired");
  if (now + skew < nbf) throw new LogicalError(403, "error validating token: nbf claim is invalid (not valid yet)");
  if (iat && now + skew < iat)
    throw new LogicalError(403, "error validating token: iat claim is invalid (issued in the future)");
  return exp + skew;
}

function configFrom(d: FieldData): JwtConfig {
  const c: JwtConfig = {
    jwks_url: d.string("jwks_url") ?? "",
    oidc_discovery_url: d.string("oidc_discovery_url") ?? "",
    jwt_validation_pubkeys: d.list("jwt_validation_pubkeys") ?? [],
    nitride_mount: (d.string("nitride_mount") ?? "").replace(/^\/+|\/+$/g, ""),
    bound_issuer: d.string("bound_issuer") ?? "",
    jwt_supported_algs: d.list("jwt_supported_algs") ?? [],
    default_role: d.string("default_role") ?? "",
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

function roleFrom(d: FieldData): JwtRole {
  const rt = d.string("role_type") ?? "jwt";
  if (rt !== "jwt") throw new LogicalError(400, `role_type: only "jwt" is supported`);
  const bc = d.get("bound_claims") ?? {};
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
  const bct = d.string("bound_claims_type") ?? "string";
  if (bct !== "string" && bct !== "glob") throw new LogicalError(400, `bound_claims_type: must be "string" or "glob"`);
  const cm = d.get("claim_mappings") ?? {};
  if (
    typeof cm !== "object" ||
    cm === null ||
    Array.isArray(cm) ||
    Object.values(cm).some((x) => typeof x !== "string")
  )
    throw new LogicalError(400, "claim_mappings: must map claim names to metadata keys");
  const role: JwtRole = {
    role_type: "jwt",
    bound_audiences: d.list("bound_audiences") ?? [],
    bound_subject: d.string("bound_subject") ?? "",
    bound_claims,
    bound_claims_type: bct,
    claim_mappings: cm as Record<string, string>,
    user_claim: d.string("user_claim") ?? "sub",
    token_policies: d.list("token_policies") ?? d.list("policies") ?? [],
    token_policies_template_claims: d.bool("token_policies_template_claims") ?? false,
    token_ttl: d.duration("token_ttl") ?? d.duration("ttl") ?? 0,
    token_max_ttl: d.duration("token_max_ttl") ?? d.duration("max_ttl") ?? 0,
    clock_skew_leeway: d.int("clock_skew_leeway")!,
    expiration_leeway: d.int("expiration_leeway")!,
    not_before_leeway: d.int("not_before_leeway")!,
    seal_responses: d.bool("seal_responses") ?? false,
    single_use_jti: d.bool("single_use_jti") ?? false,
  };
  for (const [claim, key] of Object.entries(role.claim_mappings))
    if (RESERVED_METADATA.has(key))
      throw new LogicalError(400, `claim_mappings.${claim}: metadata key "${key}" is reserved`);
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

const CONFIG_FIELDS: FieldSchemas = {
  jwks_url: { type: "string", description: "JWKS URL to fetch verification keys from" },
  oidc_discovery_url: { type: "string", description: "OIDC issuer whose discovery document names the JWKS" },
  jwt_validation_pubkeys: { type: "comma-string-slice", description: "static PEM public keys" },
  nitride_mount: { type: "string", description: "Buckypaper: verify against this runtime's Nitride mount" },
  bound_issuer: { type: "string", description: "required iss claim" },
  jwt_supported_algs: { type: "comma-string-slice", description: "accepted signing algorithms" },
  default_role: { type: "string", description: "role used when login names none" },
};

const ROLE_FIELDS: FieldSchemas = {
  name: { type: "string", description: "role name" },
  role_type: { type: "string", default: "jwt", description: 'only "jwt"' },
  bound_audiences: { type: "comma-string-slice", description: "aud values accepted" },
  bound_subject: { type: "string", description: "required sub claim" },
  bound_claims: { type: "any", description: "claim (name or JSON pointer) → value or list of values" },
  bound_claims_type: { type: "string", default: "string", description: '"string" or "glob"' },
  claim_mappings: { type: "any", description: "claim → token metadata key" },
  user_claim: { type: "string", default: "sub", description: "claim used as the display name" },
  token_policies: { type: "comma-string-slice", description: "policies of the token" },
  policies: { type: "comma-string-slice", description: "deprecated alias of token_policies" },
  token_policies_template_claims: { type: "bool", default: false, description: '"{{claim}}" in token_policies' },
  token_ttl: { type: "duration", description: "token TTL" },
  ttl: { type: "duration", description: "deprecated alias of token_ttl" },
  token_max_ttl: { type: "duration", description: "token max TTL" },
  max_ttl: { type: "duration", description: "deprecated alias of token_max_ttl" },
  clock_skew_leeway: {
    type: "int",
    default: DEFAULT_CLOCK_SKEW_LEEWAY,
    description: "seconds of clock skew tolerated on exp, nbf and iat (0: 60, -1: none)",
  },
  expiration_leeway: {
    type: "int",
    default: DEFAULT_EXP_NBF_LEEWAY,
    description: "a token without exp expires this long after iat/nbf (0: 150, -1: at once)",
  },
  not_before_leeway: {
    type: "int",
    default: DEFAULT_EXP_NBF_LEEWAY,
    description: "a token without nbf and iat is valid from this long before exp (0: 150, -1: only at exp)",
  },
  seal_responses: { type: "bool", default: false, description: "Buckypaper: always seal responses with secrets" },
  single_use_jti: {
    type: "bool",
    default: false,
    description: "Buckypaper: require a jti and accept each JWT for one login only (replay cache until exp)",
  },
};

function roleName(f: FieldData): string {
  const name = f.string("name")!;
  if (!ROLE_RE.test(name)) throw new LogicalError(400, "name: invalid role name");
  return name;
}

async function listRoles(req: LogicalRequest): Promise<LogicalResponse> {
  const keys = await req.storage.list("role/");
  if (!keys.length) throw new LogicalError(404, "no roles");
  return { data: { keys } };
}

export class JwtAuthBackend implements LogicalBackend, TableBackend {
  readonly type = "jwt";
  constructor(private readonly hooks?: JwtAuthHooks) {}
  readonly unauthenticatedPaths = ["login"];
  private remote = new Map<string, JWTVerifyGetKey>();
  private local: { text: string; getKey: JWTVerifyGetKey; keys: unknown[] } | undefined;
  private rawRemote = new Map<string, { at: number; keys: unknown[] }>();

  readonly router = new PathRouter([
    {
      pattern: "config",
      description: "where verification keys come from and the issuer to require",
      fields: CONFIG_FIELDS,
      operations: {
        read: async (req) => {
          const c = await readJson<JwtConfig>(req.storage, "config");
          if (!c) throw new LogicalError(404, "not configured");
          return { data: { ...c } };
        },
        update: async (req, f) => {
          const config = configFrom(f);
          if (config.nitride_mount && !this.hooks)
            throw new LogicalError(400, "nitride_mount: no attestation service in this build");
          await req.storage.put("config", jsonBytes(config));
          this.remote.clear();
          return {};
        },
      },
    },
    {
      pattern: "login",
      description: "exchange a signed JWT for a token with the role's policies",
      fields: {
        role: { type: "string", description: "role to log in with (default: the config's default_role)" },
        jwt: { type: "string", required: true, description: "the signed JWT" },
      },
      operations: { update: (req, f) => this.login(req, f) },
    },
    {
      pattern: "roles?",
      description: "role names",
      operations: { list: listRoles, read: listRoles },
    },
    {
      pattern: `role/${segment("name")}`,
      description: "a role: bound audiences, subject and claims, and the token it yields",
      fields: ROLE_FIELDS,
      // Vault's existence check: writing a new role needs `create`, changing one `update`.
      existenceCheck: async (req, f) => (await req.storage.get(`role/${f.string("name")}`)) !== undefined,
      operations: {
        read: async (req, f) => {
          const name = roleName(f);
          const r = await readJson<JwtRole>(req.storage, `role/${name}`);
          if (!r) throw new LogicalError(404, `role not found: ${name}`);
          return { data: { ...r, policies: r.token_policies } };
        },
        update: async (req, f) => {
          const name = roleName(f);
          const role = roleFrom(f);
          if (role.seal_responses && !this.hooks)
            throw new LogicalError(400, "seal_responses: no attestation service in this build");
          await req.storage.put(`role/${name}`, jsonBytes(role));
          return {};
        },
        delete: async (req, f) => {
          await req.storage.delete(`role/${roleName(f)}`);
          return {};
        },
      },
    },
  ]);

  existenceCheck(req: LogicalRequest): Promise<boolean> {
    return this.router.existenceCheck(req);
  }

  handle(req: LogicalRequest): Promise<LogicalResponse | undefined> {
    return this.router.handle(req);
  }

  /**
   * An attested login stands only while its workload's definition is the one it attested against:
   * once reference values or policy change (an image revoked) or the workload is deleted, its tokens
   * are refused (and revoked by the core) on their next use, for KV, PKI and SSH alike.
   */
  async loginStillValid(auth: CallerAuth, system: SystemView): Promise<string | undefined> {
    const m = auth.metadata;
    if (m[ATTESTED_META] !== ATTESTED_BY_NITRIDE) return undefined;
    const stale =
      "the workload's reference values or policy changed since this attestation (or it was deleted); attest again";
    if (!this.hooks || !m.workload_id || !m[ATTESTED_MOUNT_META] || !m.policy_hash) return stale;
    const current = await this.hooks.attestationCurrent(system, m[ATTESTED_MOUNT_META], m.workload_id, m.policy_hash);
    return current ? undefined : stale;
  }

  private async keySource(
    req: LogicalRequest,
    c: JwtConfig,
  ): Promise<{
    getKey: JWTVerifyGetKey | KeyObject[];
    /** The JWKS's keys as JSON, for ML-DSA-65 tokens (jose cannot import AKP keys on Node 22). */
    rawKeys?: () => Promise<unknown[]>;
    issuer: string;
    nitride?: string;
  }> {
    if (c.nitride_mount) {
      // In-process: no HTTP round trip, and the key ring is read from the same storage the signer uses.
      // jwks/pq: every key, incl. ML-DSA-65 (AKP) keys, which the classical jwks leaves out for go-jose's sake.
      const r = await req.system.internalRequest("read", `${c.nitride_mount}/jwks/pq`);
      const raw = r?.data?.http_raw_body;
      const text = typeof raw === "string" ? raw : JSON.stringify({ keys: r?.data?.keys ?? [] });
      // Re-importing the keys on every login is measurable; the set only changes on rotation.
      if (this.local?.text !== text) {
        const keys = (JSON.parse(text) as { keys?: JWK[] }).keys ?? [];
        // createLocalJWKSet never selects AKP keys for the classical algorithms, so they may stay in the set.
        this.local = { text, getKey: createLocalJWKSet({ keys }), keys };
      }
      if (!this.hooks) throw new LogicalError(400, "nitride_mount: no attestation service in this build");
      const local = this.local;
      return {
        getKey: local.getKey,
        rawKeys: async () => local.keys,
        issuer: c.bound_issuer || this.hooks.localIssuer(req.system.apiAddr(), c.nitride_mount),
        nitride: c.nitride_mount,
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
    return { getKey, rawKeys: () => this.fetchRawJwks(jwksUrl), issuer: c.bound_issuer };
  }

  private async fetchRawJwks(url: string): Promise<unknown[]> {
    const hit = this.rawRemote.get(url);
    if (hit && Date.now() - hit.at < RAW_JWKS_CACHE_MS) return hit.keys;
    const doc = (await fetch(url, { signal: AbortSignal.timeout(5000) })
      .then((r) => (r.ok ? r.json() : undefined))
      .catch(() => undefined)) as { keys?: unknown } | undefined;
    if (!doc || !Array.isArray(doc.keys)) throw new LogicalError(502, "jwks_url: JWKS unavailable or without keys");
    this.rawRemote.set(url, { at: Date.now(), keys: doc.keys });
    return doc.keys;
  }

  /** The verified claims, and the Nitride mount whose key ring verified them (when it was one). */
  private async verify(
    req: LogicalRequest,
    c: JwtConfig,
    role: JwtRole,
    jwt: string,
  ): Promise<{ claims: JWTPayload; nitride?: string; acceptedUntil: number }> {
    const { getKey, rawKeys, issuer, nitride } = await this.keySource(req, c);
    const claims = isMlDsaJws(jwt)
      ? await this.verifyMlDsa(jwt, rawKeys, c, issuer)
      : await this.verifySignature(jwt, getKey, c, issuer);
    const acceptedUntil = checkTimeClaims(claims, role);
    if (nitride !== undefined || typeof claims.evidence_digest !== "string" || !this.hooks)
      return { claims, nitride, acceptedUntil };
    return {
      claims,
      nitride: await this.hooks.localAttestation(req.system, jwt, claims as Record<string, unknown>),
      acceptedUntil,
    };
  }

  /** ML-DSA-65 tokens (RFC 9964): signature against the AKP keys of the JWKS, then the issuer. */
  private async verifyMlDsa(
    jwt: string,
    rawKeys: (() => Promise<unknown[]>) | undefined,
    c: JwtConfig,
    issuer: string,
  ): Promise<JWTPayload> {
    const algorithms = c.jwt_supported_algs.length ? c.jwt_supported_algs : DEFAULT_ALGS;
    if (!algorithms.includes(ML_DSA_65))
      throw new LogicalError(403, "error validating token: signing algorithm not allowed");
    if (!rawKeys)
      throw new LogicalError(
        403,
        "error validating token: ML-DSA-65 tokens verify only against a JWKS (jwks_url, oidc_discovery_url or nitride_mount)",
      );
    try {
      return verifyMlDsaJwt(jwt, await rawKeys(), issuer ? { issuer } : {}).claims as JWTPayload;
    } catch (e) {
      if (e instanceof JwsVerificationError) {
        if (/iss claim/.test(e.message)) throw new LogicalError(403, "error validating token: iss claim is invalid");
        throw new LogicalError(403, "error validating token: signature does not verify with any configured key");
      }
      if (e instanceof JoseFormatError) throw new LogicalError(400, "jwt: not a well-formed signed JWT");
      throw e;
    }
  }

  private async verifySignature(
    jwt: string,
    getKey: JWTVerifyGetKey | KeyObject[],
    c: JwtConfig,
    issuer: string,
  ): Promise<JWTPayload> {
    const algorithms = c.jwt_supported_algs.length ? c.jwt_supported_algs : DEFAULT_ALGS;
    // jose applies one tolerance to exp, nbf and iat; Vault's leeways mean something else, so jose's
    // time checks are switched off here and checkTimeClaims applies Vault's rules.
    const opts = { algorithms, clockTolerance: Number.MAX_SAFE_INTEGER, ...(issuer ? { issuer } : {}) };
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

  private async login(req: LogicalRequest, f: FieldData): Promise<LogicalResponse> {
    const c = await readJson<JwtConfig>(req.storage, "config");
    if (!c) throw new LogicalError(400, "could not load configuration (POST config first)");
    const roleName = f.string("role") || c.default_role;
    if (!roleName) throw new LogicalError(400, "role: missing (and no default_role is configured)");
    const role = await readJson<JwtRole>(req.storage, `role/${roleName}`);
    if (!role) throw new LogicalError(400, `role "${roleName}" could not be found`);
    const jwt = f.string("jwt")!;
    const { claims, nitride, acceptedUntil } = await this.verify(req, c, role, jwt);

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
      if (RESERVED_METADATA.has(key)) continue; // a role stored before the check
      const v = claimAt(claims, claim);
      if (v !== undefined) metadata[key] = typeof v === "object" ? JSON.stringify(v) : String(v);
    }
    // Attested means: the signature verified against this runtime's own Nitride key ring. Claims
    // alone prove nothing (any key can sign a JWT with Nitride's iss and an evidence_digest).
    const attested = nitride !== undefined && typeof claims.evidence_digest === "string";
    let ttl = role.token_ttl;
    let maxTtl = role.token_max_ttl || undefined;
    if (attested) {
      for (const [claim, key] of ATTESTATION_METADATA)
        if (claims[claim] !== undefined) metadata[key] = String(claims[claim]);
      metadata[ATTESTED_META] = ATTESTED_BY_NITRIDE;
      metadata[ATTESTED_MOUNT_META] = nitride;
      // The login never outlives the attestation it rests on: its TTL and max TTL (so every renewal)
      // end at the Nitride token's exp.
      const left = (typeof claims.exp === "number" ? claims.exp : 0) - Math.floor(Date.now() / 1000);
      if (left < 1) throw new LogicalError(403, "error validating token: token is expired");
      ttl = ttl > 0 ? Math.min(ttl, left) : left;
      maxTtl = maxTtl ? Math.min(maxTtl, left) : left;
    }
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
    // A policy the attestation service manages for a workload goes only to an attested login of
    // exactly that workload (a role on another mount must not hand it to a look-alike JWT).
    for (const p of policies) {
      const w = this.hooks?.workloadOfPolicy(p);
      if (w !== undefined && (!attested || claims.sub !== w))
        throw new LogicalError(403, `token_policies: ${p} is granted only to an attested login of workload ${w}`);
    }
    // Last, so a refused login does not use up the JWT: one login per (iss, jti) while the JWT is valid.
    if (role.single_use_jti) {
      if (typeof claims.jti !== "string" || claims.jti === "")
        throw new LogicalError(403, "error validating token: the role requires a jti claim (single_use_jti)");
      await consumeJti(req.storage, typeof claims.iss === "string" ? claims.iss : "", claims.jti, acceptedUntil + 1);
    }
    return {
      auth: {
        policies,
        ttl,
        maxTtl,
        renewable: true,
        metadata,
        claims: attested ? (claims as Record<string, unknown>) : { sub: claims.sub, iss: claims.iss },
        displayName: String(user),
      },
    };
  }
}
