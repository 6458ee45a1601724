// `runtime server`: opens the configured storage, starts the listener (sealed until unseal), and
// manages the runtime CA: created at sys/init inside the barrier, it issues the listener certificate
// kept in tls_dir; until then a throwaway self-signed certificate serves the init call (its
// fingerprint is logged so `runtime init --ca-fingerprint` can pin it).
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, renameSync } from "node:fs";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { Core, type AutoUnsealProvider, type CoreLogger, type CorePeers } from "../vault/core.js";
import { builtinRegistry } from "../engines.js";
import type { BackendRegistry } from "../vault/registry.js";
import type { Storage } from "../storage/types.js";
import { SqliteStorage } from "../storage/sqlite.js";
import { PostgresStorage } from "../storage/postgres.js";
import { MemoryStorage } from "../storage/memory.js";
import { buildApp, setListenerCertificate } from "./app.js";
import { responseSealer } from "../nitride/seal.js";
import { createRuntimeCa, issueServerCert, certFingerprint, type CaMaterial } from "./tls.js";
import type { RuntimeConfig, StorageConfig } from "./config.js";
import { AUTO_UNSEAL_KEY_REQUEST, encodeKeyRequest } from "../../attestation/snp/derived-key.js";
import { sevGuestDerivedKey, virtioPspDerivedKey } from "../../guest/sealing.js";
import {
  createAttestedListener,
  evidenceSourceFor,
  prepareVtpm,
  vtpmSourceFor,
  type AttestedListener,
  type RuntimeEvidenceSource,
  type RuntimeVtpmSource,
} from "./attested-tls.js";
import type { TrustConfig } from "../../attestation/policy.js";
import { PeerUnsealService } from "../peer/serve.js";
import { ownReference } from "../peer/reference.js";
import { unsealFromPeers, type PeerUnsealResult } from "../peer/request.js";

const CA_KEY = "core/runtime-ca";

export async function openStorage(c: StorageConfig): Promise<Storage> {
  if (c.type === "sqlite") return new SqliteStorage(c.path);
  if (c.type === "postgresql") return PostgresStorage.open(c.connectionUrl);
  return new MemoryStorage();
}

export interface RunningServer {
  url: string;
  core: Core;
  app: FastifyInstance;
  /** SHA-256 of the certificate currently served (bootstrap or runtime CA), when TLS is on. */
  bootstrapFingerprint?: string;
  /** Where the bootstrap certificate's CA was written (tls_dir/bootstrap-ca.pem), for VAULT_CACERT at init. */
  bootstrapCaFile?: string;
  /** Attested TLS: SHA-256 (hex) of the in-memory listener key's SPKI, which /v1/sys/attestation binds. */
  attestedSpkiSha256?: string;
  /**
   * Replica set (`peer_unseal`): ask the configured peers for their shares now (one attempt; concurrent callers
   * share it). Undefined without peer_unseal in the config.
   */
  peerUnseal?: () => Promise<PeerUnsealResult>;
  /** Serves the listener certificate now in tls_dir (another worker of this runtime issued it at init). */
  reloadCertificate(): void;
  close(): Promise<void>;
}

export interface StartOptions {
  logger?: CoreLogger;
  registry?: BackendRegistry;
  /** Set for one worker of a multi-worker runtime (runtime/server/cluster.ts). */
  peers?: CorePeers;
  /** The pre-init certificate to serve (all workers serve the same one, so its fingerprint can be pinned). */
  bootstrapCert?: BootstrapCert;
  /** Runs after the core is up and before the listener accepts connections (e.g. unseal a respawned worker). */
  beforeListen?: (core: Core) => Promise<void>;
  /** Overrides the config's `seal` stanza (e.g. the local stack's simulated PSP). */
  autoUnseal?: AutoUnsealProvider;
  /** The config's `attestation` source, supplied by the caller (required for "simulated": server ↛ sim). */
  evidenceSource?: RuntimeEvidenceSource;
  /** Overrides the collector behind `attestation.vtpm` (tests: a simulated NitroTPM document tool). */
  vtpmSource?: RuntimeVtpmSource;
  /** The attested listener key (all workers of a runtime serve the same one); default: generated here. */
  attestedListener?: AttestedListener;
  /** A worker tells its supervisor the instance the shared attested key now serves (Core's ListenerInstance). */
  onInstanceServed?: (idHex: string) => void;
  /**
   * Roots a peer's evidence must chain to (peer unseal, both directions). Default: the vendor roots, with AMD KDS
   * as `peer_unseal.kds` says. Simulated roots only from tests and the local stack (server ↛ sim).
   */
  peerTrust?: TrustConfig;
  /** Ask the peers at start when sealed (default true; tests call peerUnseal() themselves). */
  peerUnsealAtStart?: boolean;
}

/** The vendor roots for peers' evidence: AMD (VCEK chain from the evidence, or KDS) and Intel (PCS collateral). */
function vendorTrust(kds: "online" | "offline" | "off"): TrustConfig {
  return {
    snp: kds === "off" ? {} : { kds: { offline: kds === "offline" } },
    tdx: { fetchCollateral: kds === "online" },
  };
}

/** The config's `seal "snp-derived-key"`: the PSP key for AUTO_UNSEAL_KEY_REQUEST (see derived-key.ts for the binding). */
export function autoUnsealFromConfig(cfg: RuntimeConfig): AutoUnsealProvider | undefined {
  const seal = cfg.seal;
  if (!seal) return undefined;
  // The request carries no TCB, so the product only matters for its (zero) TCB encoding.
  const request = () => encodeKeyRequest(AUTO_UNSEAL_KEY_REQUEST, "Milan");
  return {
    type: seal.type,
    deriveKey:
      seal.transport === "virtio-psp"
        ? () => virtioPspDerivedKey(request(), { port: seal.port })
        : () => sevGuestDerivedKey(request(), { device: seal.device }),
  };
}

export interface BootstrapCert {
  keyPem: string;
  certPem: string;
  fingerprint: string;
  /** The throwaway CA's certificate: clients such as the vault CLI trust it for init (VAULT_CACERT). */
  caPem: string;
}

function tlsFiles(cfg: RuntimeConfig) {
  const dir = cfg.listener.tlsDir;
  return dir
    ? {
        ca: path.join(dir, "ca.pem"),
        bootstrapCa: path.join(dir, "bootstrap-ca.pem"),
        cert: path.join(dir, "server.pem"),
        key: path.join(dir, "server-key.pem"),
      }
    : undefined;
}

export function listenerHosts(cfg: RuntimeConfig): string[] {
  const l = cfg.listener;
  return [...l.tlsHosts, l.host === "0.0.0.0" || l.host === "::" ? "127.0.0.1" : l.host, "localhost"];
}

/**
 * A throwaway self-signed certificate for the listener before init, or undefined when TLS is off or
 * a real certificate exists (operator-supplied, or issued by the runtime CA at init).
 */
export async function bootstrapCertificate(cfg: RuntimeConfig): Promise<BootstrapCert | undefined> {
  const l = cfg.listener,
    files = tlsFiles(cfg);
  if (cfg.attestation || l.tlsDisable || l.tlsCertFile || (files && existsSync(files.cert) && existsSync(files.key)))
    return undefined;
  const boot = await createRuntimeCa("Buckypaper runtime bootstrap (pre-init)");
  const leaf = await issueServerCert(boot, listenerHosts(cfg));
  return {
    keyPem: leaf.keyPem,
    certPem: leaf.certPem,
    fingerprint: certFingerprint(boot.certPem),
    caPem: boot.certPem,
  };
}

function writeAtomic(file: string, data: string, mode: number) {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, file);
}

export async function startServer(cfg: RuntimeConfig, o: StartOptions = {}): Promise<RunningServer> {
  // The source that will serve: prepared here, so the EK Names it reads at start are the ones the endpoint knows.
  const vtpmSource = cfg.attestation?.vtpm ? (o.vtpmSource ?? vtpmSourceFor(cfg.attestation.vtpm)) : undefined;
  if (vtpmSource) await prepareVtpm(vtpmSource);
  const physical = await openStorage(cfg.storage);
  const l = cfg.listener;
  const tlsOn = !l.tlsDisable;
  const dir = l.tlsDir;
  const files = tlsFiles(cfg);
  const hosts = listenerHosts(cfg);
  const holder: { app?: FastifyInstance } = {};
  // Attested TLS: the listener key lives in this process only and replaces the runtime CA's leaf altogether.
  const attested = cfg.attestation ? (o.attestedListener ?? (await createAttestedListener(hosts))) : undefined;
  const evidenceSource = cfg.attestation ? (o.evidenceSource ?? evidenceSourceFor(cfg.attestation)) : undefined;

  async function installLeaf(ca: CaMaterial) {
    if (!files) return;
    const leaf = await issueServerCert(ca, hosts);
    mkdirSync(dir!, { recursive: true, mode: 0o700 });
    writeAtomic(files.ca, ca.certPem, 0o644);
    writeAtomic(files.key, leaf.keyPem, 0o600);
    writeAtomic(files.cert, leaf.certPem, 0o644);
    rmSync(files.bootstrapCa, { force: true });
    if (holder.app) setListenerCertificate(holder.app, { key: leaf.keyPem, cert: leaf.certPem });
  }

  const core = new Core({
    physical,
    registry: o.registry ?? builtinRegistry(),
    apiAddr: cfg.apiAddr,
    defaultTtl: cfg.defaultTtl,
    maxTtl: cfg.maxTtl,
    logger: o.logger,
    auditFile: cfg.auditFile,
    responseSealer,
    peers: o.peers,
    ...(attested
      ? {
          listenerInstance: {
            served: () => (attested.servedInstanceId ? Buffer.from(attested.servedInstanceId, "hex") : undefined),
            serve: (id: Buffer) => {
              if (attested.servedInstanceId) return;
              attested.servedInstanceId = id.toString("hex");
              o.onInstanceServed?.(attested.servedInstanceId);
            },
          },
        }
      : {}),
    autoUnseal: o.autoUnseal ?? autoUnsealFromConfig(cfg),
    onInitialize: async (barrier) => {
      if (!tlsOn || l.tlsCertFile || attested) return {};
      const ca = await createRuntimeCa();
      await barrier.put(CA_KEY, Buffer.from(JSON.stringify(ca)));
      await installLeaf(ca);
      // The vault CLI shows only keys and the root token from init: say where the CA is, so the operator
      // can trust it from now on (VAULT_CACERT) — it is also in sys/init's runtime_ca_pem.
      if (files)
        o.logger?.info(`runtime CA certificate written to ${files.ca} (for clients: VAULT_CACERT=${files.ca})`);
      return { runtime_ca_pem: ca.certPem, runtime_ca_sha256: certFingerprint(ca.certPem) };
    },
    onUnseal: async (barrier) => {
      // A replica that shares the database but not the disk gets its listener certificate here.
      if (!tlsOn || l.tlsCertFile || attested || !files || existsSync(files.cert)) return;
      const raw = await barrier.get(CA_KEY);
      if (raw) await installLeaf(JSON.parse(raw.toString("utf8")) as CaMaterial);
    },
  });
  await core.start();

  let https: { key: string; cert: string } | undefined;
  let bootstrapFingerprint: string | undefined;
  let bootstrapCaFile: string | undefined;
  if (attested) {
    https = { key: attested.keyPem, cert: attested.certPem };
    o.logger?.info(
      `attested TLS: listener key generated in memory (SPKI SHA-256 ${attested.spkiSha256}); evidence from ` +
        `${evidenceSource!.name}${vtpmSource ? ` with a quote from ${vtpmSource.name}` : ""} at GET /v1/sys/attestation — check it with 'buckypaper runtime verify'`,
    );
  } else if (tlsOn) {
    if (l.tlsCertFile) https = { key: readFileSync(l.tlsKeyFile!, "utf8"), cert: readFileSync(l.tlsCertFile, "utf8") };
    else if (files && existsSync(files.cert) && existsSync(files.key))
      https = { key: readFileSync(files.key, "utf8"), cert: readFileSync(files.cert, "utf8") };
    else {
      const boot = o.bootstrapCert ?? (await bootstrapCertificate(cfg))!;
      https = { key: boot.keyPem, cert: boot.certPem };
      bootstrapFingerprint = boot.fingerprint;
      if (files) {
        mkdirSync(dir!, { recursive: true, mode: 0o700 });
        writeAtomic(files.bootstrapCa, boot.caPem, 0o644);
        bootstrapCaFile = files.bootstrapCa;
      }
    }
  }
  if (o.beforeListen) {
    try {
      await o.beforeListen(core);
    } catch (e) {
      await physical.close();
      throw e;
    }
  }
  // Every attested runtime can release its share to an attested peer (if it was initialised with peer_threshold);
  // only one with `peer_unseal` asks peers for theirs.
  const peerTrust = o.peerTrust ?? vendorTrust(cfg.peerUnseal?.kds ?? "off");
  const reference = evidenceSource ? ownReference(evidenceSource, peerTrust) : undefined;
  const peerService =
    attested && reference
      ? new PeerUnsealService({
          core,
          holder: () => attested.spkiSha256,
          reference,
          trust: peerTrust,
          launchBindsInstanceId: cfg.peerUnseal?.launchBindsInstanceId === true,
        })
      : undefined;
  const app = buildApp({
    core,
    https,
    bodyLimit: l.maxRequestSize,
    rateLimits: cfg.rateLimits,
    logRequests: false,
    ...(attested
      ? {
          attestation: {
            listener: () => attested,
            source: evidenceSource!,
            ...(vtpmSource ? { vtpm: vtpmSource } : {}),
          },
        }
      : {}),
    ...(peerService ? { peerUnseal: peerService } : {}),
  });
  try {
    await app.listen({ host: l.host, port: l.port });
  } catch (e) {
    await physical.close();
    throw e;
  }
  const addr = app.server.address();
  const port = typeof addr === "object" && addr ? addr.port : l.port;
  const url = `${tlsOn ? "https" : "http"}://${l.host.includes(":") ? `[${l.host}]` : l.host}:${port}`;
  holder.app = app;
  const a = app;
  // Expired-token cleanup; leader-locked on PostgreSQL so one replica does it.
  const tidyTimer = setInterval(() => {
    if (!core.sealed) core.tidy().catch((e) => o.logger?.warn(`token tidy failed: ${(e as Error).message}`));
  }, 10 * 60_000);
  tidyTimer.unref();
  const peerUnseal = peerUnsealLoop(cfg, o, core, evidenceSource, reference, peerTrust);
  return {
    url,
    core,
    app: a,
    bootstrapFingerprint,
    bootstrapCaFile,
    ...(attested ? { attestedSpkiSha256: attested.spkiSha256 } : {}),
    reloadCertificate: () => {
      if (tlsOn && !attested && !l.tlsCertFile && files && existsSync(files.cert) && existsSync(files.key)) {
        setListenerCertificate(a, { key: readFileSync(files.key, "utf8"), cert: readFileSync(files.cert, "utf8") });
      }
    },
    ...(peerUnseal ? { peerUnseal: peerUnseal.attempt } : {}),
    close: async () => {
      peerUnseal?.stop();
      clearInterval(tidyTimer);
      await a.close();
      await core.seal();
      await physical.close();
    },
  };
}

/**
 * `peer_unseal`: while this replica is sealed after start (no derived key — TDX, another chip, a changed
 * launch), ask the peers every retry_interval until a quorum's shares open it. An operator's sys/seal later is
 * not undone: the loop runs only from start until the first unseal, by whatever path.
 */
function peerUnsealLoop(
  cfg: RuntimeConfig,
  o: StartOptions,
  core: Core,
  source: RuntimeEvidenceSource | undefined,
  reference: (() => Promise<import("../peer/reference.js").ReplicaReference>) | undefined,
  trust: TrustConfig,
): { attempt: () => Promise<PeerUnsealResult>; stop: () => void } | undefined {
  const pu = cfg.peerUnseal;
  if (!pu || !source || !reference) return undefined;
  let running: Promise<PeerUnsealResult> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const attempt = () =>
    (running ??= unsealFromPeers({
      core,
      peers: pu.peers,
      evidence: source,
      reference,
      trust,
      logger: o.logger,
      launchBindsInstanceId: pu.launchBindsInstanceId,
    }).finally(() => {
      running = undefined;
    }));
  const loop = async () => {
    if (stopped || !core.sealed || !(await core.initialized())) return;
    try {
      await attempt();
    } catch (e) {
      o.logger?.warn(`peer unseal: attempt failed: ${(e as Error).message}`);
    }
    if (!stopped && core.sealed) {
      timer = setTimeout(() => void loop(), pu.retryInterval * 1000);
      timer.unref();
    }
  };
  if (o.peerUnsealAtStart !== false) void loop();
  return {
    attempt,
    stop: () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
