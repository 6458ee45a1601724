// `runtime server` with `workers = N`: this process becomes a supervisor without a listener and forks
// N worker processes (node:cluster) that share the listening socket and the storage, so the runtime
// uses every core instead of one event loop. Workers are replicas on one database, as PostgreSQL
// replicas already are; what must be one for all of them lives here:
//   - unseal progress (a client's key shares may land on different workers) and, while unsealed, the
//     unseal key, so a worker respawned after a crash opens its barrier before it accepts connections;
//   - the pre-init TLS certificate (every worker serves the same one, so its fingerprint can be pinned);
//   - a relay for seal, init, mount, policy and audit-device changes: the worker that made a change
//     answers its request only after every other worker has applied it (read-your-writes across workers).
// The supervisor never opens storage and never sees a request; the unseal key crosses only the
// parent–child IPC pipes.
import cluster, { type Worker } from "node:cluster";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { CoreLogger, PeerEvent } from "../vault/core.js";
import type { RuntimeConfig } from "./config.js";
import type { RateLimitRule } from "./rate-limit.js";
import { bootstrapCertificate, listenerHosts, type BootstrapCert } from "./server.js";
import { createAttestedListener, prepareVtpm, type AttestedListener } from "./attested-tls.js";

/** PeerEvent as it crosses IPC (JSON): the key as base64. */
export type WirePeerEvent =
  | Exclude<PeerEvent, { kind: "unsealed" | "rekeyed" }>
  | { kind: "unsealed"; key: string }
  | { kind: "rekeyed"; key: string };

export type ToWorker =
  | {
      t: "start";
      cfg: RuntimeConfig;
      bootstrap?: BootstrapCert;
      attestedListener?: AttestedListener;
      unsealKey?: string;
      progress: number;
    }
  | { t: "apply"; id: number; event: WirePeerEvent }
  | { t: "progress"; n: number }
  | { t: "reply"; id: number; shares?: string[] };

export type FromWorker =
  | { t: "listening"; url: string; initialized: boolean }
  | { t: "failed"; message: string }
  | { t: "share"; id: number; share: string }
  | { t: "reset"; id: number }
  | { t: "announce"; id: number; event: WirePeerEvent }
  | { t: "applied"; id: number; error?: string }
  /** The attested key every worker serves now serves this instance (kept for workers forked later). */
  | { t: "instance"; id: string };

const describeEvent = (e: WirePeerEvent): string =>
  e.kind === "changed"
    ? `${e.what} change`
    : e.kind === "unsealed"
      ? "unseal"
      : e.kind === "rekeyed"
        ? "rekey"
        : e.kind === "sealed"
          ? "seal"
          : "init";

export const toWire = (e: PeerEvent): WirePeerEvent =>
  e.kind === "unsealed" || e.kind === "rekeyed" ? { kind: e.kind, key: e.key.toString("base64") } : e;
export const fromWire = (e: WirePeerEvent): PeerEvent =>
  e.kind === "unsealed"
    ? { kind: "unsealed", key: Buffer.from(e.key, "base64") }
    : e.kind === "rekeyed"
      ? { kind: "rekeyed", key: Buffer.from(e.key, "base64") }
      : e;

/**
 * Rate limits are kept per worker and connections are spread round-robin, so each worker gets its
 * share of every rule and the runtime as a whole still allows about what the config says.
 */
export function perWorkerRateLimits(rules: RateLimitRule[], workers: number): RateLimitRule[] {
  return rules.map((r) => ({
    path: r.path,
    perSecond: r.perSecond / workers,
    burst: Math.max(1, Math.ceil(r.burst / workers)),
  }));
}

export interface RunningCluster {
  url: string;
  initialized: boolean;
  bootstrapFingerprint?: string;
  bootstrapCaFile?: string;
  /** Attested TLS: the SPKI SHA-256 of the in-memory key every worker serves. */
  attestedSpkiSha256?: string;
  close(): Promise<void>;
}

/** Respawns allowed in a minute before the supervisor gives up (a worker that cannot start would loop). */
const RESPAWN_LIMIT = 10;
/** How long a change may take to be applied by every worker before a laggard is replaced. */
const APPLY_TIMEOUT_MS = 10_000;
const WORKER_ENTRY = path.join(path.dirname(fileURLToPath(import.meta.url)), "cluster-worker.js");

export async function runCluster(cfg: RuntimeConfig, log: CoreLogger): Promise<RunningCluster> {
  if (!cluster.isPrimary) throw new Error("runCluster: already a cluster worker");
  const n = cfg.workers;
  const bootstrap = await bootstrapCertificate(cfg);
  if (cfg.attestation?.type === "simulated")
    throw new Error('attestation "simulated" runs in one process only (workers = 1): workers cannot load a simulator');
  // The HCL report's user-data is one NV index per VM: workers answering at once would overwrite each other's binding.
  if (cfg.attestation?.type === "azure")
    throw new Error('attestation "azure" runs in one process only (workers = 1): the vTPM has one HCL user-data index');
  // The vTPM's AK exists before any worker serves (they would otherwise race to create and persist it).
  if (cfg.attestation?.vtpm) await prepareVtpm(cfg.attestation.vtpm);
  // Every worker serves the same in-memory attested key (sent over the IPC channel, never written).
  const attestedListener = cfg.attestation ? await createAttestedListener(listenerHosts(cfg)) : undefined;
  const workerCfg: RuntimeConfig = { ...cfg, workers: 1, rateLimits: perWorkerRateLimits(cfg.rateLimits, n) };
  cluster.setupPrimary({ exec: WORKER_ENTRY, args: [], silent: false });

  let shares: Buffer[] = [];
  let unsealKey: Buffer | undefined;
  let closing = false;
  const respawns: number[] = [];
  /** Announcements waiting for workers to apply them: id → workers still to answer. */
  const waiting = new Map<number, { left: Set<number>; done: () => void }>();
  let seq = 0;

  const live = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && w.isConnected());
  const send = (w: Worker, m: ToWorker) => {
    if (w.isConnected()) w.send(m);
  };
  const broadcastProgress = () => {
    for (const w of live()) send(w, { t: "progress", n: shares.length });
  };

  /**
   * Sends an event to every worker except `from`; resolves when they have all applied it or died. A
   * worker that has not applied it within APPLY_TIMEOUT_MS is killed: its replacement starts in the
   * new state, which is better than a worker serving the old one.
   */
  function relay(from: number, event: WirePeerEvent): Promise<void> {
    const others = live().filter((w) => w.id !== from);
    if (others.length === 0) return Promise.resolve();
    const id = ++seq;
    return new Promise((done) => {
      const timer = setTimeout(() => {
        for (const w of live()) {
          if (!waiting.get(id)?.left.has(w.id)) continue;
          log.error(
            `worker ${w.process.pid} did not apply the ${describeEvent(event)} within ${APPLY_TIMEOUT_MS / 1000} s; replacing it`,
          );
          w.process.kill("SIGKILL");
        }
      }, APPLY_TIMEOUT_MS);
      waiting.set(id, {
        left: new Set(others.map((w) => w.id)),
        done: () => {
          clearTimeout(timer);
          done();
        },
      });
      for (const w of others) send(w, { t: "apply", id, event });
    });
  }

  function settle(id: number, workerId: number) {
    const w = waiting.get(id);
    if (!w) return;
    w.left.delete(workerId);
    if (w.left.size === 0) {
      waiting.delete(id);
      w.done();
    }
  }

  async function onMessage(w: Worker, m: FromWorker) {
    switch (m.t) {
      case "share": {
        const share = Buffer.from(m.share, "base64");
        if (!shares.some((s) => s.equals(share))) shares.push(share);
        broadcastProgress();
        send(w, { t: "reply", id: m.id, shares: shares.map((s) => s.toString("base64")) });
        return;
      }
      case "reset":
        shares = [];
        broadcastProgress();
        send(w, { t: "reply", id: m.id });
        return;
      case "announce": {
        const ev = m.event;
        // The supervisor's own state changes first, so a worker forked meanwhile starts in the new state.
        if (ev.kind === "unsealed") {
          unsealKey = Buffer.from(ev.key, "base64");
          shares = [];
          broadcastProgress();
        }
        if (ev.kind === "sealed") {
          unsealKey?.fill(0);
          unsealKey = undefined;
        }
        // A worker forked after a rekey starts with the new key (the old one no longer opens the keyring).
        if (ev.kind === "rekeyed" && unsealKey) {
          unsealKey.fill(0);
          unsealKey = Buffer.from(ev.key, "base64");
        }
        await relay(w.id, ev);
        send(w, { t: "reply", id: m.id });
        return;
      }
      case "instance":
        if (attestedListener && !attestedListener.servedInstanceId) attestedListener.servedInstanceId = m.id;
        return;
      case "applied":
        if (m.error) log.error(`worker ${w.process.pid}: applying a change from another worker failed: ${m.error}`);
        settle(m.id, w.id);
        return;
      default:
        return;
    }
  }

  function fork(): Worker {
    const w = cluster.fork();
    w.on("message", (m: FromWorker) => {
      void onMessage(w, m);
    });
    w.once("online", () =>
      send(w, {
        t: "start",
        cfg: workerCfg,
        bootstrap,
        attestedListener,
        unsealKey: unsealKey?.toString("base64"),
        progress: shares.length,
      }),
    );
    return w;
  }

  cluster.on("exit", (w, code, signal) => {
    for (const id of [...waiting.keys()]) settle(id, w.id);
    if (closing) return;
    const now = Date.now();
    while (respawns.length && now - respawns[0] > 60_000) respawns.shift();
    if (respawns.length >= RESPAWN_LIMIT) {
      log.error(
        `worker ${w.process.pid} exited (${signal ?? code}); ${RESPAWN_LIMIT} respawns in a minute, not restarting it`,
      );
      return;
    }
    respawns.push(now);
    log.warn(`worker ${w.process.pid} exited (${signal ?? code}); starting a new one`);
    fork();
  });

  // Start the workers one after the other: the first one runs storage migrations alone.
  let first: { url: string; initialized: boolean } | undefined;
  for (let i = 0; i < n; i++) {
    const w = fork();
    const up = await new Promise<{ url: string; initialized: boolean }>((resolve, reject) => {
      const onMsg = (m: FromWorker) => {
        if (m.t === "listening") {
          cleanup();
          resolve(m);
        }
        if (m.t === "failed") {
          cleanup();
          reject(new Error(m.message));
        }
      };
      const onExit = (code: number) => {
        cleanup();
        reject(new Error(`worker exited with code ${code} while starting`));
      };
      const cleanup = () => {
        w.off("message", onMsg);
        w.off("exit", onExit);
      };
      w.on("message", onMsg);
      w.once("exit", onExit);
    }).catch(async (e) => {
      closing = true;
      for (const x of live()) x.kill("SIGTERM");
      throw e;
    });
    first ??= up;
  }

  return {
    url: first!.url,
    initialized: first!.initialized,
    bootstrapFingerprint: bootstrap?.fingerprint,
    ...(attestedListener ? { attestedSpkiSha256: attestedListener.spkiSha256 } : {}),
    bootstrapCaFile: bootstrap && cfg.listener.tlsDir ? path.join(cfg.listener.tlsDir, "bootstrap-ca.pem") : undefined,
    close: async () => {
      closing = true;
      unsealKey?.fill(0);
      const exits = live().map(
        (w) =>
          new Promise<void>((r) => {
            if (w.isDead()) r();
            else w.once("exit", () => r());
          }),
      );
      for (const w of live()) w.kill("SIGTERM");
      // A worker that does not finish its shutdown (hung, stopped) is killed.
      const force = setTimeout(() => {
        for (const w of Object.values(cluster.workers ?? {})) w?.process.kill("SIGKILL");
      }, 10_000);
      await Promise.all(exits);
      clearTimeout(force);
    },
  };
}
