// The Nitride attestation service as a logical backend (mounted at "nitride/"): workloads, challenge,
// attest → workload token, explain, JWKS + OIDC discovery, key rotation, configuration and the
// provisioning bundle. See docs/nitride.md for the API and token claims.
import { createPublicKey } from "node:crypto";
import type { JWK } from "jose";
import { LogicalError, type LogicalBackend, type LogicalRequest, type LogicalResponse } from "../vault/backend.js";
import type { Storage } from "../storage/types.js";
import type { TrustConfig } from "../../attestation/policy.js";
import { b64Field, jsonBytes, optInt, readJson, reqString } from "../vault/fields.js";
import { evidenceFromJson } from "./evidence-json.js";
import { configFrom, configView, DEFAULT_CONFIG, trustFrom, type NitrideConfig } from "./config.js";
import { appraiseForWorkload, effectivePolicy } from "./appraisal.js";
import { NonceStore } from "./nonces.js";
import { SigningKeys } from "./signing-keys.js";
import { issuerFor, signWorkloadToken } from "./token.js";
import { provisionBundle } from "./provision.js";
import {
  checkWorkloadId,
  definitionFrom,
  deleteWorkload,
  listWorkloads,
  policyHash,
  readWorkload,
  workloadAclPolicy,
  workloadHistory,
  workloadVersion,
  writeWorkload,
} from "./workloads.js";

export interface NitrideOptions {
  /** Trust configuration used instead of the one derived from nitride/config (in-process embedding, tests). */
  trust?: TrustConfig;
}

/** The ACL policy name Nitride maintains for each workload (granted through a JWT role). */
export const workloadPolicyName = (id: string) => `nitride-workload-${id}`;

function ephemeralKey(data: Record<string, unknown>): { spki: Buffer; jwk: JWK } {
  const spki = b64Field(data, "ephemeral_public_key")!;
  let jwk: JWK;
  try {
    const k = createPublicKey({ key: spki, format: "der", type: "spki" });
    if (k.asymmetricKeyType !== "ec" || k.asymmetricKeyDetails?.namedCurve !== "secp384r1") throw new Error("curve");
    jwk = k.export({ format: "jwk" }) as JWK;
  } catch {
    throw new LogicalError(400, "ephemeral_public_key: must be the SPKI DER (base64) of a P-384 public key");
  }
  return { spki, jwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } };
}

/**
 * Documents fetched by OIDC/JWT clients must be the bare JSON, not Vault's envelope: Vault's raw
 * response convention (http_content_type / http_raw_body / http_status_code) tells the HTTP layer so.
 */
function rawJson(doc: object): LogicalResponse {
  return { data: { http_content_type: "application/json", http_raw_body: JSON.stringify(doc), http_status_code: 200 } };
}

function nonceField(data: Record<string, unknown>): Buffer {
  const n = b64Field(data, "nonce")!;
  if (n.length !== 32) throw new LogicalError(400, "nonce: must be the 32-byte nonce from nitride/challenge");
  return n;
}

export class NitrideBackend implements LogicalBackend {
  readonly type = "nitride";
  readonly unauthenticatedPaths = [
    "challenge",
    "attest",
    "jwks",
    ".well-known/openid-configuration",
    ".well-known/jwks.json",
  ];
  private readonly nonces = new NonceStore();
  private readonly keys = new SigningKeys();
  private configCache: { c: NitrideConfig; raw: string; at: number } | undefined;

  constructor(private readonly opts: NitrideOptions = {}) {}

  async handle(req: LogicalRequest): Promise<LogicalResponse | undefined> {
    const op = req.operation;
    const write = op === "update" || op === "create";
    const p = req.path.replace(/\/+$/, "");
    switch (p) {
      case "challenge":
        return write ? this.challenge(req) : undefined;
      case "attest":
        return write ? this.attest(req) : undefined;
      case "explain":
        return write ? this.explain(req) : undefined;
      case "jwks":
      case ".well-known/jwks.json":
        return op === "read"
          ? rawJson(await this.keys.jwks(req.storage, (await this.config(req.storage)).token_algorithm))
          : undefined;
      case ".well-known/openid-configuration":
        return op === "read" ? this.discovery(req) : undefined;
      case "keys/rotate":
        return write
          ? { data: await this.keys.rotate(req.storage, (await this.config(req.storage)).token_algorithm) }
          : undefined;
      case "config":
        return this.configure(req);
      case "provision":
        return op === "read" || write ? provisionBundle(req) : undefined;
      case "workloads":
        if (op !== "list" && op !== "read") return undefined;
        return this.listWorkloads(req);
    }
    const m = /^workloads\/([^/]+)(\/versions)?$/.exec(p);
    if (m)
      return m[2]
        ? this.versions(req, checkWorkloadId(m[1], "id"))
        : this.workloadCrud(req, checkWorkloadId(m[1], "id"));
    return undefined;
  }

  async existenceCheck(req: LogicalRequest): Promise<boolean> {
    const m = /^workloads\/([^/]+)$/.exec(req.path);
    if (m) return (await req.storage.get(`workloads/${m[1]}`)) !== undefined;
    return true;
  }

  // ---- configuration ----

  private async config(storage: Storage): Promise<NitrideConfig> {
    if (this.configCache && Date.now() - this.configCache.at < 5_000) return this.configCache.c;
    const raw = (await storage.get("config"))?.toString("utf8") ?? "";
    // Unchanged in storage → the same object (so the trust built from it stays cached).
    if (this.configCache && this.configCache.raw === raw) {
      this.configCache.at = Date.now();
      return this.configCache.c;
    }
    const c: NitrideConfig = { ...DEFAULT_CONFIG, ...(raw ? (JSON.parse(raw) as Partial<NitrideConfig>) : {}) };
    this.configCache = { c, raw, at: Date.now() };
    return c;
  }

  private async configure(req: LogicalRequest): Promise<LogicalResponse | undefined> {
    if (req.operation === "read") return { data: configView(await this.config(req.storage)) };
    if (req.operation !== "update" && req.operation !== "create") return undefined;
    const c = await req.storage.transaction(async (tx) => {
      const next = configFrom(req.data, {
        ...DEFAULT_CONFIG,
        ...((await readJson<NitrideConfig>(tx, "config")) ?? {}),
      });
      await tx.put("config", jsonBytes(next));
      return next;
    });
    this.configCache = { c, raw: JSON.stringify(c), at: Date.now() };
    // A new token algorithm takes effect through one rotation: tokens of the old key keep verifying.
    const active = await this.keys.activeAlgorithm(req.storage);
    if (active !== undefined && active !== c.token_algorithm) await this.keys.rotate(req.storage, c.token_algorithm);
    return { data: configView(c) };
  }

  /**
   * One TrustConfig object per configuration: the verifier caches parsed and verified CA material
   * per trust object, so rebuilding it per request would redo that work on every attestation.
   */
  private trustCache = new WeakMap<NitrideConfig, TrustConfig>();
  private trust(c: NitrideConfig): TrustConfig {
    if (this.opts.trust) return this.opts.trust;
    let t = this.trustCache.get(c);
    if (!t) this.trustCache.set(c, (t = trustFrom(c)));
    return t;
  }

  // ---- workloads ----

  private async listWorkloads(req: LogicalRequest): Promise<LogicalResponse> {
    const keys = await listWorkloads(req.storage);
    if (!keys.length) throw new LogicalError(404, "no workloads");
    return { data: { keys } };
  }

  private async workloadCrud(req: LogicalRequest, id: string): Promise<LogicalResponse | undefined> {
    switch (req.operation) {
      case "read": {
        const v = req.query.version ? optInt(req.query, "version", 0) : 0;
        if (v > 0) {
          const h = await workloadVersion(req.storage, id, v);
          if (!h || h.deleted) throw new LogicalError(404, `workload ${id} has no version ${v}`);
          return {
            data: {
              id,
              version: h.version,
              updated_time: h.time,
              ...h.definition,
              policy_hash: policyHash(h.definition!),
            },
          };
        }
        const rec = await readWorkload(req.storage, id);
        if (!rec) throw new LogicalError(404, `workload not found: ${id}`);
        return {
          data: {
            id,
            version: rec.version,
            created_time: rec.created_time,
            updated_time: rec.updated_time,
            ...rec.definition,
            policy_hash: policyHash(rec.definition),
            acl_policy: workloadPolicyName(id),
          },
        };
      }
      case "create":
      case "update": {
        const def = definitionFrom(req.data);
        const rec = await req.storage.transaction((tx) => writeWorkload(tx, id, def));
        await this.syncAclPolicy(req, id, workloadAclPolicy(req.mountPoint, def));
        return { data: { id, version: rec.version, policy_hash: policyHash(def), acl_policy: workloadPolicyName(id) } };
      }
      case "delete": {
        const existed = await req.storage.transaction((tx) => deleteWorkload(tx, id));
        if (existed) await this.syncAclPolicy(req, id, undefined);
        return {};
      }
      default:
        return undefined;
    }
  }

  /** Keeps the workload's ACL policy in sys/policies/acl in step with its definition. */
  private async syncAclPolicy(req: LogicalRequest, id: string, policy: string | undefined): Promise<void> {
    const path = `sys/policies/acl/${workloadPolicyName(id)}`;
    if (policy === undefined) await req.system.internalRequest("delete", path);
    else await req.system.internalRequest("update", path, { policy });
  }

  private async versions(req: LogicalRequest, id: string): Promise<LogicalResponse | undefined> {
    if (req.operation !== "read" && req.operation !== "list") return undefined;
    const h = await workloadHistory(req.storage, id);
    if (!h.length) throw new LogicalError(404, `workload not found: ${id}`);
    return {
      data: {
        versions: h.map((e) => ({
          version: e.version,
          time: e.time,
          deleted: e.deleted,
          ...(e.definition ? { policy_hash: policyHash(e.definition) } : {}),
        })),
      },
    };
  }

  // ---- attestation ----

  private async challenge(req: LogicalRequest): Promise<LogicalResponse> {
    const id = checkWorkloadId(reqString(req.data, "workload_id"));
    if (!(await readWorkload(req.storage, id))) throw new LogicalError(404, `workload not found: ${id}`);
    const c = await this.config(req.storage);
    const { nonce, expiresAt } = await this.nonces.issue(req.storage, id, c.challenge_ttl);
    return {
      data: { workload_id: id, nonce: nonce.toString("base64url"), expires_at: expiresAt, ttl: c.challenge_ttl },
    };
  }

  private async attest(req: LogicalRequest): Promise<LogicalResponse> {
    const id = checkWorkloadId(reqString(req.data, "workload_id"));
    const nonce = nonceField(req.data);
    const eph = ephemeralKey(req.data);
    const evidence = evidenceFromJson(req.data.evidence);
    const rec = await readWorkload(req.storage, id);
    if (!rec) throw new LogicalError(404, `workload not found: ${id}`);
    const consumed = await this.nonces.consume(req.storage, nonce, id);
    if (consumed !== "ok") {
      const why = {
        unknown: "unknown or already used",
        expired: "expired",
        "other-workload": "issued for another workload",
      }[consumed];
      throw new LogicalError(403, `nonce: ${why}; request a new challenge`);
    }
    const c = await this.config(req.storage);
    const verdict = await appraiseForWorkload({
      evidence,
      workload: rec.definition,
      trust: this.trust(c),
      binding: { nonce, publicKeySpki: eph.spki },
    });
    if (!verdict.accepted || !verdict.claims) {
      const failed = verdict.checks.filter((x) => !x.ok).map((x) => x.id);
      return { status: 403, data: { error: `attestation refused: ${failed.join(", ")}`, workload_id: id, verdict } };
    }
    const ttl = rec.definition.token_ttl ?? c.token_ttl;
    const { token, claims } = await signWorkloadToken({
      issuer: issuerFor(req.system.apiAddr(), req.mountPoint),
      audience: c.audience,
      workloadId: id,
      ttlS: ttl,
      verdict,
      refVersion: rec.version,
      policyHash: policyHash(rec.definition),
      ephemeralJwk: eph.jwk,
      key: await this.keys.current(req.storage, c.token_algorithm),
    });
    // The token is not a sealable secret: the caller has no attested login yet. It is short-lived and
    // bound (cnf) to the ephemeral key; roles with seal_responses make that binding protect the secrets.
    return { data: { token, expires_at: claims.exp, workload_id: id, ref_version: rec.version, verdict } };
  }

  private async explain(req: LogicalRequest): Promise<LogicalResponse> {
    const id = checkWorkloadId(reqString(req.data, "workload_id"));
    const evidence = evidenceFromJson(req.data.evidence);
    const rec = await readWorkload(req.storage, id);
    if (!rec) throw new LogicalError(404, `workload not found: ${id}`);
    // A nonce/key pair, when given, is only used to check the binding: nothing is consumed or issued.
    const binding =
      req.data.nonce !== undefined || req.data.ephemeral_public_key !== undefined
        ? { nonce: nonceField(req.data), publicKeySpki: ephemeralKey(req.data).spki }
        : undefined;
    const c = await this.config(req.storage);
    const verdict = await appraiseForWorkload({
      evidence,
      workload: rec.definition,
      trust: this.trust(c),
      binding,
      explain: true,
    });
    return {
      data: {
        workload_id: id,
        ref_version: rec.version,
        policy_hash: policyHash(rec.definition),
        would_accept: verdict.accepted,
        verdict,
        effective_policy: effectivePolicy(rec.definition, binding !== undefined),
      },
    };
  }

  private async discovery(req: LogicalRequest): Promise<LogicalResponse> {
    const iss = issuerFor(req.system.apiAddr(), req.mountPoint);
    const algs = await this.keys.algorithms(req.storage, (await this.config(req.storage)).token_algorithm);
    return rawJson({
      issuer: iss,
      jwks_uri: `${iss}/jwks`,
      response_types_supported: ["id_token"],
      subject_types_supported: ["public"],
      id_token_signing_alg_values_supported: algs,
      scopes_supported: ["openid"],
      claims_supported: [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "platform",
        "measurement",
        "rtmrs",
        "tcb",
        "evidence_digest",
        "ref_version",
        "policy_hash",
        "simulated",
        "cnf",
      ],
    });
  }
}
