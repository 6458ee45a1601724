// The Nitride attestation service as a logical backend (mounted at "nitride/"): workloads, challenge,
// attest → workload token, explain, JWKS + OIDC discovery, key rotation, configuration and the
// provisioning bundle. See docs/nitride.md for the API and token claims.
import { createPublicKey, randomUUID } from "node:crypto";
import type { JWK } from "jose";
import { LogicalError, type LogicalBackend, type LogicalRequest, type LogicalResponse } from "../vault/backend.js";
import type { Storage } from "../storage/types.js";
import type { TrustConfig } from "../../attestation/policy.js";
import { b64Field, jsonBytes, optString, readJson, reqString } from "../vault/fields.js";
import {
  PathRouter,
  segment,
  withFields,
  type FieldSchema,
  type FieldSchemas,
  type TableBackend,
} from "../vault/framework.js";
import { evidenceFromJson } from "./evidence-json.js";
import { hybridBindingMaterial } from "../../attestation/binding.js";
import { checkMlKemPublicKey, HybridSealError } from "../../attestation/hybrid-seal.js";
import {
  configFrom,
  configView,
  DEFAULT_CONFIG,
  runtimeAudience,
  trustFrom,
  workloadTokenAudience,
  type NitrideConfig,
  type TokenAlgorithm,
} from "./config.js";
import { appraiseForWorkload, effectivePolicy } from "./appraisal.js";
import { NonceStore } from "./nonces.js";
import { answerCheck, credentialTarget, EkCredentialStore } from "./ek-credential.js";
import { ekCredentialPending, settleEkCredential } from "../../attestation/tpm/ek-credential.js";
import type { Verdict } from "../../attestation/types.js";
import { SigningKeys } from "./signing-keys.js";
import { issuerFor, signWorkloadToken } from "./token.js";
import { provisionBundle } from "./provision.js";
import { assertCallerHolds, forgetPolicyOwned, markPolicyOwned, nitrideOwnsPolicy } from "./delegation.js";
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
  /** The mount's uuid (the mount table's): names this runtime in the default audience of its workload tokens. */
  mountUuid?: string;
}

/** The ACL policy name Nitride maintains for each workload (granted through a JWT role). */
export const WORKLOAD_POLICY_PREFIX = "nitride-workload-";
export const workloadPolicyName = (id: string) => `${WORKLOAD_POLICY_PREFIX}${id}`;

/**
 * The optional ML-KEM-768 encapsulation key of a hybrid (post-quantum) attestation, checked per FIPS 203,
 * and the key material REPORT_DATA must bind: the SPKI alone (classical) or both keys (hybridBindingMaterial).
 */
function boundKeys(data: Record<string, unknown>, spki: Buffer): { mlkem?: Buffer; material: Buffer } {
  const ek = b64Field(data, "mlkem_public_key", false);
  if (!ek?.length) return { material: spki };
  try {
    checkMlKemPublicKey(ek);
  } catch (e) {
    if (e instanceof HybridSealError) throw new LogicalError(400, e.message);
    throw e;
  }
  return { mlkem: ek, material: hybridBindingMaterial(spki, ek) };
}

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

function refused(workloadId: string, verdict: Verdict): LogicalResponse {
  const failed = verdict.checks.filter((x) => !x.ok).map((x) => x.id);
  return {
    status: 403,
    data: { error: `attestation refused: ${failed.join(", ")}`, workload_id: workloadId, verdict },
  };
}

/**
 * Documents fetched by OIDC/JWT clients must be the bare JSON, not Vault's envelope: Vault's raw
 * response convention (http_content_type / http_raw_body / http_status_code) tells the HTTP layer so.
 */
function rawJson(doc: object): LogicalResponse {
  return { data: { http_content_type: "application/json", http_raw_body: JSON.stringify(doc), http_status_code: 200 } };
}

/** The user-data hash the guest reports (optional; bound into REPORT_DATA when the workload registers one). */
function userDataField(data: Record<string, unknown>): string | undefined {
  const v = data.user_data_sha256;
  if (v === undefined) return undefined;
  if (typeof v !== "string" || !/^[0-9a-fA-F]{64}$/.test(v))
    throw new LogicalError(400, "user_data_sha256: must be 64 hex digits");
  return v.toLowerCase();
}

function nonceField(data: Record<string, unknown>): Buffer {
  const n = b64Field(data, "nonce")!;
  if (n.length !== 32) throw new LogicalError(400, "nonce: must be the 32-byte nonce from nitride/challenge");
  return n;
}

const WORKLOAD_ID: FieldSchema = { type: "string", required: true, description: "workload id" };
const WORKLOAD_ID_CAPTURE: FieldSchema = { type: "string", description: "workload id" };

const ATTEST_FIELDS: FieldSchemas = {
  workload_id: WORKLOAD_ID,
  nonce: { type: "string", description: "base64 nonce from nitride/challenge" },
  ephemeral_public_key: { type: "string", description: "base64 SPKI DER of the P-384 key bound in REPORT_DATA" },
  mlkem_public_key: {
    type: "string",
    description: "base64 ML-KEM-768 encapsulation key bound in REPORT_DATA with the P-384 key (hybrid PQ sealing)",
  },
  evidence: { type: "any", description: "wire evidence (kind + report and collateral)" },
  user_data_sha256: {
    type: "string",
    description: "SHA-256 (hex) of the user-data the guest booted with, bound into REPORT_DATA (binding v2)",
  },
};

const CREDENTIAL_FIELDS: FieldSchemas = {
  workload_id: WORKLOAD_ID,
  nonce: { type: "string", description: "base64 nonce of the attestation that received the credential" },
  secret: { type: "string", description: "base64 secret recovered with TPM2_ActivateCredential" },
  error: { type: "string", description: "why the guest could not activate the credential (refuses it)" },
};

const CONFIG_FIELDS: FieldSchemas = {
  audience: {
    type: "string",
    description: "aud of workload tokens; empty (default): this runtime's audience and that + ':<workload id>'",
  },
  token_ttl: { type: "duration", description: "workload token lifetime (≤ 1h)" },
  token_algorithm: { type: "string", description: "ES384 (default), EdDSA or ML-DSA-65" },
  challenge_ttl: { type: "duration", description: "nonce lifetime (≤ 600s)" },
  ek_credential_ttl: { type: "duration", description: "how long an EK credential may go unanswered (≤ 600s)" },
  kds: { type: "string", description: "AMD KDS: online, offline or off" },
  kds_cache_dir: { type: "string", description: "AMD KDS cache directory" },
  amd_cert_dir: { type: "string", description: "directory of AMD certificates" },
  intel_pcs: { type: "string", description: "Intel PCS: online or off" },
  simulated_tdx_roots: { type: "comma-string-slice", description: "SHA-256 of accepted simulated TDX roots" },
  simulated_nitro_roots: {
    type: "comma-string-slice",
    description: "DER (base64) of accepted simulated AWS Nitro roots (NitroTPM documents)",
  },
  accept_simulated: { type: "bool", description: "accept simulated evidence (dev only)" },
  simulated_snp_anchors: { type: "any", description: "accepted simulated SNP ARKs" },
  gce_tcb_roots: { type: "any", description: "GCE-cc-tcb-root certificate(s), PEM, for Google launch endorsements" },
  simulated_gce_ak_roots: { type: "any", description: "simulated GCE EK/AK CA roots, PEM (dev only)" },
};

const WORKLOAD_FIELDS: FieldSchemas = {
  id: WORKLOAD_ID_CAPTURE,
  version: { type: "int", description: "read: a past version" },
  description: { type: "string", description: "description" },
  platforms: { type: "comma-string-slice", description: "snp, tdx, azure-snp…" },
  reference_values: { type: "any", description: "snp_measurements, tdx, azure" },
  policy: { type: "any", description: "appraisal policy" },
  secrets: { type: "any", description: "kv, pki, ssh, disk_key" },
  token_ttl: { type: "duration", description: "workload token lifetime (default: the config's)" },
  require_pq_hybrid: {
    type: "bool",
    description: "refuse classical-only attestations: answers are sealed with hybrid ML-KEM-768 + P-384",
  },
  token_algorithm: {
    type: "string",
    description: "sign this workload's tokens with ES384, EdDSA or ML-DSA-65 (default: the config's)",
  },
};

export class NitrideBackend implements LogicalBackend, TableBackend {
  readonly type = "nitride";
  readonly unauthenticatedPaths = [
    "challenge",
    "attest",
    "attest/credential",
    "jwks",
    "jwks/pq",
    ".well-known/openid-configuration",
    ".well-known/jwks.json",
  ];
  private readonly nonces = new NonceStore();
  private readonly ekCredentials = new EkCredentialStore();
  private readonly keys = new SigningKeys();
  private configCache: { c: NitrideConfig; raw: string; at: number } | undefined;

  constructor(private readonly opts: NitrideOptions = {}) {}

  readonly router = new PathRouter([
    {
      pattern: "challenge",
      description: "a single-use nonce for one workload's attestation (unauthenticated)",
      fields: { workload_id: WORKLOAD_ID },
      operations: { update: (req, f) => this.challenge(withFields(req, f)) },
    },
    {
      pattern: "attest",
      description: "evidence + nonce + ephemeral key → workload token (unauthenticated)",
      fields: ATTEST_FIELDS,
      operations: { update: (req, f) => this.attest(withFields(req, f)) },
    },
    {
      pattern: "attest/credential",
      description:
        "the answer to an EK credential (TPM2_ActivateCredential's secret) → workload token (unauthenticated)",
      fields: CREDENTIAL_FIELDS,
      operations: { update: (req, f) => this.attestCredential(withFields(req, f)) },
    },
    {
      pattern: "explain",
      description: "appraise evidence against a workload without consuming or issuing anything",
      fields: ATTEST_FIELDS,
      operations: { update: (req, f) => this.explain(withFields(req, f)) },
    },
    {
      pattern: "(?:jwks|\\.well-known/jwks\\.json)",
      description: "the ES384/EdDSA token signing keys, JWKS (unauthenticated); ML-DSA-65 keys are at jwks/pq",
      operations: {
        read: async (req) =>
          rawJson(await this.keys.jwks(req.storage, (await this.config(req.storage)).token_algorithm, { pq: false })),
      },
    },
    {
      pattern: "jwks/pq",
      description: "every token signing key incl. ML-DSA-65 (kty AKP, RFC 9964), JWKS (unauthenticated)",
      operations: {
        read: async (req) =>
          rawJson(await this.keys.jwks(req.storage, (await this.config(req.storage)).token_algorithm, { pq: true })),
      },
    },
    {
      pattern: "\\.well-known/openid-configuration",
      description: "OIDC discovery (unauthenticated)",
      operations: { read: (req) => this.discovery(req) },
    },
    {
      pattern: "keys/rotate",
      description: "rotate the token signing key",
      operations: {
        update: async (req) => ({
          data: await this.keys.rotate(req.storage, (await this.config(req.storage)).token_algorithm),
        }),
      },
    },
    {
      pattern: "config",
      description: "audience, TTLs, token algorithm, collateral sources, simulator trust",
      fields: CONFIG_FIELDS,
      operations: {
        read: async (req) => ({
          data: { ...configView(await this.config(req.storage)), default_audience: this.runtimeAudience() },
        }),
        update: (req, f) => this.configure(withFields(req, f)),
      },
    },
    {
      pattern: "provision",
      description: "the provisioning bundle of the attested caller's workload",
      fields: { host_keys: { type: "comma-string-slice", description: "SSH host public keys to certify (≤ 8)" } },
      operations: {
        read: (req) => provisionBundle(req),
        update: (req, f) => provisionBundle(withFields(req, f)),
      },
    },
    {
      pattern: "workloads",
      description: "workload ids",
      operations: { list: (req) => this.listWorkloads(req), read: (req) => this.listWorkloads(req) },
    },
    {
      pattern: `workloads/${segment("id")}`,
      description: "a workload definition: reference values, policy, secrets; every write is a new version",
      fields: WORKLOAD_FIELDS,
      existenceCheck: async (req, f) => (await req.storage.get(`workloads/${f.string("id")}`)) !== undefined,
      operations: {
        read: (req, f) => this.readWorkload(req, checkWorkloadId(f.string("id")!, "id"), f.int("version") ?? 0),
        update: (req, f) => this.writeWorkload(withFields(req, f), checkWorkloadId(f.string("id")!, "id")),
        delete: (req, f) => this.deleteWorkload(req, checkWorkloadId(f.string("id")!, "id")),
        list: async (_req, f) => {
          checkWorkloadId(f.string("id")!, "id");
          return undefined;
        },
        patch: async (_req, f) => {
          checkWorkloadId(f.string("id")!, "id");
          return undefined;
        },
      },
    },
    {
      pattern: `workloads/${segment("id")}/versions`,
      description: "a workload's version history",
      fields: { id: WORKLOAD_ID_CAPTURE },
      operations: {
        read: (req, f) => this.versions(req, checkWorkloadId(f.string("id")!, "id")),
        list: (req, f) => this.versions(req, checkWorkloadId(f.string("id")!, "id")),
      },
    },
  ]);

  existenceCheck(req: LogicalRequest): Promise<boolean> {
    return this.router.existenceCheck(req);
  }

  handle(req: LogicalRequest): Promise<LogicalResponse | undefined> {
    return this.router.handle(req);
  }

  // ---- configuration ----

  /** The mount's uuid; a backend made without one (an embedding without a mount table) gets one per process. */
  private mountUuid(): string {
    return (this.opts.mountUuid ??= randomUUID());
  }

  /** This runtime's own audience (the default of workload tokens, with the workload id as a second value). */
  private runtimeAudience(): string {
    return runtimeAudience(this.mountUuid());
  }

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

  private async configure(req: LogicalRequest): Promise<LogicalResponse> {
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
    return { data: { ...configView(c), default_audience: this.runtimeAudience() } };
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

  private async readWorkload(req: LogicalRequest, id: string, v: number): Promise<LogicalResponse> {
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

  private async writeWorkload(req: LogicalRequest, id: string): Promise<LogicalResponse> {
    const def = definitionFrom(req.data);
    await assertCallerHolds(req, id, def);
    const prev = await readWorkload(req.storage, id);
    if (!(await nitrideOwnsPolicy(req, id, workloadPolicyName(id), prev?.definition)))
      throw new LogicalError(
        409,
        `acl policy ${workloadPolicyName(id)} exists and was not created by Nitride; delete or rename it before registering workload ${id}`,
      );
    const rec = await req.storage.transaction((tx) => writeWorkload(tx, id, def));
    await this.syncAclPolicy(req, id, workloadAclPolicy(req.mountPoint, def));
    return { data: { id, version: rec.version, policy_hash: policyHash(def), acl_policy: workloadPolicyName(id) } };
  }

  private async deleteWorkload(req: LogicalRequest, id: string): Promise<LogicalResponse> {
    const prev = await readWorkload(req.storage, id);
    const owned = await nitrideOwnsPolicy(req, id, workloadPolicyName(id), prev?.definition);
    const existed = await req.storage.transaction((tx) => deleteWorkload(tx, id));
    if (existed && owned) await this.syncAclPolicy(req, id, undefined);
    return {};
  }

  /** Keeps the workload's ACL policy in sys/policies/acl in step with its definition. */
  private async syncAclPolicy(req: LogicalRequest, id: string, policy: string | undefined): Promise<void> {
    const path = `sys/policies/acl/${workloadPolicyName(id)}`;
    if (policy === undefined) {
      await req.system.internalRequest("delete", path);
      await forgetPolicyOwned(req.storage, id);
    } else {
      await req.system.internalRequest("update", path, { policy });
      await markPolicyOwned(req.storage, id, policy);
    }
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
    const bound = boundKeys(req.data, eph.spki);
    const evidence = evidenceFromJson(req.data.evidence);
    const rec = await readWorkload(req.storage, id);
    if (!rec) throw new LogicalError(404, `workload not found: ${id}`);
    // Refused before the nonce is consumed: a classical-only agent learns why and can retry with a hybrid key.
    if (rec.definition.require_pq_hybrid && !bound.mlkem)
      throw new LogicalError(
        403,
        "mlkem_public_key: the workload requires hybrid post-quantum sealing (require_pq_hybrid); " +
          "a classical-only (P-384) attestation is refused",
      );
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
      binding: { nonce, publicKeySpki: bound.material },
      userDataSha256: userDataField(req.data),
    });
    // EK credential activation (vtpm.ekPublics): everything else holds; the AK must still prove it lives in the
    // registered EK's TPM. A second round trip (ek-credential.ts); no token until it is answered.
    const ekPublics = rec.definition.policy?.vtpm?.ekPublics;
    if (ekPublics?.length && verdict.claims && ekCredentialPending(verdict)) {
      const challenge = await this.ekCredentials.issue(
        req.storage,
        nonce,
        credentialTarget(evidence, ekPublics),
        c.ek_credential_ttl,
        {
          workload_id: id,
          policy_hash: policyHash(rec.definition),
          ref_version: rec.version,
          verdict,
          ephemeral_jwk: eph.jwk,
          ...(bound.mlkem ? { mlkem_public_key: bound.mlkem.toString("base64") } : {}),
        },
      );
      return { status: 202, data: { workload_id: id, ek_credential: challenge, verdict } };
    }
    if (!verdict.accepted || !verdict.claims) return refused(id, verdict);
    return this.issueToken(req, {
      workloadId: id,
      verdict,
      refVersion: rec.version,
      policyHash: policyHash(rec.definition),
      tokenTtl: rec.definition.token_ttl,
      tokenAlgorithm: rec.definition.token_algorithm,
      ephemeralJwk: eph.jwk,
      mlkem: bound.mlkem,
    });
  }

  /** The second half of an attestation with EK credential activation: the activated secret → the token. */
  private async attestCredential(req: LogicalRequest): Promise<LogicalResponse> {
    const id = checkWorkloadId(reqString(req.data, "workload_id"));
    const nonce = nonceField(req.data);
    const secret = b64Field(req.data, "secret", false);
    const error = optString(req.data, "error");
    if (!secret?.length && error === undefined)
      throw new LogicalError(400, "secret: the base64 secret TPM2_ActivateCredential recovered (or error) is required");
    if (secret && secret.length > 64) throw new LogicalError(400, "secret: at most 64 bytes");
    const pending = await this.ekCredentials.take(req.storage, nonce);
    if (!pending)
      throw new LogicalError(
        403,
        "nonce: no EK credential is pending for this attestation (never issued, already answered, or swept after expiry); attest again",
      );
    const verdict = settleEkCredential(
      pending.verdict,
      answerCheck(pending, id, { secret, error: error?.slice(0, 300) }),
    );
    if (!verdict.accepted) return refused(id, verdict);
    const rec = await readWorkload(req.storage, id);
    if (!rec || policyHash(rec.definition) !== pending.policy_hash)
      throw new LogicalError(
        403,
        "the workload's reference values or policy changed between attest and the credential's answer; attest again",
      );
    return this.issueToken(req, {
      workloadId: id,
      verdict,
      refVersion: pending.ref_version,
      policyHash: pending.policy_hash,
      tokenTtl: rec.definition.token_ttl,
      tokenAlgorithm: rec.definition.token_algorithm,
      ephemeralJwk: pending.ephemeral_jwk,
      mlkem: pending.mlkem_public_key ? Buffer.from(pending.mlkem_public_key, "base64") : undefined,
    });
  }

  private async issueToken(
    req: LogicalRequest,
    t: {
      workloadId: string;
      verdict: Verdict;
      refVersion: number;
      policyHash: string;
      tokenTtl?: number;
      tokenAlgorithm?: TokenAlgorithm;
      ephemeralJwk: JWK;
      mlkem?: Buffer;
    },
  ): Promise<LogicalResponse> {
    const c = await this.config(req.storage);
    const { token, claims } = await signWorkloadToken({
      issuer: issuerFor(req.system.apiAddr(), req.mountPoint),
      audience: workloadTokenAudience(c, this.mountUuid(), t.workloadId),
      workloadId: t.workloadId,
      ttlS: t.tokenTtl ?? c.token_ttl,
      verdict: t.verdict,
      refVersion: t.refVersion,
      policyHash: t.policyHash,
      ephemeralJwk: t.ephemeralJwk,
      ...(t.mlkem ? { mlkemPublicKey: t.mlkem } : {}),
      key: await this.keys.current(req.storage, c.token_algorithm, t.tokenAlgorithm),
    });
    // The token is not a sealable secret: the caller has no attested login yet. It is short-lived and
    // bound (cnf) to the ephemeral key; roles with seal_responses make that binding protect the secrets.
    return {
      data: {
        token,
        expires_at: claims.exp,
        workload_id: t.workloadId,
        ref_version: t.refVersion,
        verdict: t.verdict,
      },
    };
  }

  private async explain(req: LogicalRequest): Promise<LogicalResponse> {
    const id = checkWorkloadId(reqString(req.data, "workload_id"));
    const evidence = evidenceFromJson(req.data.evidence);
    const rec = await readWorkload(req.storage, id);
    if (!rec) throw new LogicalError(404, `workload not found: ${id}`);
    // A nonce/key pair, when given, is only used to check the binding: nothing is consumed or issued.
    const binding =
      req.data.nonce !== undefined || req.data.ephemeral_public_key !== undefined
        ? { nonce: nonceField(req.data), publicKeySpki: boundKeys(req.data, ephemeralKey(req.data).spki).material }
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
