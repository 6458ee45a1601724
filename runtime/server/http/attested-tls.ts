// Attested TLS: with an `attestation` stanza the runtime generates its listener key pair in memory at start
// (never written anywhere: a restart makes a new key, which is attested afresh) and serves, unauthenticated and
// rate-limited, evidence whose REPORT_DATA binds that key's SubjectPublicKeyInfo, the caller's nonce and — while
// unsealed — the runtime's instance id (the hash of a secret drawn at sys/init behind the barrier):
//   GET /v1/sys/attestation?nonce=<hex, 16..64 bytes>
//   REPORT_DATA = SHA-512("buckypaper-runtime-tls-v2" ‖ u32be(len nonce) ‖ nonce ‖ SHA-256(SPKI-DER)
//                         ‖ 0x00 | 0x01 ‖ instance id)
// (runtime/attestation/binding.ts runtimeTlsReportData). A verifier (runtime/client/attested-tls.ts) checks the
// evidence and that the TLS connection it came over presented exactly that SPKI; the certificate around the key
// is self-signed and carries no trust of its own.
import "reflect-metadata";
import { randomBytes, webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";
import type { FastifyInstance } from "fastify";
import { RUNTIME_TLS_NONCE_BYTES, certSpkiSha256, runtimeTlsReportData } from "../../attestation/binding.js";
import { pemEncode } from "../../attestation/pem.js";
import type { WireEvidence } from "../../protocol/evidence.js";
import { configfsTsmProvider } from "../../guest/evidence/configfs-tsm.js";
import { sevGuestProvider } from "../../guest/evidence/sev-guest.js";
import { virtioPspProvider } from "../../guest/evidence/virtio-psp.js";
import type { AttestationStanza } from "./config.js";
import { serverLeafExtensions } from "./tls.js";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: "ECDSA", namedCurve: "P-384", hash: "SHA-384" } as const;
export const RUNTIME_TLS_BINDING = "buckypaper-runtime-tls-v2";

/** Something that returns evidence over 64 bytes of REPORT_DATA (the enclaivelet's EvidenceProvider shape). */
export interface RuntimeEvidenceSource {
  readonly name: string;
  collect(reportData: Buffer): Promise<WireEvidence>;
}

/** The listener's key pair and self-signed certificate, in memory only. */
export interface AttestedListener {
  keyPem: string;
  certPem: string;
  /** SHA-256 of the key's SubjectPublicKeyInfo (DER), hex: what REPORT_DATA binds and verifiers pin. */
  spkiSha256: string;
  /**
   * The runtime instance id (hex) this key has served, once it has: the key serves no other for its life (Core's
   * ListenerInstance). Kept with the key, so every worker serving it — a respawned one too — knows it.
   */
  servedInstanceId?: string;
}

/** A fresh P-384 key pair and a self-signed certificate for the listener's host names. */
export async function createAttestedListener(hosts: string[]): Promise<AttestedListener> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const names = [...new Set(hosts.length ? hosts : ["localhost", "127.0.0.1"])];
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01" + randomBytes(15).toString("hex"),
    name: `CN=${names[0]}, O=Buckypaper attested runtime`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 397 * 86400_000),
    keys,
    signingAlgorithm: ALG,
    extensions: serverLeafExtensions(names),
  });
  const certPem = cert.toString("pem") + "\n";
  const keyPem = pemEncode("PRIVATE KEY", new Uint8Array(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)));
  return { keyPem, certPem, spkiSha256: certSpkiSha256(certPem) };
}

/** The evidence source a config stanza names; "simulated" must be supplied by the entry point (server ↛ sim). */
export function evidenceSourceFor(a: AttestationStanza): RuntimeEvidenceSource {
  switch (a.type) {
    case "sev-guest":
      return sevGuestProvider({ device: a.device });
    case "configfs-tsm":
      return configfsTsmProvider({ root: a.root });
    case "virtio-psp":
      return virtioPspProvider({ port: a.port });
    case "simulated":
      throw new Error(
        'attestation "simulated": the simulated platform is loaded only by `buckypaper runtime server` (single ' +
          "worker) or a test; the server itself carries no simulator",
      );
  }
}

/** At most this many evidence requests wait on the security processor at once; more get 429. */
const MAX_IN_FLIGHT = 4;

const HEADERS = { "cache-control": "no-store", "x-content-type-options": "nosniff" };

/**
 * GET /v1/sys/attestation: answered before the core (sealed or not: a verifier checks the runtime before it
 * sends init, unseal keys or a token). The caller chooses only the nonce; the SPKI is always the listener's own.
 */
export function registerAttestationRoute(
  app: FastifyInstance,
  o: {
    listener: () => AttestedListener;
    source: RuntimeEvidenceSource;
    /** The runtime's instance id while unsealed (Core.instanceId); undefined when sealed or not initialised. */
    instanceId?: () => Buffer | undefined;
    rateLimited: (clientIp: string) => number;
  },
): void {
  let inFlight = 0;
  const fail = (reply: import("fastify").FastifyReply, status: number, msg: string, extra = {}) =>
    reply
      .code(status)
      .headers({ ...HEADERS, ...extra })
      .type("application/json")
      .send({ errors: [msg] });
  app.route({
    method: ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"],
    url: "/v1/sys/attestation",
    exposeHeadRoute: false,
    handler: async (req, reply) => {
      const wait = o.rateLimited(req.ip);
      if (wait > 0) return fail(reply, 429, "rate limit exceeded", { "retry-after": String(wait) });
      if (req.method !== "GET") return fail(reply, 405, "sys/attestation: only GET", { allow: "GET" });
      const q = (req.query ?? {}) as Record<string, unknown>;
      const unknown = Object.keys(q).filter((k) => k !== "nonce");
      if (unknown.length)
        return fail(reply, 400, `sys/attestation: unknown parameter '${unknown[0].slice(0, 32)}' (only nonce)`);
      const n = q.nonce;
      const { min, max } = RUNTIME_TLS_NONCE_BYTES;
      if (typeof n !== "string" || !/^(?:[0-9a-fA-F]{2})+$/.test(n) || n.length < 2 * min || n.length > 2 * max)
        return fail(reply, 400, `sys/attestation: nonce must be ${min}..${max} bytes of hex`);
      if (inFlight >= MAX_IN_FLIGHT)
        return fail(reply, 429, "sys/attestation: evidence source busy", { "retry-after": "1" });
      const l = o.listener();
      const nonce = Buffer.from(n, "hex");
      // Read once: the id bound is the id returned, even if the runtime seals while the PSP answers.
      const instanceId = o.instanceId?.();
      const reportData = runtimeTlsReportData(nonce, Buffer.from(l.spkiSha256, "hex"), instanceId);
      inFlight++;
      let evidence: WireEvidence;
      try {
        evidence = await o.source.collect(reportData);
      } catch (e) {
        // The source's message names the device and step, never a secret; the caller needs to know it failed.
        return fail(reply, 503, `sys/attestation: evidence source ${o.source.name} failed: ${(e as Error).message}`);
      } finally {
        inFlight--;
      }
      return reply
        .code(200)
        .headers(HEADERS)
        .type("application/json")
        .send({
          data: {
            binding: RUNTIME_TLS_BINDING,
            nonce: nonce.toString("hex"),
            spki_sha256: l.spkiSha256,
            instance_id: instanceId ? instanceId.toString("hex") : null,
            report_data: reportData.toString("hex"),
            evidence_source: o.source.name,
            evidence,
          },
        });
    },
  });
}
