// Attested TLS: with an `attestation` stanza the runtime generates its listener key pair in memory at start
// (never written anywhere: a restart makes a new key, which is attested afresh) and serves, unauthenticated and
// rate-limited, evidence whose REPORT_DATA binds that key's SubjectPublicKeyInfo, the caller's nonce and — while
// unsealed — the runtime's instance id (the hash of a secret drawn at sys/init behind the barrier):
//   GET /v1/sys/attestation?nonce=<hex, 16..64 bytes>
//   REPORT_DATA = SHA-512("buckypaper-runtime-tls-v2" ‖ u32be(len nonce) ‖ nonce ‖ SHA-256(SPKI-DER)
//                         ‖ 0x00 | 0x01 ‖ instance id)
// (runtime/attestation/binding.ts runtimeTlsReportData). With `vtpm { … }` in the stanza (AWS/GCE: the launch digest
// names only the provider's firmware) the answer also carries a TPM 2.0 quote over the boot PCRs and the event
// log, and REPORT_DATA binds the quoting AK too (runtimeTlsVtpmReportData, binding "buckypaper-runtime-tls-vtpm-v1");
// the quote's qualifying data is SHA-256 of that REPORT_DATA. The vTPM half has a second round trip for EK credential
// activation (the verifier's policy.vtpm.ekPublics: on AWS the EK the EC2 API returns for the instance):
//   POST /v1/sys/attestation/activate  {ek_name, credential_blob, encrypted_secret}  → {secret}
// TPM2_ActivateCredential with the runtime's own AK as the activated object and the EK of that Name. It is no
// decryption oracle: the TPM opens a credential only when its HMAC names the object it was given (always the
// runtime's AK, never a caller-chosen handle) and only with the private EK of that Name — the answer is a secret a
// verifier made for exactly this AK in exactly this TPM, which it learns anyway by design. A verifier
// sends it on a connection pinned to the attested TLS key, so only this runtime's process can be the one answering.
// A verifier (runtime/client/attested-tls.ts) checks the
// evidence and that the TLS connection it came over presented exactly that SPKI; the certificate around the key
// is self-signed and carries no trust of its own.
import "reflect-metadata";
import { createHash, randomBytes, webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";
import type { FastifyInstance } from "fastify";
import {
  RUNTIME_TLS_NONCE_BYTES,
  akSha256,
  certSpkiSha256,
  runtimeTlsReportData,
  runtimeTlsVtpmReportData,
} from "../../attestation/binding.js";
import { pemEncode } from "../../attestation/pem.js";
import type { WireEvidence, WireVtpm } from "../../protocol/evidence.js";
import { configfsTsmProvider } from "../../guest/evidence/configfs-tsm.js";
import { sevGuestProvider } from "../../guest/evidence/sev-guest.js";
import { virtioPspProvider } from "../../guest/evidence/virtio-psp.js";
import { Vtpm, wireVtpm } from "../../guest/evidence/vtpm.js";
import { azureRuntimeSource } from "./azure-evidence.js";
import type { CommandRunner } from "../../guest/exec.js";
import type { AttestationStanza, VtpmStanza } from "./config.js";
import { serverLeafExtensions } from "./tls.js";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: "ECDSA", namedCurve: "P-384", hash: "SHA-384" } as const;
export const RUNTIME_TLS_BINDING = "buckypaper-runtime-tls-v2";
export const RUNTIME_TLS_VTPM_BINDING = "buckypaper-runtime-tls-vtpm-v1";

/** The vTPM half (AWS/GCE): the AK a quote is signed with, and a quote + event log over some qualifying data. */
export interface RuntimeVtpmSource {
  readonly name: string;
  /** TPM2B_PUBLIC of the attestation key (created and persisted on first use). */
  attestationKey(): Promise<Buffer>;
  /** TPM2_Quote over the boot PCRs with `qualifyingData` (32 bytes), the PCR values and the TCG event log. */
  quote(qualifyingData: Buffer): Promise<WireVtpm>;
  /** TPM2_ActivateCredential for the AK under the EK named `ekName` (EK credential activation); absent: not offered. */
  activateCredential?(c: { ekName: Buffer; credentialBlob: Buffer; encryptedSecret: Buffer }): Promise<Buffer>;
  /**
   * The Names of the EKs activateCredential can use (read once at start, then kept): the endpoint refuses any other
   * `ek_name` without asking the TPM. Absent: every Name goes to activateCredential.
   */
  endorsementKeyNames?(): Promise<Buffer[]>;
}

/**
 * The enclaivelet's tpm2-tools collector behind a `vtpm` stanza. One TPM conversation at a time: the collector
 * flushes transient objects between commands, which would pull them from under a concurrent request on a TPM
 * without a resource manager (/dev/tpm0; swtpm serves one tpm2-tools connection at a time, so tests cannot show it).
 */
export function vtpmSourceFor(v: VtpmStanza, runner?: CommandRunner): RuntimeVtpmSource {
  const tpm = new Vtpm({
    tcti: v.tcti,
    ...(runner ? { runner } : {}),
    ...(v.eventLog ? { eventLogPath: v.eventLog } : {}),
    ...(v.nitroTpm ? { nitroTpm: true } : {}),
    ...(v.googleAk ? { googleAk: true } : {}),
  });
  let queue: Promise<unknown> = Promise.resolve();
  let ekNames: Promise<Buffer[]> | undefined;
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  };
  return {
    name: `vtpm (${v.tcti})`,
    attestationKey: () => serial(() => tpm.attestationKey()),
    quote: (q) => serial(async () => wireVtpm(await tpm.collect(q))),
    activateCredential: (c) => serial(() => tpm.activateCredential(c)),
    // Only the first read queues behind other TPM work; afterwards the Names come from memory, so refusing an
    // unknown one never waits for (or adds to) the TPM's queue.
    endorsementKeyNames: () =>
      (ekNames ??= serial(async () => (await tpm.endorsementKeys()).map((k) => k.name)).catch((e: unknown) => {
        ekNames = undefined;
        throw e;
      })),
  };
}

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

/**
 * Reads (creating on first use) the AK before the runtime serves: a TPM that cannot be reached is a start error
 * naming it rather than a 503 on every request, and workers of a cluster find the AK the primary persisted
 * instead of racing to create it. Given the source that will serve, also reads the Names of its EKs, so that
 * sys/attestation/activate refuses any other Name from the first request on without asking the TPM.
 */
export async function prepareVtpm(v: VtpmStanza | RuntimeVtpmSource): Promise<void> {
  const source = "tcti" in v ? vtpmSourceFor(v) : v;
  try {
    await source.attestationKey();
    if (!("tcti" in v) && source.activateCredential) await source.endorsementKeyNames?.();
  } catch (e) {
    throw new Error(`attestation.vtpm: no attestation key from ${source.name}: ${(e as Error).message}`, {
      cause: e,
    });
  }
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
    case "azure":
      return azureRuntimeSource({ device: a.device, ...(a.eventLog ? { eventLog: a.eventLog } : {}) });
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
    /** The vTPM half (`attestation { vtpm { … } }`): a quote whose AK REPORT_DATA binds rides on the evidence. */
    vtpm?: RuntimeVtpmSource;
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
      const spki = Buffer.from(l.spkiSha256, "hex");
      inFlight++;
      let evidence: WireEvidence;
      let reportData: Buffer;
      let ak: Buffer | undefined;
      let step = o.source.name;
      try {
        if (o.vtpm) {
          // AK first: REPORT_DATA names it; then the quote over SHA-256(REPORT_DATA), then the hardware report.
          step = o.vtpm.name;
          ak = akSha256(await o.vtpm.attestationKey());
          reportData = runtimeTlsVtpmReportData(nonce, spki, ak, instanceId);
          const quote = await o.vtpm.quote(createHash("sha256").update(reportData).digest());
          step = o.source.name;
          evidence = await o.source.collect(reportData);
          if (evidence.kind !== "snp" && evidence.kind !== "tdx")
            throw new Error(`a vTPM quote rides on snp or tdx evidence, not ${evidence.kind}`);
          evidence = { ...evidence, vtpm: quote };
        } else {
          reportData = runtimeTlsReportData(nonce, spki, instanceId);
          evidence = await o.source.collect(reportData);
        }
      } catch (e) {
        // The source's message names the device and step, never a secret; the caller needs to know it failed.
        return fail(reply, 503, `sys/attestation: evidence source ${step} failed: ${(e as Error).message}`);
      } finally {
        inFlight--;
      }
      return reply
        .code(200)
        .headers(HEADERS)
        .type("application/json")
        .send({
          data: {
            binding: ak ? RUNTIME_TLS_VTPM_BINDING : RUNTIME_TLS_BINDING,
            nonce: nonce.toString("hex"),
            spki_sha256: l.spkiSha256,
            instance_id: instanceId ? instanceId.toString("hex") : null,
            ...(ak ? { ak_sha256: ak.toString("hex") } : {}),
            report_data: reportData.toString("hex"),
            evidence_source: o.source.name,
            evidence,
          },
        });
    },
  });
  const activate = o.vtpm?.activateCredential?.bind(o.vtpm);
  if (!activate) return;
  app.route({
    method: ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"],
    url: "/v1/sys/attestation/activate",
    exposeHeadRoute: false,
    bodyLimit: 8192,
    handler: async (req, reply) => {
      const wait = o.rateLimited(req.ip);
      if (wait > 0) return fail(reply, 429, "rate limit exceeded", { "retry-after": String(wait) });
      if (req.method !== "POST") return fail(reply, 405, "sys/attestation/activate: only POST", { allow: "POST" });
      // app.ts parses every body as JSON whatever its content type.
      const parsed: unknown = req.body;
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed))
        return fail(reply, 400, "sys/attestation/activate: the body must be a JSON object");
      const b = parsed as Record<string, unknown>;
      const field = (k: string, re: RegExp, enc: "hex" | "base64"): Buffer | undefined => {
        const v = b[k];
        return typeof v === "string" && re.test(v) ? Buffer.from(v, enc) : undefined;
      };
      const unknown = Object.keys(b).filter((k) => !["ek_name", "credential_blob", "encrypted_secret"].includes(k));
      if (unknown.length)
        return fail(reply, 400, `sys/attestation/activate: unknown field '${unknown[0].slice(0, 32)}'`);
      // A TPM Name is 2 bytes of algorithm and a digest (SHA-256..SHA-512); the blobs are TPM2B structures.
      const ekName = field("ek_name", /^[0-9a-f]{68,132}$/, "hex");
      const credentialBlob = field("credential_blob", B64, "base64");
      const encryptedSecret = field("encrypted_secret", B64, "base64");
      if (!ekName || !credentialBlob || !encryptedSecret)
        return fail(
          reply,
          400,
          "sys/attestation/activate: ek_name (hex TPM Name), credential_blob and encrypted_secret (base64) are required",
        );
      // Only this TPM's own EKs (known since start): any other Name is refused here, without a TPM command — the TPM
      // would refuse it too, but only after regenerating its three default-template EKs.
      if (o.vtpm!.endorsementKeyNames) {
        let known: Buffer[];
        try {
          known = await o.vtpm!.endorsementKeyNames();
        } catch (e) {
          return fail(reply, 503, `sys/attestation/activate: ${(e as Error).message}`);
        }
        if (!known.some((n) => n.equals(ekName)))
          return fail(
            reply,
            422,
            "sys/attestation/activate: ek_name names no endorsement key of this TPM (its persisted EK or a TCG default-template EK)",
          );
      }
      if (inFlight >= MAX_IN_FLIGHT)
        return fail(reply, 429, "sys/attestation/activate: TPM busy", { "retry-after": "1" });
      inFlight++;
      let secret: Buffer;
      try {
        secret = await activate({ ekName, credentialBlob, encryptedSecret });
      } catch (e) {
        // The TPM's refusal (no EK of that Name, integrity failure) names the step, never a secret.
        return fail(reply, 422, `sys/attestation/activate: ${(e as Error).message}`);
      } finally {
        inFlight--;
      }
      return reply
        .code(200)
        .headers(HEADERS)
        .type("application/json")
        .send({ data: { secret: secret.toString("base64") } });
    },
  });
}

const B64 = /^[A-Za-z0-9+/]{4,2728}={0,2}$/;
