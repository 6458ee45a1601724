// A replica set of attested runtimes on one storage (PostgreSQL for SEV-SNP, a SQLite file for TDX): every
// replica attests on its own key; a sealed replica (TDX: no derived key; SEV-SNP: moved to another chip) is
// unsealed by k attested peers on k distinct machines over real HTTP, and every hostile request is refused by the
// check it fails — including a host that multiplies one machine into several "peers" (restarts, VMs on one chip).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { createSnpSimulator, type SnpSimulator } from "../../../runtime/sim/snp.js";
import { TdxSimulator } from "../../../runtime/sim/tdx.js";
import { peerUnsealReportData, replicaSetLaunchBinding } from "../../../runtime/attestation/binding.js";
import { SqliteStorage } from "../../../runtime/server/storage/sqlite.js";
import type { Storage } from "../../../runtime/server/storage/types.js";
import { InstanceRefusedError } from "../../../runtime/server/vault/core.js";
import { replicaReference } from "../../../runtime/server/peer/reference.js";
import { keyringAcceptor } from "../../../runtime/server/peer/instance.js";
import type { TrustConfig } from "../../../runtime/attestation/policy.js";
import { runtimeExpectation, verifyReplicas } from "../../../runtime/client/attested-tls.js";
import type { RunningServer } from "../../../runtime/server/http/server.js";
import { haveCommand, requireTool } from "../../support/prereq.js";
import {
  call,
  hostRoute,
  logger,
  replicaStarter,
  requesterKeys,
  siblingChip,
  snpDerivedKey,
  snpSource,
  startReplica,
  startTestPostgres,
  stopTestPostgres,
  tdxSource,
  type Json,
  type Logged,
} from "./peer-unseal-support.js";

const M = "ab".repeat(48);
const OTHER = "cd".repeat(48);
const SECRET = "peer-unseal-marker-7f3e";

const have = haveCommand("bash", ["-c", "ls /usr/lib/postgresql/*/bin/initdb"]);
const ok = requireTool("PostgreSQL server (apt-get install postgresql)", have);

let pgDir = "";
let pgUrl = "";
let dir = "";
let chipA: SnpSimulator;
let chipB: SnpSimulator;
let chipC: SnpSimulator;
let tdx: TdxSimulator;
let trust: TrustConfig;
const servers: RunningServer[] = [];
const logs: Logged[] = [];
let r1: RunningServer, r2: RunningServer, r3: RunningServer;
let keys: string[] = [];
let root = "";
let auditFile = "";

const pgStorage = () => `storage "postgresql" { connection_url = "${pgUrl}" }`;
const replica = replicaStarter({ servers, logs, trust: () => trust });
const snp = (chip: SnpSimulator, m = M) => ({ source: snpSource(chip, m), autoUnseal: snpDerivedKey(chip, m) });

/** A hand-made requester: challenge at `peer`, evidence from `source` over (nonce, `bound` keys), keys `sent`. */
async function ask(
  peer: RunningServer,
  source: ReturnType<typeof snpSource>,
  o: { bound?: ReturnType<typeof requesterKeys>; sent?: ReturnType<typeof requesterKeys>; nonce?: string } = {},
) {
  const sent = o.sent ?? requesterKeys();
  const bound = o.bound ?? sent;
  let nonce = o.nonce;
  if (!nonce) {
    const ch = await call(peer.url, "POST", "sys/peer-unseal/challenge", {});
    expect(ch.status, JSON.stringify(ch.body)).toBe(200);
    nonce = ch.body.data.nonce as string;
  }
  const evidence = await source.collect(peerUnsealReportData(Buffer.from(nonce, "hex"), bound.material));
  const body = sent.body(nonce, evidence);
  const r = await call(peer.url, "POST", "sys/peer-unseal/share", body);
  return { ...r, body: r.body as Json, request: body, keys: sent };
}

beforeAll(async () => {
  if (!ok) return;
  ({ dir: pgDir, url: pgUrl } = startTestPostgres("bk-pg-peer-"));
  dir = mkdtempSync(path.join(tmpdir(), "bk-peer-unseal-"));
  chipA = await createSnpSimulator({ rsaBits: 2048 });
  // Other chips under the same (simulated) AMD hierarchy: same anchor, other CHIP_ID, other derived keys.
  chipB = await siblingChip(chipA, "5a".repeat(64));
  chipC = await siblingChip(chipA, "c3".repeat(64));
  tdx = await TdxSimulator.create();
  trust = {
    snp: { simulated: [chipA.trustAnchor] },
    tdx: { simulatedRoots: [tdx.rootFingerprint], fetchCollateral: false },
  };
  r1 = await replica({ storage: pgStorage(), ...snp(chipA) });
  const init = await call(r1.url, "PUT", "sys/init", { secret_shares: 3, secret_threshold: 2, peer_threshold: 2 });
  expect(init.status, JSON.stringify(init.body)).toBe(200);
  keys = init.body.keys;
  root = init.body.root_token;
  for (const k of keys.slice(0, 2)) await call(r1.url, "PUT", "sys/unseal", { key: k });
  expect(r1.core.sealed).toBe(false);
  // Same chip, same launch: r2 unseals itself with the derived key at start. r3 runs on another chip (a peer is a
  // machine: r1 and r2 are one), where the derived key opens nothing: its operators unseal it.
  r2 = await replica({ storage: pgStorage(), ...snp(chipA) });
  r3 = await replica({ storage: pgStorage(), ...snp(chipC) });
  expect(r3.core.sealed).toBe(true);
  for (const k of keys.slice(0, 2)) await call(r3.url, "PUT", "sys/unseal", { key: k });
  expect([r2.core.sealed, r3.core.sealed]).toEqual([false, false]);
  // One storage, one barrier, one runtime instance: every replica binds the same instance id.
  expect(r1.core.instanceId).toBeDefined();
  expect([r2.core.instanceId, r3.core.instanceId].every((x) => x!.equals(r1.core.instanceId!))).toBe(true);
  expect(
    (await call(r1.url, "POST", "sys/mounts/secret", { type: "kv", options: { version: "2" } }, root)).status,
  ).toBe(204);
  expect((await call(r2.url, "POST", "secret/data/app", { data: { password: SECRET } }, root)).status).toBe(200);
  auditFile = path.join(dir, "audit-r1.log");
  expect(
    (await call(r1.url, "PUT", "sys/audit/file", { type: "file", options: { file_path: auditFile } }, root)).status,
  ).toBe(204);
}, 180_000);

afterAll(async () => {
  for (const s of servers) await s.close().catch(() => undefined);
  stopTestPostgres(pgDir);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.runIf(ok)("a replica set of attested runtimes on shared PostgreSQL", () => {
  it("every replica attests on its own key, and one impostor refuses the set", async () => {
    const expected = runtimeExpectation({
      snpMeasurements: [M],
      simulatedAnchors: [
        {
          product: chipA.trustAnchor.product,
          ark_sha256: chipA.trustAnchor.arkSha256,
          ca_certs: chipA.trustAnchor.caCerts.map((c) => Buffer.from(c).toString("base64")),
        },
      ],
      kds: "off",
    });
    const set = await verifyReplicas([r1.url, r2.url, r3.url], { expected });
    expect(set.map((v) => v.ok)).toEqual([true, true, true]);
    expect(new Set(set.map((v) => v.spkiSha256)).size).toBe(3);
    expect(set.map((v) => v.spkiSha256)).toEqual([r1, r2, r3].map((r) => r.attestedSpkiSha256));
    const impostor = await replica({ storage: pgStorage(), source: snpSource(chipA, OTHER) });
    const withImpostor = await verifyReplicas([r1.url, impostor.url, r3.url], { expected });
    expect(withImpostor.map((v) => v.ok)).toEqual([true, false, true]);
    expect(withImpostor[1].reason).toMatch(/^policy\.measurement/);
  });
});

describe.runIf(ok)("peer unseal: hostile requesters are refused", () => {
  it("a requester running another measurement is refused by every peer (policy.measurement)", async () => {
    for (const peer of [r1, r2, r3]) {
      const r = await ask(peer, snpSource(chipA, OTHER));
      expect(r.status).toBe(403);
      expect(r.body.errors[0]).toMatch(/^peer-unseal refused: policy\.measurement: /);
      expect(JSON.stringify(r.body)).not.toContain("sealed");
    }
    // The same requester as a real replica: it refuses to even talk to peers that run something else.
    const log = logger();
    logs.push(log);
    const other = await startReplica({
      storage: pgStorage(),
      source: snpSource(chipA, OTHER),
      trust,
      peers: [r1.url, r2.url],
      log,
    });
    servers.push(other);
    const res = await other.peerUnseal!();
    expect(res.unsealed).toBe(false);
    expect(res.refusals.map((x) => x.reason)).toEqual([
      expect.stringMatching(/^peer not verified: policy\.measurement/),
      expect.stringMatching(/^peer not verified: policy\.measurement/),
    ]);
    expect(other.core.sealed).toBe(true);
  });

  it("a replayed request and stale or foreign nonces are refused (peer.nonce)", async () => {
    const good = await ask(r1, snpSource(chipB, M));
    expect(good.status).toBe(200);
    const replay = await call(r1.url, "POST", "sys/peer-unseal/share", good.request);
    expect(replay.status).toBe(403);
    expect(replay.body.errors[0]).toMatch(/^peer-unseal refused: peer\.nonce: .*already used \(replayed request\)/);
    // A nonce r1 issued, spent at r2 (shared storage, but not r2's challenge).
    const ch = await call(r1.url, "POST", "sys/peer-unseal/challenge", {});
    const foreign = await ask(r2, snpSource(chipB, M), { nonce: ch.body.data.nonce });
    expect(foreign.status).toBe(403);
    expect(foreign.body.errors[0]).toMatch(/peer\.nonce: the nonce was issued by another replica/);
    // A stale nonce: a record of r1's whose lifetime is over (written as NonceStore keeps it; issuing it through
    // NonceStore would let its own sweep delete it first).
    const staleNonce = randomBytes(32);
    await r1.core.barrier.put(
      `core/peer-unseal/nonces/${createHash("sha256").update(staleNonce).digest("hex")}`,
      Buffer.from(
        JSON.stringify({ workload_id: r1.attestedSpkiSha256, expires_at: Math.floor(Date.now() / 1000) - 5 }),
      ),
    );
    const stale = { nonce: staleNonce };
    const late = await ask(r1, snpSource(chipB, M), { nonce: stale.nonce.toString("hex") });
    expect(late.status).toBe(403);
    expect(late.body.errors[0]).toMatch(/peer\.nonce: the nonce has expired \(stale request\)/);
  });

  it("evidence whose REPORT_DATA binds another key is refused (peer.key-binding)", async () => {
    const r = await ask(r2, snpSource(chipB, M), { bound: requesterKeys(), sent: requesterKeys() });
    expect(r.status).toBe(403);
    expect(r.body.errors[0]).toMatch(/^peer-unseal refused: peer\.key-binding: /);
  });

  it("a client without acceptable evidence gets no share: wrong method, missing fields, untrusted roots", async () => {
    expect((await call(r1.url, "GET", "sys/peer-unseal/share")).status).toBe(405);
    const empty = await call(r1.url, "POST", "sys/peer-unseal/share", {});
    expect(empty.status).toBe(400);
    expect(empty.body.errors[0]).toBe("nonce: missing");
    const ch = await call(r1.url, "POST", "sys/peer-unseal/challenge", {});
    const noEvidence = await call(r1.url, "POST", "sys/peer-unseal/share", {
      nonce: ch.body.data.nonce,
      p384_public_key: requesterKeys().jwk,
      mlkem_public_key: "AAAA",
    });
    expect(noEvidence.status).toBe(400);
    expect(noEvidence.body.errors[0]).toBe("evidence: missing");
    // Genuine-looking evidence of the right measurement from a platform nobody trusts.
    const rogue = await createSnpSimulator({ rsaBits: 2048 });
    const r = await ask(r3, snpSource(rogue, M));
    expect(r.status).toBe(403);
    expect(r.body.errors[0]).toMatch(/^peer-unseal refused: snp\./);
    // A root token is no credential here, and the shares are reachable through no API path.
    const withToken = await call(r1.url, "GET", "sys/raw/core/peer-unseal/shares", undefined, root);
    expect(withToken.status).toBeGreaterThanOrEqual(400);
    expect(JSON.stringify(withToken.body)).not.toMatch(/shares":\[/);
  });

  it("a requester on firmware older than this replica's committed TCB is refused (peer.tcb), and refuses such a peer", async () => {
    // A host that moves the sealed replica to a machine on older, vulnerable SEV-SNP firmware: AMD still signs a
    // VCEK for that TCB, the measurement and HOST_DATA are the same, but the share would go to a platform whose
    // memory protection the host may defeat.
    const { tcb } = await chipA.exportState();
    const older = { ...tcb, snp: tcb.snp - 1 };
    const oldFirmware: ReturnType<typeof snpSource> = {
      name: "snp-sim:old-firmware",
      async collect(reportData) {
        const r = await chipB.report({ measurement: M, reportData, tcb: older });
        return {
          kind: "snp",
          report: Buffer.from(r.report).toString("base64"),
          cert_table: Buffer.from(r.certTable).toString("base64"),
        };
      },
    };
    for (const peer of [r1, r2]) {
      const r = await ask(peer, oldFirmware);
      expect(r.status).toBe(403);
      expect(r.body.errors[0]).toMatch(/^peer-unseal refused: peer\.tcb: .*snp 7 < 8/);
    }
    // The other direction: a sealed replica whose own platform is newer than its peers' accepts no share from them
    // (a peer on older firmware could hand out shares of a keyring the host wrote).
    const newer = { ...tcb, snp: tcb.snp + 1 };
    const log = logger();
    logs.push(log);
    const upgraded = await startReplica({
      storage: pgStorage(),
      source: {
        name: "snp-sim:new-firmware",
        async collect(reportData) {
          const r = await chipB.report({ measurement: M, reportData, tcb: newer });
          return {
            kind: "snp",
            report: Buffer.from(r.report).toString("base64"),
            cert_table: Buffer.from(r.certTable).toString("base64"),
          };
        },
      },
      trust,
      peers: [r1.url, r2.url],
      log,
    });
    servers.push(upgraded);
    const res = await upgraded.peerUnseal!();
    expect(res.unsealed).toBe(false);
    expect(res.refusals.map((x) => x.reason)).toEqual([
      expect.stringMatching(/^peer not verified: peer\.tcb/),
      expect.stringMatching(/^peer not verified: peer\.tcb/),
    ]);
  });

  it("a peer that is itself sealed refuses (peer.unsealed)", async () => {
    expect((await call(r3.url, "PUT", "sys/seal", {}, root)).status).toBe(204);
    const ch = await call(r3.url, "POST", "sys/peer-unseal/challenge", {});
    expect(ch.status).toBe(503);
    expect(ch.body.errors[0]).toMatch(/^peer-unseal refused: peer\.unsealed: /);
    const share = await call(r3.url, "POST", "sys/peer-unseal/share", { nonce: "00".repeat(32) });
    expect(share.status).toBe(503);
    for (const k of keys.slice(1, 3)) await call(r3.url, "PUT", "sys/unseal", { key: k });
    expect(r3.core.sealed).toBe(false);
  });

  it("k-1 attested peers leave a replica sealed, however often one of them is asked", async () => {
    const log = logger();
    logs.push(log);
    const lonely = await startReplica({
      storage: pgStorage(),
      ...snp(chipB),
      trust,
      peers: [r1.url, r1.url],
      log,
    });
    servers.push(lonely);
    expect(lonely.core.sealed).toBe(true);
    const res = await lonely.peerUnseal!();
    expect(res).toMatchObject({ unsealed: false, shares: 1, threshold: 2 });
    expect(res.refusals[0].reason).toMatch(/already have it \(not a distinct peer\)/);
    expect(lonely.core.sealed).toBe(true);
  });
});

describe.runIf(ok)("peer unseal counts machines, not replica processes (k = 2)", () => {
  /** A sealed replica on chip B asking `peers`, its log lines kept (and `onLine` called with each). */
  async function requester(peers: string[], onLine?: (line: string) => void) {
    const log = logger();
    logs.push(log);
    if (onLine) {
      const push = log.lines.push.bind(log.lines);
      log.lines.push = (...items: string[]) => {
        for (const l of items) onLine(l);
        return push(...items);
      };
    }
    const r = await startReplica({ storage: pgStorage(), ...snp(chipB), trust, peers, log });
    servers.push(r);
    expect(r.core.sealed).toBe(true);
    return r;
  }

  it("a replica's slot is its chip's: a restart on the same chip (new TLS key) releases the same share index", async () => {
    const first = await ask(r1, snpSource(chipB, M));
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    const index = first.body.data.share_index as number;
    // r2: another VM of the image on r1's chip; then a restart of it (a new process, a new key, the same chip).
    const again = await ask(r2, snpSource(chipB, M));
    expect(again.body.data.share_index).toBe(index);
    const restarted = await replica({ storage: pgStorage(), ...snp(chipA) });
    expect(restarted.core.sealed).toBe(false);
    expect(restarted.attestedSpkiSha256).not.toBe(r1.attestedSpkiSha256);
    expect(restarted.attestedSpkiSha256).not.toBe(r2.attestedSpkiSha256);
    const fromRestart = await ask(restarted, snpSource(chipB, M));
    expect(fromRestart.body.data.share_index).toBe(index);
    await restarted.close();
    // Another chip holds another slot.
    const other = await ask(r3, snpSource(chipB, M));
    expect(other.body.data.share_index).not.toBe(index);
    // Each sealed answer opens to the same share for the same chip.
    const shares = await Promise.all([first, again, fromRestart].map((x) => x.keys.open(x.body.data.sealed)));
    expect(new Set(shares.map((x: Json) => x.share)).size).toBe(1);
  });

  it("one peer replica restarted twice on its chip behind one address gives the requester one share: it stays sealed", async () => {
    // The host restarts the replica behind the peer address after each share it released (new process, new
    // attested TLS key each time, same chip A) and lists that address three times.
    let current = await replica({ storage: pgStorage(), ...snp(chipA) });
    const keysSeen = [current.attestedSpkiSha256];
    const route = await hostRoute(current.url);
    const restarts: Promise<string>[] = [];
    const restart = async () => {
      await current.close();
      current = await replica({ storage: pgStorage(), ...snp(chipA) });
      expect(current.core.sealed).toBe(false);
      keysSeen.push(current.attestedSpkiSha256);
      return current.url;
    };
    try {
      const sealed = await requester([route.url, route.url, route.url], (line) => {
        if (/^peer unseal: share \d+ from |not counted: /.test(line) && restarts.length < 2) {
          const next = restart();
          restarts.push(next);
          route.switchTo(next);
        }
      });
      const res = await sealed.peerUnseal!();
      await Promise.all(restarts);
      expect(keysSeen).toHaveLength(3);
      expect(new Set(keysSeen).size).toBe(3);
      expect(res).toMatchObject({ unsealed: false, shares: 1, threshold: 2 });
      expect(res.refusals.map((x) => x.reason)).toEqual([
        expect.stringMatching(/already have it \(not a distinct peer\); peer\.same-hardware: snp:/),
        expect.stringMatching(/already have it \(not a distinct peer\); peer\.same-hardware: snp:/),
      ]);
      expect(sealed.core.sealed).toBe(true);
    } finally {
      await route.close();
      await current.close();
    }
  });

  it("two replicas on one chip give one share; a peer whose slot moved to another index still counts once per chip", async () => {
    const sealed = await requester([r1.url, r2.url]);
    const res = await sealed.peerUnseal!();
    expect(res).toMatchObject({ unsealed: false, shares: 1, threshold: 2 });
    expect(res.refusals).toEqual([
      { peer: r2.url, reason: expect.stringMatching(/already have it \(not a distinct peer\); peer\.same-hardware/) },
    ]);
    expect(sealed.core.sealed).toBe(true);
    // The requester's own guard, apart from the slots: chip A's slot is taken over between the two asks (what a
    // full slot table does to the least recently used one), so r2 releases ANOTHER index for the same chip. The
    // requester takes the chip from r2's verified evidence and counts it once.
    const route = await hostRoute(r2.url);
    let takeover: Promise<string> | undefined;
    try {
      const again = await requester([r1.url, route.url], (line) => {
        if (!takeover && /^peer unseal: share \d+ from /.test(line)) {
          takeover = (async () => {
            const raw = await r1.core.barrier.get("core/peer-unseal/slots");
            const slots = JSON.parse(raw!.toString("utf8")) as Record<string, { holder: string; seen: number }>;
            for (const i of Object.keys(slots))
              if (
                slots[i].holder.startsWith("snp:") &&
                slots[i].holder.endsWith(Buffer.from(chipA.chipId).toString("hex"))
              )
                slots[i] = { holder: "snp:Milan:" + "e1".repeat(64), seen: Date.now() };
            await r1.core.barrier.put("core/peer-unseal/slots", Buffer.from(JSON.stringify(slots)));
            return r2.url;
          })();
          route.switchTo(takeover);
        }
      });
      const res2 = await again.peerUnseal!();
      expect(takeover).toBeDefined();
      expect(res2).toMatchObject({ unsealed: false, shares: 1, threshold: 2 });
      expect(res2.refusals).toEqual([
        {
          peer: route.url,
          reason: expect.stringMatching(/^share \d+: peer\.same-hardware: snp:\w+:[0-9a-f]{16}… already gave a share/),
        },
      ]);
      expect(res2.refusals[0].reason).not.toMatch(/already have it/);
      expect(again.core.sealed).toBe(true);
    } finally {
      await route.close();
    }
  });

  it("a masked CHIP_ID is refused by name on both sides (peer.chip-id)", async () => {
    // A requester whose host masked its CHIP_ID (VLEK-signed, so the chain verifies): the peer refuses by name.
    const masked = await ask(r1, snpSource(chipB, M, { masked: "vlek" }));
    expect(masked.status).toBe(403);
    expect(masked.body.errors[0]).toMatch(/^peer-unseal refused: peer\.chip-id: the requester's CHIP_ID is masked/);
    // VCEK-signed with a masked CHIP_ID: the VCEK names another chip than the report (the appraisal's snp.chip-id).
    const vcek = await ask(r1, snpSource(chipB, M, { masked: "vcek" }));
    expect(vcek.status).toBe(403);
    expect(vcek.body.errors[0]).toMatch(/^peer-unseal refused: snp\.chip-id: /);
    // A replica whose own CHIP_ID is masked holds no slot: it releases nothing, and a requester refuses it as a peer.
    const anonymous = await replica({ storage: pgStorage(), source: snpSource(chipC, M, { masked: "vlek" }) });
    for (const k of keys.slice(0, 2)) await call(anonymous.url, "PUT", "sys/unseal", { key: k });
    expect(anonymous.core.sealed).toBe(false);
    const ch = await call(anonymous.url, "POST", "sys/peer-unseal/challenge", {});
    expect(ch.status).toBe(403);
    expect(ch.body.errors[0]).toMatch(/^peer-unseal refused: peer\.chip-id: this replica's own CHIP_ID is masked/);
    const sealed = await requester([anonymous.url, r1.url]);
    const res = await sealed.peerUnseal!();
    expect(res).toMatchObject({ unsealed: false, shares: 1, threshold: 2 });
    expect(res.refusals).toEqual([
      {
        peer: anonymous.url,
        reason: expect.stringMatching(/^peer not verified: peer\.chip-id: the peer's CHIP_ID is masked/),
      },
    ]);
    await anonymous.close();
  });
});

describe.runIf(ok)("peer unseal: a replica moved to another chip", () => {
  it("cannot unseal itself with the derived key, and is unsealed by two attested peers", async () => {
    const log = logger();
    logs.push(log);
    const moved = await startReplica({
      storage: pgStorage(),
      ...snp(chipB),
      trust,
      // r1 and r3 are two machines (chips A and C); r2 shares r1's chip and is not needed.
      peers: [r1.url, r3.url, r2.url],
      log,
    });
    servers.push(moved);
    expect(moved.core.sealed).toBe(true);
    expect(log.lines.join("\n")).toMatch(/derived key does not open the sealed unseal key/);
    const res = await moved.peerUnseal!();
    expect(res).toMatchObject({ unsealed: true, shares: 2, threshold: 2, refusals: [] });
    expect(moved.core.sealed).toBe(false);
    // Unsealed by its peers, it is the same instance (what the deployer and the workloads pin).
    expect(moved.core.instanceId!.equals(r1.core.instanceId!)).toBe(true);
    const read = await call(moved.url, "GET", "secret/data/app", undefined, root);
    expect(read.body.data.data.password).toBe(SECRET);
    // Two distinct shares from two distinct peers (the third was not needed).
    expect(log.lines.filter((l) => /^peer unseal: share \d+ from /.test(l))).toHaveLength(2);
  });

  it("the audit log records each release with what was checked, never the share", async () => {
    const records = readFileSync(auditFile, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Json);
    const released = records.filter((r) => r.type === "response" && r.auth?.metadata?.peer_unseal === "released");
    expect(released.length).toBeGreaterThanOrEqual(2); // the replay test's request and the moved replica's
    for (const r of released) {
      expect(r.request.path).toBe("sys/peer-unseal/share");
      expect(r.auth.metadata).toMatchObject({ requester_measurement: M, requester_platform: "snp", simulated: "true" });
      expect(r.auth.metadata.share_index).toMatch(/^\d+$/);
      expect(r.auth.metadata.requester_key_sha256).toMatch(/^[0-9a-f]{64}$/);
      // Which machine released, and to which machine (the chips a share slot and the requester's count go by).
      expect(r.auth.metadata.peer_hardware).toMatch(/^snp:\w+:[0-9a-f]{128}$/);
      expect(r.auth.metadata.requester_hardware).toMatch(/^snp:\w+:[0-9a-f]{128}$/);
    }
    const refused = records.filter((r) => r.type === "response" && r.auth?.metadata?.peer_unseal === "refused");
    expect(refused.map((r) => r.auth.metadata.refused_check)).toEqual(
      expect.arrayContaining(["policy.measurement", "peer.nonce"]),
    );
    // No share, in any encoding, in the audit log, the replicas' logs or the database.
    const stored = JSON.parse((await r1.core.barrier.get("core/peer-unseal/shares"))!.toString("utf8")) as {
      shares: string[];
    };
    const forms = stored.shares.flatMap((b) => [b, Buffer.from(b, "base64").toString("hex")]);
    const client = new pg.Client({ connectionString: pgUrl });
    await client.connect();
    const dump = (await client.query("SELECT key, encode(value, 'escape') AS v FROM bk_kv")).rows
      .map((x) => `${x.key} ${x.v}`)
      .join("\n");
    await client.end();
    const audit = readFileSync(auditFile, "utf8");
    const logText = logs.map((l) => l.lines.join("\n")).join("\n");
    for (const f of [...forms, SECRET]) {
      expect(audit.includes(f)).toBe(false);
      expect(dump.includes(f)).toBe(false);
      expect(logText.includes(f)).toBe(false);
    }
  });
});

describe.runIf(ok)(
  "peer unseal: a twin the host initialised on the set's launch is no peer (launch_binds_instance_id)",
  () => {
    /** Every key of `from`, copied into a new SQLite file: the host swapping a whole storage. */
    async function copyStorage(from: Storage, file: string): Promise<void> {
      const to = new SqliteStorage(file);
      const walk = async (prefix: string): Promise<void> => {
        for (const k of await from.list(prefix)) {
          if (k.endsWith("/")) await walk(prefix + k);
          else await to.put(prefix + k, (await from.get(prefix + k))!);
        }
      };
      await walk("");
      await to.close();
    }

    it("a sealed replica refuses the twin as a peer and its keyring; the twin releases nothing; the genuine set unseals", async () => {
      const setDb = `storage "sqlite" { path = "${path.join(dir, "set.db")}" }`;
      const twinDb = path.join(dir, "twin.db");
      // 1. The first replica's bootstrap launch: its id does not exist yet, so its HOST_DATA is the deployment's.
      const bootHostData = Buffer.alloc(32, 0x11);
      const boot = await replica({
        storage: setDb,
        source: snpSource(chipA, M, { hostData: bootHostData }),
        autoUnseal: snpDerivedKey(chipA, M),
        bindInstance: true,
      });
      const init = await call(boot.url, "PUT", "sys/init", {
        secret_shares: 1,
        secret_threshold: 1,
        peer_threshold: 2,
      });
      expect(init.status, JSON.stringify(init.body)).toBe(200);
      const key = init.body.keys[0] as string;
      const setRoot = init.body.root_token as string;
      await call(boot.url, "PUT", "sys/unseal", { key });
      const id = boot.core.instanceId!;
      expect(
        (await call(boot.url, "POST", "sys/mounts/secret", { type: "kv", options: { version: "2" } }, setRoot)).status,
      ).toBe(204);
      expect((await call(boot.url, "POST", "secret/data/app", { data: { v: SECRET } }, setRoot)).status).toBe(200);
      // Its launch names no instance: it is not a peer of the set until relaunched into it.
      const bootCh = await call(boot.url, "POST", "sys/peer-unseal/challenge", {});
      expect(bootCh.status).toBe(403);
      expect(bootCh.body.errors[0]).toMatch(
        /^peer-unseal refused: peer\.instance-id: this replica's own instance [0-9a-f]{16}… is not the one this launch's HOST_DATA names/,
      );
      await boot.close();

      // 2. The set: HOST_DATA = replicaSetLaunchBinding(id), on chips A (the first replica relaunched: the derived key
      // ignores HOST_DATA, it unseals itself) and C (unsealed by its operator).
      const setHostData = replicaSetLaunchBinding(id, "snp");
      const member = (chip: SnpSimulator, extra: { peers?: string[]; log?: boolean } = {}) =>
        replica({
          storage: setDb,
          source: snpSource(chip, M, { hostData: setHostData }),
          autoUnseal: snpDerivedKey(chip, M),
          bindInstance: true,
          ...(extra.peers ? { peers: extra.peers } : {}),
        });
      const s1 = await member(chipA);
      expect(s1.core.sealed).toBe(false);
      const s2 = await member(chipC);
      await call(s2.url, "PUT", "sys/unseal", { key });
      expect(s2.core.instanceId!.equals(id)).toBe(true);
      expect((await call(s1.url, "POST", "sys/peer-unseal/challenge", {})).status).toBe(200);

      // 3. The host's twin: the same image on the set's (public) HOST_DATA, a blank storage it initialises itself —
      // on two machines, one of them without the setting (as if its own check were missing: it would release).
      const twinStorage = `storage "sqlite" { path = "${twinDb}" }`;
      const tw = await replica({
        storage: twinStorage,
        source: snpSource(chipC, M, { hostData: setHostData }),
        bindInstance: true,
      });
      const twInit = await call(tw.url, "PUT", "sys/init", {
        secret_shares: 1,
        secret_threshold: 1,
        peer_threshold: 2,
      });
      expect(twInit.status).toBe(200);
      const twinKey = twInit.body.keys[0] as string;
      await call(tw.url, "PUT", "sys/unseal", { key: twinKey });
      const tw2 = await replica({ storage: twinStorage, source: snpSource(chipA, M, { hostData: setHostData }) });
      await call(tw2.url, "PUT", "sys/unseal", { key: twinKey });
      expect(tw.core.instanceId!.equals(id)).toBe(false);
      // The twin, with the setting, releases nothing: its instance is not the one its launch names.
      const twCh = await call(tw.url, "POST", "sys/peer-unseal/challenge", {});
      expect(twCh.status).toBe(403);
      expect(twCh.body.errors[0]).toMatch(/^peer-unseal refused: peer\.instance-id: this replica's own instance/);
      // The one without the setting would release to a requester of the set's launch (what the requester must stop).
      const leak = await ask(tw2, snpSource(chipB, M, { hostData: setHostData }));
      expect(leak.status).toBe(200);

      // 4. A sealed replica of the set given the twin's URLs as its peers: refused in step 1, nothing asked.
      const requester = async (storage: string, peers: string[]) => {
        const log = logger();
        logs.push(log);
        const r = await startReplica({
          storage,
          source: snpSource(chipB, M, { hostData: setHostData }),
          trust,
          peers,
          log,
          bindInstance: true,
        });
        servers.push(r);
        expect(r.core.sealed).toBe(true);
        return r;
      };
      const fooled = await requester(setDb, [tw.url, tw2.url]);
      const res = await fooled.peerUnseal!();
      expect(res).toMatchObject({ unsealed: false, shares: 0 });
      expect(res.refusals.map((x) => x.reason)).toEqual([
        expect.stringMatching(
          /^peer not verified: peer\.instance-id: the peer's instance [0-9a-f]{16}… is not the one this launch's HOST_DATA names/,
        ),
        expect.stringMatching(/^peer not verified: peer\.instance-id: /),
      ]);
      expect(fooled.core.sealed).toBe(true);

      // 5. The twin's keyring and barrier swapped into a sealed replica's storage, the twin's URLs as its peers:
      // refused the same way; the genuine peers' shares do not open the twin's keyring either.
      const swappedFile = path.join(dir, "swapped.db");
      await copyStorage(tw.core.barrier.physical, swappedFile);
      const swappedDb = `storage "sqlite" { path = "${swappedFile}" }`;
      const swapped = await requester(swappedDb, [tw.url, tw2.url, s1.url, s2.url]);
      const res2 = await swapped.peerUnseal!();
      expect(res2.unsealed).toBe(false);
      expect(res2.refusals.slice(0, 2).map((x) => x.reason)).toEqual([
        expect.stringMatching(/^peer not verified: peer\.instance-id: /),
        expect.stringMatching(/^peer not verified: peer\.instance-id: /),
      ]);
      expect(swapped.core.sealed).toBe(true);
      // Defence in depth, for a step 1 that was fooled: the reassembled key of the twin's keyring (the key itself here)
      // is refused before the replica opens: the keyring's instance is not the one its launch names.
      const ref = replicaReference(await snpSource(chipB, M, { hostData: setHostData }).collect(randomBytes(64)));
      const acceptor = keyringAcceptor(ref);
      const refused = await swapped.core.unsealWithKey(Buffer.from(twinKey, "hex"), "a fooled quorum", acceptor).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(refused).toBeInstanceOf(InstanceRefusedError);
      expect((refused as Error).message).toMatch(
        /^peer\.instance-id: the reassembled keyring's instance [0-9a-f]{16}… is not the one/,
      );
      expect(swapped.core.sealed).toBe(true);
      expect(swapped.core.instanceId).toBeUndefined();
      // (Without the check, the same key unseals it — into the twin, the host's barrier.)
      await swapped.core.unsealWithKey(Buffer.from(twinKey, "hex"), "the control");
      expect(swapped.core.instanceId!.equals(tw.core.instanceId!)).toBe(true);
      // The genuine keyring passes the same check.
      expect(acceptor(id)).toBeUndefined();

      // 6. The genuine set still unseals a sealed replica — the twin in its peer list is refused, its peers are not.
      const genuine = await requester(setDb, [tw.url, s1.url, s2.url]);
      const ok2 = await genuine.peerUnseal!();
      expect(ok2).toMatchObject({ unsealed: true, shares: 2, threshold: 2 });
      expect(ok2.refusals).toEqual([
        { peer: tw.url, reason: expect.stringMatching(/^peer not verified: peer\.instance-id: /) },
      ]);
      expect(genuine.core.instanceId!.equals(id)).toBe(true);
      expect((await call(genuine.url, "GET", "secret/data/app", undefined, setRoot)).body.data.data.v).toBe(SECRET);
    });
  },
);

describe.runIf(ok)("peer unseal on TDX (no derived key exists) over a shared SQLite file", () => {
  const MRTD = Buffer.alloc(48, 0x71);
  const RTMRS = [0x10, 0x11, 0x12, 0x13].map((b) => Buffer.alloc(48, b));
  // The replicas' TDX module: TEE_TCB_SVN 3.0.… (byte 1 = 0: a TDX 1.0 module's report body).
  const SVN = Buffer.concat([Buffer.from([3]), Buffer.alloc(15)]);

  it("a restarted TDX replica is unsealed by k attested peers; another RTMR2 is refused by each", async () => {
    const storage = `storage "sqlite" { path = "${path.join(dir, "tdx.db")}" }`;
    const td = () => ({ storage, source: tdxSource(tdx, MRTD, RTMRS, SVN) });
    const t1 = await replica(td());
    const init = await call(t1.url, "PUT", "sys/init", { secret_shares: 1, secret_threshold: 1, peer_threshold: 2 });
    expect(init.status).toBe(200);
    const key = init.body.keys[0] as string;
    await call(t1.url, "PUT", "sys/unseal", { key });
    // t2 runs on another platform (another PCK certificate and PPID under the same Intel root): a peer is a
    // machine, and two TDs on one platform are one.
    const tdx2 = await tdx.otherPlatform();
    expect(tdx2.ppid).not.toBe(tdx.ppid);
    const t2 = await replica({ storage, source: tdxSource(tdx2, MRTD, RTMRS, SVN) });
    await call(t2.url, "PUT", "sys/unseal", { key });
    expect([t1.core.sealed, t2.core.sealed]).toEqual([false, false]);
    // Another kernel command line → another RTMR2: refused by every peer, by name.
    const tampered = tdxSource(tdx, MRTD, [RTMRS[0], RTMRS[1], Buffer.alloc(48, 0xee), RTMRS[3]], SVN);
    for (const peer of [t1, t2]) {
      const r = await ask(peer, tampered as ReturnType<typeof snpSource>);
      expect(r.status).toBe(403);
      expect(r.body.errors[0]).toMatch(/^peer-unseal refused: policy\.rtmr2: /);
    }
    // A TDX module older than the peers' (lower TEE_TCB_SVN): refused by every peer, by name.
    const oldModule: ReturnType<typeof snpSource> = {
      name: "tdx-sim:old-module",
      async collect(reportData) {
        const quote = tdx.quote({
          mrTd: MRTD,
          rtmrs: RTMRS,
          reportData,
          teeTcbSvn: Buffer.concat([Buffer.from([2]), Buffer.alloc(15)]),
        });
        return { kind: "tdx", quote: Buffer.from(quote).toString("base64") };
      },
    };
    for (const peer of [t1, t2]) {
      const r = await ask(peer, oldModule);
      expect(r.status).toBe(403);
      expect(r.body.errors[0]).toMatch(/^peer-unseal refused: policy\.tee-tcb-svn: /);
    }
    // A restarted replica: no seal stanza can help it on TDX; its peers can.
    const t3 = await replica({ ...td(), peers: [t1.url, t2.url] });
    expect(t3.core.sealed).toBe(true);
    const onlyOne = await replica({ ...td(), peers: [t2.url] });
    expect(await onlyOne.peerUnseal!()).toMatchObject({ unsealed: false, shares: 1, threshold: 2 });
    // Two TDs on t1's platform (another replica there, a new process and key): one share.
    const t1b = await replica(td());
    await call(t1b.url, "PUT", "sys/unseal", { key });
    const onePlatform = await replica({ ...td(), peers: [t1.url, t1b.url] });
    const same = await onePlatform.peerUnseal!();
    expect(same).toMatchObject({ unsealed: false, shares: 1, threshold: 2 });
    expect(same.refusals).toEqual([
      {
        peer: t1b.url,
        reason: expect.stringMatching(/already have it \(not a distinct peer\); peer\.same-hardware: tdx:ppid:/),
      },
    ]);
    expect(onePlatform.core.sealed).toBe(true);
    const res = await t3.peerUnseal!();
    expect(res).toMatchObject({ unsealed: true, shares: 2, threshold: 2 });
    expect(t3.core.sealed).toBe(false);
    expect(onlyOne.core.sealed).toBe(true);
  });
});

describe.runIf(ok)("peer unseal on TDX: the set's MRCONFIGID names its instance (launch_binds_instance_id)", () => {
  it("a twin TD initialised by the host on the set's MRCONFIGID is refused as a peer; the set's TDs unseal", async () => {
    const MRTD = Buffer.alloc(48, 0x72);
    const RTMRS = [0x20, 0x21, 0x22, 0x23].map((b) => Buffer.alloc(48, b));
    const SVN = Buffer.concat([Buffer.from([3]), Buffer.alloc(15)]);
    const p2 = await tdx.otherPlatform();
    const p3 = await tdx.otherPlatform();
    const storage = `storage "sqlite" { path = "${path.join(dir, "tdx-set.db")}" }`;
    const td = (platform: TdxSimulator, mrConfigId: Buffer, db = storage, peers?: string[]) =>
      replica({
        storage: db,
        source: tdxSource(platform, MRTD, RTMRS, SVN, mrConfigId),
        bindInstance: true,
        ...(peers ? { peers } : {}),
      });
    // Bootstrap launch (MRCONFIGID of the deployment, no id yet), init, then the set on MRCONFIGID = binding(id).
    const boot = await td(tdx, Buffer.alloc(48, 0x33));
    const init = await call(boot.url, "PUT", "sys/init", { secret_shares: 1, secret_threshold: 1, peer_threshold: 2 });
    const key = init.body.keys[0] as string;
    await call(boot.url, "PUT", "sys/unseal", { key });
    const id = boot.core.instanceId!;
    await boot.close();
    const setConfigId = replicaSetLaunchBinding(id, "tdx");
    expect(setConfigId).toHaveLength(48);
    const t1 = await td(tdx, setConfigId);
    const t2 = await td(p2, setConfigId);
    for (const t of [t1, t2]) await call(t.url, "PUT", "sys/unseal", { key });
    // The twin: a blank storage the host initialised, on the set's MRCONFIGID.
    const twin = await td(p3, setConfigId, `storage "sqlite" { path = "${path.join(dir, "tdx-twin.db")}" }`);
    const twInit = await call(twin.url, "PUT", "sys/init", {
      secret_shares: 1,
      secret_threshold: 1,
      peer_threshold: 1,
    });
    await call(twin.url, "PUT", "sys/unseal", { key: twInit.body.keys[0] });
    const twCh = await call(twin.url, "POST", "sys/peer-unseal/challenge", {});
    expect(twCh.status).toBe(403);
    expect(twCh.body.errors[0]).toMatch(/^peer-unseal refused: peer\.instance-id: .*MRCONFIGID names/);
    const t3 = await td(p3, setConfigId, storage, [twin.url, t1.url, t2.url]);
    expect(t3.core.sealed).toBe(true);
    const res = await t3.peerUnseal!();
    expect(res).toMatchObject({ unsealed: true, shares: 2, threshold: 2 });
    expect(res.refusals).toEqual([
      {
        peer: twin.url,
        reason: expect.stringMatching(/^peer not verified: peer\.instance-id: the peer's instance .*MRCONFIGID names/),
      },
    ]);
    expect(t3.core.instanceId!.equals(id)).toBe(true);
  });
});

describe("the peer_unseal stanza and sys/init's peer_threshold", () => {
  const base = 'storage "inmem" {}\nlistener "tcp" { address = "127.0.0.1:0" }\n';
  it("parses peers and defaults, and names every bad field", async () => {
    const { parseConfig } = await import("../../../runtime/server/http/config.js");
    const c = parseConfig(base + 'attestation "sev-guest" {}\npeer_unseal { peers = ["https://10.0.0.2:8200"] }');
    expect(c.peerUnseal).toEqual({
      peers: ["https://10.0.0.2:8200"],
      retryInterval: 30,
      kds: "off",
      launchBindsInstanceId: false,
    });
    const bound = parseConfig(
      base + 'attestation "sev-guest" {}\npeer_unseal { peers = ["https://a:1"]  launch_binds_instance_id = true }',
    );
    expect(bound.peerUnseal?.launchBindsInstanceId).toBe(true);
    const bad: Array<[string, RegExp]> = [
      ['peer_unseal { peers = ["https://a:1"] }', /peer_unseal: needs an attestation stanza/],
      ['attestation "sev-guest" {}\npeer_unseal { peers = [] }', /peer_unseal\.peers: must be a non-empty list/],
      [
        'attestation "sev-guest" {}\npeer_unseal { peers = ["http://a:1"] }',
        /peer_unseal\.peers\[0\]: must be an https/,
      ],
      [
        'attestation "sev-guest" {}\npeer_unseal { peers = ["https://a:1"]  k = 2 }',
        /peer_unseal: unknown setting 'k'/,
      ],
      ['attestation "sev-guest" {}\npeer_unseal { peers = ["https://a:1"]  kds = "yes" }', /peer_unseal\.kds: must be/],
      [
        'attestation "sev-guest" {}\npeer_unseal { peers = ["https://a:1"]  launch_binds_instance_id = "yes" }',
        /peer_unseal\.launch_binds_instance_id: must be true or false/,
      ],
    ];
    const noAttestation = 'storage "inmem" {}\nlistener "tcp" { address = "127.0.0.1:0"  tls_dir = "/tmp/x" }\n';
    for (const [text, re] of bad)
      expect(() => parseConfig((text.startsWith("attestation") ? base : noAttestation) + text), text).toThrow(re);
  });

  it("the unauthenticated peer-unseal paths are rate-limited per client by default", async () => {
    const { DEFAULT_RATE_LIMITS, RateLimiter } = await import("../../../runtime/server/http/rate-limit.js");
    const limiter = new RateLimiter(DEFAULT_RATE_LIMITS);
    const waits = Array.from({ length: 25 }, () => limiter.check("sys/peer-unseal/challenge", "10.0.0.9", 1000));
    expect(waits.filter((w) => w > 0).length).toBeGreaterThan(0);
    expect(limiter.check("sys/peer-unseal/share", "10.0.0.9", 1000)).toBeGreaterThan(0);
    expect(limiter.check("sys/peer-unseal/share", "10.0.0.10", 1000)).toBe(0);
  });

  it("sys/init refuses a bad peer_threshold by name and stays uninitialised", async () => {
    const { Core } = await import("../../../runtime/server/vault/core.js");
    const { MemoryStorage } = await import("../../../runtime/server/storage/memory.js");
    const core = new Core({ physical: new MemoryStorage() });
    await core.start();
    for (const k of [0, 256, "two", 1.5]) {
      const r = await core.handle({
        method: "PUT",
        path: "sys/init",
        query: {},
        body: { secret_shares: 1, secret_threshold: 1, peer_threshold: k },
        headers: {},
        clientIp: "127.0.0.1",
      });
      expect(r.status, String(k)).toBe(400);
      expect((r.body as Json).errors[0]).toMatch(/^peer_threshold: must be an integer/);
    }
    expect(await core.initialized()).toBe(false);
  });
});
