// The unsealed peer's side of peer unseal (docs/trust-bootstrap.md "Peer unseal"). Two unauthenticated paths —
// the caller has no token, it is sealed; its hardware evidence is its credential:
//   POST /v1/sys/peer-unseal/challenge → a 32-byte nonce, single use, 60 s, issued by THIS replica
//   POST /v1/sys/peer-unseal/share     {nonce, evidence, p384_public_key, mlkem_public_key}
//        → this replica's share, hybrid-sealed (ML-KEM-768 + P-384) to the two keys the evidence binds
// The share is released only when every check passes, each named in the refusal:
//   peer.unsealed       this replica is unsealed (a sealed one has nothing to give)
//   peer.configured     the runtime was initialised with peer_threshold
//   peer.nonce          the nonce was issued by this replica, is unexpired and unused (consumed whatever follows)
//   <appraisal checks>  signature, chain to a trusted root, TCB, debug/migration refused, and the replica set's
//                       reference values (reference.ts): policy.measurement, policy.host-data, tdx rtmrs, …
//   peer.launch-policy  (SEV-SNP) the guest POLICY equals this replica's
//   peer.key-binding    REPORT_DATA = peerUnsealReportData(nonce, the submitted keys)
//   peer.chip-id        (SEV-SNP) this replica's own CHIP_ID and the requester's are unmasked (hardware.ts)
//   peer.platform-id    (TDX) this replica's own PCK certificate and the requester's name a platform (PPID)
//   peer.instance-id    (launch_binds_instance_id) this replica's own instance is the one its launch names
// The share released is the one of the slot held by this replica's HARDWARE (its chip / platform), not by its
// process: a restart on the same chip, or another VM of the image there, releases the same share index again.
// Every release and refusal is audited with what was checked (measurement, evidence digest, the requester's key
// digest, the share index) — never the share.
import { createHash, createPublicKey } from "node:crypto";
import type { FastifyInstance, FastifyReply } from "fastify";
import type { JWK } from "jose";
import { appraise } from "../../attestation/appraise.js";
import { hybridBindingMaterial, peerUnsealReportData } from "../../attestation/binding.js";
import { checkMlKemPublicKey, hybridSeal, p384Point, HybridSealError } from "../../attestation/hybrid-seal.js";
import type { TrustConfig } from "../../attestation/policy.js";
import type { Check } from "../../attestation/types.js";
import { decodeEvidence } from "../../protocol/evidence.js";
import { WireFormatError } from "../../protocol/errors.js";
import { LogicalError, type LogicalRequest } from "../vault/backend.js";
import { errorResponse, type Core } from "../vault/core.js";
import { PathRouter, type FieldData } from "../vault/framework.js";
import { PrefixedStorage } from "../storage/prefixed.js";
import { newRequestId, type AuditRequest } from "../audit/broker.js";
import { NonceStore } from "../nitride/nonces.js";
import type { ReplicaReference } from "./reference.js";
import { hardwareIdentity } from "./hardware.js";
import { launchNamesInstance } from "./instance.js";

/** The payload sealed to the requester (peer-unseal share format v1). */
export interface PeerSharePayload {
  v: 1;
  /** Shamir share, base64. */
  share: string;
  index: number;
  threshold: number;
  /** The challenge this answers, hex: the requester checks it is its own. */
  nonce: string;
  /** The releasing peer's attested TLS key: the requester checks it is the key it verified. */
  peer_spki_sha256: string;
}

export const PEER_UNSEAL_SHARE_CTY = "buckypaper-peer-unseal-share+json";
const NONCE_TTL_S = 60;
const HEADERS = { "cache-control": "no-store", "x-content-type-options": "nosniff" };

export interface PeerUnsealServiceOptions {
  core: Core;
  /** SHA-256 (hex) of this replica's attested TLS key: the nonce issuer, named in the sealed answer. */
  holder: () => string;
  /** This replica's own reference values and hardware identity (reference.ts), once from its own evidence. */
  reference: () => Promise<ReplicaReference>;
  /** Roots the requester's evidence must chain to (vendor roots; simulated ones only in tests / locally). */
  trust: TrustConfig;
  /**
   * `peer_unseal.launch_binds_instance_id`: release only while this replica's instance id is the one its launch's
   * HOST_DATA / MRCONFIGID names (a requester's launch equals ours: policy.host-data, policy.mrconfigid).
   */
  launchBindsInstanceId?: boolean;
}

/** A refusal that names its check. */
class Refused extends LogicalError {
  constructor(
    status: number,
    readonly check: string,
    detail: string,
  ) {
    super(status, `peer-unseal refused: ${check}: ${detail}`);
  }
}

/** A request as the share handler sees it: the audit record it fills in travels with it. */
type PeerRequest = LogicalRequest & { audit: AuditRequest };

const refuseFirst = (checks: Check[]) => {
  const failed = checks.find((c) => !c.ok);
  return failed ? new Refused(403, failed.id, failed.detail) : undefined;
};

export class PeerUnsealService {
  private readonly nonces = new NonceStore();
  constructor(private readonly o: PeerUnsealServiceOptions) {}

  /** The two paths, Vault-style: patterns with field schemas (the router validates and names bad fields). */
  readonly router = new PathRouter([
    {
      pattern: "peer-unseal/challenge",
      description: "a single-use nonce for one share request to this replica",
      operations: { update: () => this.challenge() },
    },
    {
      pattern: "peer-unseal/share",
      description: "this replica's unseal-key share, sealed to a requester that attests as a member of the set",
      fields: {
        nonce: { type: "string", required: true, description: "the challenge nonce (64 hex digits)" },
        evidence: { type: "any", required: true, description: "SNP report or TDX quote binding nonce and keys" },
        p384_public_key: { type: "map", required: true, description: "the requester's ephemeral P-384 JWK" },
        mlkem_public_key: { type: "string", required: true, description: "its ML-KEM-768 key, base64" },
      },
      operations: { update: (req, f) => this.share(req, f) },
    },
  ]);

  private storage() {
    return new PrefixedStorage(this.o.core.barrier, "core/peer-unseal/");
  }

  private async ready(): Promise<void> {
    const core = this.o.core;
    if (core.sealed) throw new Refused(503, "peer.unsealed", "this replica is sealed; it has no share to release");
    if (!(await core.initialized()) || core.sealStatus().t === 0)
      throw new Refused(400, "peer.configured", "this runtime is not initialised");
  }

  /**
   * The slot holder: this replica's hardware identity; without one — or, with launch_binds_instance_id, while its
   * own instance is not the one its launch names — it releases nothing (named check).
   */
  private async ownSlotHolder(): Promise<string> {
    const ref = await this.o.reference();
    if (this.o.launchBindsInstanceId) {
      const mine = launchNamesInstance(ref, this.o.core.instanceId, "this replica's own");
      if (!mine.ok) throw new Refused(403, mine.id, mine.detail);
    }
    const own = ref.hardware;
    if (!own?.id)
      throw new Refused(
        403,
        own?.check.id ?? "peer.chip-id",
        own?.check.detail ?? "this replica's own hardware identity is unavailable",
      );
    return own.id;
  }

  private async challenge() {
    await this.ready();
    if (this.o.core.sealConfigPeerThreshold === undefined)
      throw new Refused(400, "peer.configured", "the runtime was initialised without peer_threshold");
    await this.ownSlotHolder();
    const { nonce, expiresAt } = await this.nonces.issue(this.storage(), this.o.holder(), NONCE_TTL_S);
    return { data: { nonce: nonce.toString("hex"), expires_at: expiresAt, peer_spki_sha256: this.o.holder() } };
  }

  private async share(req: LogicalRequest, f: FieldData) {
    await this.ready();
    const audit = (req as PeerRequest).audit;
    const nonceHex = f.string("nonce")!;
    if (!/^[0-9a-f]{64}$/.test(nonceHex)) throw new LogicalError(400, "nonce: must be 64 lowercase hex digits");
    let evidence;
    try {
      evidence = decodeEvidence(f.get("evidence"), "evidence");
    } catch (e) {
      throw new LogicalError(400, e instanceof WireFormatError ? e.message : "evidence: malformed");
    }
    const jwk = f.map("p384_public_key") as JWK;
    let ek: Uint8Array;
    let material: Buffer;
    try {
      p384Point(jwk);
      const mlkemText = f.string("mlkem_public_key")!;
      if (!/^[A-Za-z0-9+/_-]+=*$/.test(mlkemText)) throw new HybridSealError("mlkem_public_key", "base64");
      ek = checkMlKemPublicKey(Buffer.from(mlkemText, "base64"));
      const spki = createPublicKey({ key: jwk as never, format: "jwk" }).export({ type: "spki", format: "der" });
      material = hybridBindingMaterial(spki, ek);
    } catch (e) {
      throw new LogicalError(
        400,
        e instanceof HybridSealError
          ? `${e.field === "epk" ? "p384_public_key" : e.field}: must be ${e.detail}`
          : "p384_public_key: must be a P-384 public JWK",
      );
    }
    const keyDigest = createHash("sha256").update(material).digest("hex");
    audit.auth = { metadata: { requester_key_sha256: keyDigest } };
    // The nonce is consumed before anything is judged: a refused request cannot be retried with it.
    const used = await this.nonces.consume(this.storage(), Buffer.from(nonceHex, "hex"), this.o.holder());
    if (used !== "ok")
      throw new Refused(
        403,
        "peer.nonce",
        used === "expired"
          ? "the nonce has expired (stale request)"
          : used === "other-workload"
            ? "the nonce was issued by another replica"
            : "the nonce is unknown or was already used (replayed request)",
      );
    const ref = await this.o.reference();
    const expected = peerUnsealReportData(Buffer.from(nonceHex, "hex"), material);
    const verdict = await appraise(evidence, ref.policy, { trust: this.o.trust, expectedReportData: expected });
    const meta = audit.auth.metadata!;
    meta.requester_platform = evidence.kind;
    meta.requester_evidence_digest = verdict.evidenceDigest;
    if (verdict.claims) meta.requester_measurement = verdict.claims.measurement;
    if (verdict.simulated) meta.simulated = "true";
    // policy.report-data fails when the evidence binds another key (or another nonce): say which binding.
    const checks = verdict.checks.map((c) =>
      c.id === "policy.report-data"
        ? {
            id: "peer.key-binding",
            ok: c.ok,
            detail: c.ok
              ? "REPORT_DATA binds this nonce and the submitted keys"
              : "REPORT_DATA does not bind this request's nonce and the submitted keys (another key, or evidence made for another request)",
          }
        : c,
    );
    checks.push(...ref.extraChecks(verdict.claims));
    // The requester must name its hardware too: a masked report is one the host chose to make anonymous.
    const requesterHw = hardwareIdentity(verdict.claims, "the requester's");
    if (requesterHw.id && verdict.accepted) meta.requester_hardware = requesterHw.id;
    checks.push(requesterHw.check);
    const refusal =
      refuseFirst(checks) ??
      (verdict.accepted ? undefined : new Refused(403, "peer.appraisal", "evidence not accepted"));
    if (refusal) throw refusal;
    const hardware = await this.ownSlotHolder();
    const share = await this.o.core.peerShare(hardware);
    if (!share) throw new Refused(400, "peer.configured", "the runtime was initialised without peer_threshold");
    const payload: PeerSharePayload = {
      v: 1,
      share: share.share.toString("base64"),
      index: share.index,
      threshold: share.threshold,
      nonce: nonceHex,
      peer_spki_sha256: this.o.holder(),
    };
    share.share.fill(0);
    const sealed = await hybridSeal(payload, jwk, ek);
    payload.share = "";
    meta.peer_unseal = "released";
    meta.peer_hardware = hardware;
    meta.share_index = String(share.index);
    meta.threshold = String(share.threshold);
    return {
      data: {
        sealed,
        share_index: share.index,
        threshold: share.threshold,
        peer_spki_sha256: this.o.holder(),
      },
    };
  }

  /** Serves the two paths on the app, before the core's catch-all (they answer without a token). */
  register(app: FastifyInstance, rateLimited: (path: string, ip: string) => number): void {
    const send = (reply: FastifyReply, status: number, body: unknown, extra = {}) =>
      reply
        .code(status)
        .headers({ ...HEADERS, ...extra })
        .type("application/json")
        .send(body);
    app.route({
      method: ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"],
      url: "/v1/sys/peer-unseal/:op",
      exposeHeadRoute: false,
      handler: async (req, reply) => {
        const op = (req.params as { op: string }).op;
        const wait = rateLimited(`sys/peer-unseal/${op}`, req.ip);
        if (wait > 0) return send(reply, 429, { errors: ["rate limit exceeded"] }, { "retry-after": String(wait) });
        if (req.method !== "POST" && req.method !== "PUT")
          return send(reply, 405, { errors: ["sys/peer-unseal: only POST"] }, { allow: "POST" });
        const path = `peer-unseal/${op}`;
        const core = this.o.core;
        const audit: AuditRequest = {
          id: newRequestId(),
          operation: "update",
          path: `sys/${path}`,
          mountType: "system",
          remoteAddress: req.ip,
        };
        const lreq: PeerRequest = {
          operation: "update",
          path,
          data: (req.body ?? {}) as Record<string, unknown>,
          query: {},
          storage: this.storage(),
          mountPoint: "sys/",
          clientIp: req.ip,
          headers: {},
          system: core.systemView(),
          audit,
        };
        if (typeof req.body !== "object" || req.body === null || Array.isArray(req.body)) lreq.data = {};
        const audited = op === "share" && !core.sealed;
        try {
          // Before the fields are judged: a sealed replica says so whatever it was sent.
          if (this.router.match(path)) await this.ready();
          const res = await this.router.handle(lreq);
          if (!res) return send(reply, 404, { errors: [] });
          if (audited) {
            core.audit.logRequest(audit);
            core.audit.logResponse(audit, { status: 200 });
          }
          return send(reply, 200, { data: res.data });
        } catch (e) {
          const r =
            e instanceof LogicalError ? errorResponse(e.status, e.message) : errorResponse(500, "internal error");
          if (!(e instanceof LogicalError)) core.logger.error(`peer-unseal: ${(e as Error).name}`);
          if (audited && !core.sealed) {
            const meta = (audit.auth ??= { metadata: {} }).metadata ?? (audit.auth.metadata = {});
            meta.peer_unseal = "refused";
            if (e instanceof Refused) meta.refused_check = e.check;
            core.audit.logRequest(audit);
            core.audit.logResponse(audit, {
              status: r.status,
              error: e instanceof Refused ? e.message : "bad request",
            });
          }
          return send(reply, r.status, r.body);
        }
      },
    });
  }
}
