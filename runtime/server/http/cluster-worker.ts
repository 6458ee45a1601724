// One worker process of a multi-worker `runtime server` (forked by runtime/server/cluster.ts): waits
// for its configuration from the supervisor, opens the storage, applies the runtime's current seal
// state before it accepts connections, then serves like a single-process server. Unseal progress and
// changes that the other workers must apply go through the supervisor (WorkerPeers).
import type { CorePeers, PeerEvent } from "../vault/core.js";
import { startServer, type RunningServer } from "./server.js";
import { fromWire, toWire, type FromWorker, type ToWorker } from "./cluster.js";

const log = {
  info: (m: string) => process.stderr.write(`[info] worker ${process.pid}: ${m}\n`),
  warn: (m: string) => process.stderr.write(`[warn] worker ${process.pid}: ${m}\n`),
  error: (m: string) => process.stderr.write(`[error] worker ${process.pid}: ${m}\n`),
};

const send = (m: FromWorker) => process.send!(m);

class WorkerPeers implements CorePeers {
  progress = 0;
  private seq = 0;
  private readonly pending = new Map<number, (m: Extract<ToWorker, { t: "reply" }>) => void>();

  private ask(m: { t: "share"; share: string } | { t: "reset" } | { t: "announce"; event: ReturnType<typeof toWire> }) {
    const id = ++this.seq;
    return new Promise<Extract<ToWorker, { t: "reply" }>>((resolve) => {
      this.pending.set(id, resolve);
      send({ ...m, id });
    });
  }

  reply(m: Extract<ToWorker, { t: "reply" }>) {
    this.pending.get(m.id)?.(m);
    this.pending.delete(m.id);
  }

  async addUnsealShare(share: Buffer): Promise<Buffer[]> {
    const r = await this.ask({ t: "share", share: share.toString("base64") });
    return (r.shares ?? []).map((s) => Buffer.from(s, "base64"));
  }

  async resetUnseal(): Promise<void> {
    await this.ask({ t: "reset" });
  }

  async announce(event: PeerEvent): Promise<void> {
    await this.ask({ t: "announce", event: toWire(event) });
  }
}

const peers = new WorkerPeers();
let server: RunningServer | undefined;
let startupKey: Buffer | undefined;
// Changes from other workers are applied in order, and only once this worker's server is up.
let readyToApply!: () => void;
let applying: Promise<unknown> = new Promise<void>((resolve) => {
  readyToApply = resolve;
});

async function start(m: Extract<ToWorker, { t: "start" }>) {
  peers.progress = m.progress;
  startupKey = m.unsealKey ? Buffer.from(m.unsealKey, "base64") : undefined;
  try {
    server = await startServer(m.cfg, {
      logger: log,
      peers,
      bootstrapCert: m.bootstrap,
      attestedListener: m.attestedListener,
      onInstanceServed: (id) => send({ t: "instance", id }),
      beforeListen: async (core) => {
        if (startupKey) await core.applyPeerEvent({ kind: "unsealed", key: startupKey });
        startupKey?.fill(0);
        startupKey = undefined;
      },
    });
  } catch (e) {
    send({ t: "failed", message: (e as Error).message });
    process.exit(1);
  }
  readyToApply();
  send({ t: "listening", url: server.url, initialized: await server.core.initialized() });
}

function apply(m: Extract<ToWorker, { t: "apply" }>) {
  applying = applying.then(async () => {
    try {
      const ev = fromWire(m.event);
      await server!.core.applyPeerEvent(ev);
      if (ev.kind === "initialized") server!.reloadCertificate();
      send({ t: "applied", id: m.id });
    } catch (e) {
      send({ t: "applied", id: m.id, error: (e as Error).message });
    }
  });
}

process.on("message", (m: ToWorker) => {
  if (m.t === "start") void start(m);
  else if (m.t === "apply") apply(m);
  else if (m.t === "progress") peers.progress = m.n;
  else if (m.t === "reply") peers.reply(m);
});

// The supervisor decides the worker's life: SIGTERM closes cleanly; a lost supervisor means exit.
let stopping: Promise<void> | undefined;
const stop = () =>
  (stopping ??= (async () => {
    try {
      await server?.close();
    } finally {
      process.exit(0);
    }
  })());
process.once("SIGTERM", () => void stop());
process.on("SIGINT", () => {
  /* the supervisor sends SIGTERM after a Ctrl-C on the process group */
});
process.once("disconnect", () => void stop());
