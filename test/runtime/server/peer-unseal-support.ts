// Replicas of an attested runtime as real servers (fastify over TLS, in this process) on shared storage, with
// simulated SEV-SNP or TDX evidence, and a hostile client speaking sys/peer-unseal/* by hand.
import https from "node:https";
import net from "node:net";
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { generateKeyPairSync } from "node:crypto";
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";
import { parseConfig } from "../../../runtime/server/http/config.js";
import { startServer, type RunningServer } from "../../../runtime/server/http/server.js";
import type { RuntimeEvidenceSource } from "../../../runtime/server/http/attested-tls.js";
import type { AutoUnsealProvider, CoreLogger } from "../../../runtime/server/vault/core.js";
import type { TrustConfig } from "../../../runtime/attestation/policy.js";
import { hybridBindingMaterial } from "../../../runtime/attestation/binding.js";
import { hybridOpen } from "../../../runtime/attestation/hybrid-seal.js";
import type { WireEvidence } from "../../../runtime/protocol/evidence.js";
import { AUTO_UNSEAL_KEY_REQUEST, encodeKeyRequest } from "../../../runtime/attestation/snp/derived-key.js";
import { createSnpSimulator, type SnpSimulator } from "../../../runtime/sim/snp.js";
import type { TdxSimulator } from "../../../runtime/sim/tdx.js";

export const SNP_POLICY = 0x30000n;

/**
 * Evidence from a simulated SEV-SNP chip for a launch of `measurement`; `masked`: the host set MASK_CHIP_ID (CHIP_ID
 * reads as zero), signed with the VLEK (a VCEK names the chip whatever the report says) or the VCEK.
 */
export function snpSource(
  chip: SnpSimulator,
  measurement: string,
  o: { masked?: "vlek" | "vcek"; hostData?: Uint8Array } = {},
): RuntimeEvidenceSource {
  return {
    name: `snp-sim:${Buffer.from(chip.chipId).toString("hex").slice(0, 8)}${o.masked ? ":masked" : ""}`,
    async collect(reportData) {
      const r = await chip.report({
        measurement,
        reportData,
        ...(o.masked ? { maskChipId: true, signer: o.masked } : {}),
        ...(o.hostData ? { hostData: o.hostData } : {}),
      });
      return {
        kind: "snp",
        report: Buffer.from(r.report).toString("base64"),
        cert_table: Buffer.from(r.certTable).toString("base64"),
      };
    },
  };
}

/** The chip's derived key for that launch (MSG_KEY_REQ with the runtime's own request). */
export function snpDerivedKey(chip: SnpSimulator, measurement: string): AutoUnsealProvider {
  return {
    type: "snp-derived-key",
    deriveKey: async () =>
      chip.deriveKey(encodeKeyRequest(AUTO_UNSEAL_KEY_REQUEST, chip.product), {
        measurement: Buffer.from(measurement, "hex"),
        policy: SNP_POLICY,
      }),
  };
}

/** Quotes from a simulated TDX module for a TD with these MRTD/RTMRs (no derived key exists on TDX). */
export function tdxSource(
  tdx: TdxSimulator,
  mrTd: Buffer,
  rtmrs: Buffer[],
  teeTcbSvn?: Buffer,
  mrConfigId?: Buffer,
): RuntimeEvidenceSource {
  return {
    name: "tdx-sim",
    async collect(reportData) {
      const quote = tdx.quote({
        mrTd,
        rtmrs,
        reportData,
        ...(teeTcbSvn ? { teeTcbSvn } : {}),
        ...(mrConfigId ? { mrConfigId } : {}),
      });
      return { kind: "tdx", quote: Buffer.from(quote).toString("base64") };
    },
  };
}

export interface Logged extends CoreLogger {
  lines: string[];
}
export function logger(): Logged {
  const lines: string[] = [];
  return { lines, info: (m) => lines.push(m), warn: (m) => lines.push(m), error: (m) => lines.push(m) };
}

/** One replica: its own listener key and evidence, the shared storage stanza, its peers (if it asks any). */
export async function startReplica(o: {
  storage: string;
  source: RuntimeEvidenceSource;
  trust: TrustConfig;
  autoUnseal?: AutoUnsealProvider;
  peers?: string[];
  log?: Logged;
  /** `peer_unseal.launch_binds_instance_id = true` (a replica that only releases lists a placeholder peer). */
  bindInstance?: boolean;
}): Promise<RunningServer> {
  const peers = o.peers ?? (o.bindInstance ? ["https://127.0.0.1:9"] : undefined);
  const cfg = parseConfig(`
    ${o.storage}
    listener "tcp" { address = "127.0.0.1:0" }
    attestation "simulated" {}
    rate_limit "sys/peer-unseal/*" { per_second = 1000  burst = 1000 }
    rate_limit "sys/attestation" { per_second = 1000  burst = 1000 }
    ${peers ? `peer_unseal { peers = ${JSON.stringify(peers)}  retry_interval = "1h"${o.bindInstance ? "  launch_binds_instance_id = true" : ""} }` : ""}
  `);
  return startServer(cfg, {
    evidenceSource: o.source,
    peerTrust: o.trust,
    peerUnsealAtStart: false,
    ...(o.autoUnseal ? { autoUnseal: o.autoUnseal } : {}),
    ...(o.log ? { logger: o.log } : {}),
  });
}

const PG_TEST_SERVER = path.resolve(import.meta.dirname, "../../../scripts/pg-test-server.sh");

/** A fresh PostgreSQL cluster for a replica set's shared storage (scripts/pg-test-server.sh): its data dir and URL. */
export function startTestPostgres(prefix: string): { dir: string; url: string } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir, url: execFileSync(PG_TEST_SERVER, ["start", dir], { encoding: "utf8" }).trim() };
}

/** Stops a cluster startTestPostgres started (nothing when it was never started). */
export function stopTestPostgres(dir: string): void {
  if (dir) execFileSync(PG_TEST_SERVER, ["stop", dir]);
}

/** Another chip under `chip`'s simulated AMD hierarchy: the same trust anchor, another CHIP_ID (other derived keys). */
export async function siblingChip(chip: SnpSimulator, chipId: string): Promise<SnpSimulator> {
  return createSnpSimulator({ state: { ...(await chip.exportState()), chipId, veks: {} } });
}

/**
 * Starts replicas of one set with the set's trust (read when each starts) and a fresh logger each, recording the
 * servers (for the teardown) and the logs (for assertions on what each replica said).
 */
export function replicaStarter(set: { servers: RunningServer[]; logs: Logged[]; trust: () => TrustConfig }) {
  return async (o: Omit<Parameters<typeof startReplica>[0], "trust" | "log">): Promise<RunningServer> => {
    const log = logger();
    set.logs.push(log);
    const s = await startReplica({ ...o, trust: set.trust(), log });
    set.servers.push(s);
    return s;
  };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped JSON from the API
export type Json = any;

/** A request over TLS that judges no certificate (the hostile client's, and the test's own calls). */
export function call(
  url: string,
  method: string,
  path: string,
  body?: unknown,
  token?: string,
): Promise<{ status: number; body: Json }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = https.request(
      new URL(`/v1/${path}`, url),
      {
        method,
        rejectUnauthorized: false,
        headers: {
          ...(data ? { "content-type": "application/json" } : {}),
          ...(token ? { "x-vault-token": token } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (d: Buffer) => chunks.push(d));
        res.on("end", () => {
          const t = Buffer.concat(chunks).toString("utf8");
          let parsed: Json = t;
          try {
            parsed = t ? JSON.parse(t) : undefined;
          } catch {
            /* raw */
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on("error", reject);
    req.end(data);
  });
}

/** A requester's ephemeral keys (what a replica makes per attempt), for the hand-made client. */
export function requesterKeys() {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
  const mlkem = ml_kem768.keygen();
  return {
    privateKey,
    jwk: publicKey.export({ format: "jwk" }),
    mlkem,
    material: hybridBindingMaterial(publicKey.export({ type: "spki", format: "der" }), mlkem.publicKey),
    body: (nonce: string, evidence: WireEvidence) => ({
      nonce,
      evidence,
      p384_public_key: publicKey.export({ format: "jwk" }),
      mlkem_public_key: Buffer.from(mlkem.publicKey).toString("base64"),
    }),
    open: (sealed: string) =>
      hybridOpen(sealed, { p384PrivateKey: privateKey, mlkemSecretKey: mlkem.secretKey }) as Promise<Json>,
  };
}

/**
 * The host's router in front of a peer address: forwards every TCP connection to the current backend. `switchTo`
 * makes new connections wait until the promised backend is up (a restart of the replica behind the same address)
 * and cuts the old backend's connections.
 */
export async function hostRoute(backend: string): Promise<{
  url: string;
  switchTo: (next: Promise<string>) => void;
  close: () => Promise<void>;
}> {
  let current: Promise<string> = Promise.resolve(backend);
  const open = new Set<net.Socket>();
  const server = net.createServer((client) => {
    open.add(client);
    client.on("close", () => open.delete(client));
    client.pause();
    void current.then(
      (url) => {
        const u = new URL(url);
        const up = net.connect(Number(u.port), u.hostname);
        open.add(up);
        up.on("close", () => open.delete(up));
        up.on("error", () => client.destroy());
        client.on("error", () => up.destroy());
        client.pipe(up).pipe(client);
        client.resume();
      },
      () => client.destroy(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `https://127.0.0.1:${port}`,
    switchTo: (next) => {
      for (const s of open) s.destroy();
      current = next;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}
