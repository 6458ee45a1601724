// The enclaivelet with runtimeAttestation (no copied CA fingerprint): it verifies the runtime — every replica —
// before it sends evidence or takes a bundle. A runtime with another measurement or another instance's HOST_DATA,
// or a man in the middle relaying the genuine runtime's evidence, is refused: the evidence source is never asked,
// nothing is written.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { runAgent } from "../../../runtime/guest/agent.js";
import { parseConfig, ConfigError, type EnclaiveletConfig } from "../../../runtime/guest/config.js";
import { memoryLogger } from "../../../runtime/guest/log.js";
import type { EvidenceProvider } from "../../../runtime/guest/evidence/types.js";
import { simulatorProvider } from "../../../runtime/sim/localvm/evidence.js";
import { createAttestedListener } from "../../../runtime/server/http/attested-tls.js";
import type { RunningServer } from "../../../runtime/server/http/server.js";
import type { SnpSimulator } from "../../../runtime/sim/snp.js";
import {
  OTHER_MEASUREMENT,
  expectationFor,
  initUnseal,
  startAttestedRuntime,
  startRelay,
} from "../attested-runtime-support.js";

const WORKLOAD_MEASUREMENT = "e5".repeat(48);
let server: RunningServer;
let replica: RunningServer;
let sim: SnpSimulator;
const temps: string[] = [];

async function call(method: string, p: string, body: unknown, token: string) {
  const r = await server.core.handle({
    method,
    path: p,
    query: {},
    body,
    headers: { "x-vault-token": token },
    clientIp: "127.0.0.1",
  });
  if (r.status >= 300) throw new Error(`${method} ${p}: ${r.status} ${JSON.stringify(r.body)}`);
}

beforeAll(async () => {
  ({ server, sim } = await startAttestedRuntime());
  ({ server: replica } = await startAttestedRuntime());
  const token = await initUnseal(server);
  const a = sim.trustAnchor;
  await call("POST", "sys/auth/jwt", { type: "jwt" }, token);
  await call(
    "PUT",
    "nitride/config",
    {
      audience: "buckypaper", // the workload role binds it (the default is per runtime)
      kds: "off",
      accept_simulated: true,
      simulated_snp_anchors: [
        {
          product: a.product,
          ark_sha256: a.arkSha256,
          ca_certs: a.caCerts.map((c) => Buffer.from(c).toString("base64")),
        },
      ],
    },
    token,
  );
  await call("PUT", "secret/data/web/db", { data: { password: "web-db-s3cret" } }, token);
  await call(
    "PUT",
    "nitride/workloads/web",
    {
      platforms: ["snp"],
      reference_values: { snp_measurements: [WORKLOAD_MEASUREMENT] },
      secrets: { kv: ["secret/data/web/db"] },
    },
    token,
  );
  await call("POST", "auth/jwt/config", { nitride_mount: "nitride" }, token);
  await call(
    "POST",
    "auth/jwt/role/workload",
    {
      role_type: "jwt",
      bound_audiences: ["buckypaper"],
      user_claim: "sub",
      token_policies: ["nitride-workload-{{sub}}"],
      token_policies_template_claims: true,
      token_ttl: "10m",
    },
    token,
  );
});
afterAll(async () => {
  await server?.close();
  await replica?.close();
  for (const d of temps) await rm(d, { recursive: true, force: true });
});

async function setup(url: string, attestation = expectationFor(sim)) {
  const root = await mkdtemp(path.join(tmpdir(), "bk-att-root-"));
  temps.push(root);
  const cfg: EnclaiveletConfig = parseConfig({
    runtimeUrl: url,
    runtimeAttestation: attestation,
    workloadId: "web",
    root,
    retry: { attempts: 2, initialDelayMs: 5, maxDelayMs: 20 },
    files: [{ path: "/etc/app/db-password", secret: "web/db", field: "password" }],
  });
  const asked: number[] = [];
  const inner = simulatorProvider(sim, { measurement: WORKLOAD_MEASUREMENT });
  const provider: EvidenceProvider = {
    ...inner,
    collect: (rd) => {
      asked.push(rd.length);
      return inner.collect(rd);
    },
  };
  return { cfg, root, asked, provider };
}

describe("enclaivelet over attested TLS", () => {
  it("verifies the runtime (and each replica), then attests and provisions — no CA fingerprint anywhere", async () => {
    const s = await setup(server.url, { ...expectationFor(sim), replicaUrls: [server.url, replica.url] });
    expect(s.cfg.runtimeCaSha256).toBeUndefined();
    const log = memoryLogger();
    const out = await runAgent(s.cfg, { provider: s.provider, log });
    expect(out.error).toBeUndefined();
    expect(out.ok).toBe(true);
    expect(await readFile(path.join(s.root, "etc/app/db-password"), "utf8")).toBe("web-db-s3cret");
    expect(s.asked.length).toBeGreaterThan(0);
  });

  it("refuses a runtime with another measurement before sending evidence; nothing written", async () => {
    const s = await setup(server.url, expectationFor(sim, [OTHER_MEASUREMENT]));
    const out = await runAgent(s.cfg, { provider: s.provider, log: memoryLogger() });
    expect(out.ok).toBe(false);
    expect(out.reason).toBe("pinning");
    expect(out.error).toMatch(/policy\.measurement/);
    expect(s.asked).toEqual([]);
    expect(await readdir(s.root)).toEqual([]);
  });

  it("refuses the same runtime image launched as another instance (HOST_DATA) before sending evidence", async () => {
    // The user-data pins the runtime's instance (snpHostData, what the Vhsm component's attestation carries);
    // this runtime was launched without HOST_DATA, as a copy of the image someone else launched would be.
    const s = await setup(server.url, { ...expectationFor(sim), snpHostData: "5a".repeat(32) });
    const out = await runAgent(s.cfg, { provider: s.provider, log: memoryLogger() });
    expect(out.ok).toBe(false);
    expect(out.reason).toBe("pinning");
    expect(out.error).toMatch(/policy\.host-data: HOST_DATA 0{64} differs from the required (5a){32}/);
    expect(s.asked).toEqual([]);
    expect(await readdir(s.root)).toEqual([]);
  });

  it("refuses a twin of its runtime (same image, same HOST_DATA, initialised by someone else) before sending evidence", async () => {
    // The user-data pins the runtime instance the deployer bootstrapped (runtimeInstanceId, what the Vhsm
    // component's attestation carries after bootstrap). The twin is genuine in every other respect.
    const twinListener = await createAttestedListener(["127.0.0.1"]);
    const { server: twin } = await startAttestedRuntime({ listener: twinListener });
    // A recorder in front of the twin with the twin's own key (attested TLS holds): sees every request.
    const front = await startRelay(twin.url, { listener: twinListener });
    try {
      await initUnseal(twin);
      const originalId = server.core.instanceId!.toString("hex");
      expect(twin.core.instanceId!.toString("hex")).not.toBe(originalId);
      // Without the instance pin the enclaivelet would talk to the twin beyond attestation (the gap).
      const loose = await setup(front.url);
      await runAgent(loose.cfg, { provider: loose.provider, log: memoryLogger() });
      expect(front.requests.some((r) => !r.startsWith("GET /v1/sys/attestation"))).toBe(true);
      front.requests.length = 0;
      // With it: refused at pinning, the evidence source never asked, nothing sent but the evidence request,
      // nothing written.
      const s = await setup(front.url, { ...expectationFor(sim), runtimeInstanceId: originalId });
      const out = await runAgent(s.cfg, { provider: s.provider, log: memoryLogger() });
      expect(out.ok).toBe(false);
      expect(out.reason).toBe("pinning");
      expect(out.error).toMatch(/runtime\.instance-id: the runtime is instance [0-9a-f]{16}…, not the expected/);
      expect(s.asked).toEqual([]);
      expect(front.requests.length).toBeGreaterThan(0);
      expect(front.requests.every((r) => r.startsWith("GET /v1/sys/attestation"))).toBe(true);
      expect(await readdir(s.root)).toEqual([]);
      // The same configuration against the original provisions.
      const ok = await setup(server.url, { ...expectationFor(sim), runtimeInstanceId: originalId });
      const good = await runAgent(ok.cfg, { provider: ok.provider, log: memoryLogger() });
      expect(good.error).toBeUndefined();
      expect(good.ok).toBe(true);
      expect(await readFile(path.join(ok.root, "etc/app/db-password"), "utf8")).toBe("web-db-s3cret");
    } finally {
      await front.close();
      await twin.close();
    }
  });

  it("refuses a man in the middle (genuine evidence relayed, its own TLS key) and an impostor replica", async () => {
    const mitm = await startRelay(server.url);
    try {
      const s = await setup(mitm.url);
      const out = await runAgent(s.cfg, { provider: s.provider, log: memoryLogger() });
      expect(out.ok).toBe(false);
      expect(out.error).toMatch(/binding\.tls-key: .*man in the middle/);
      expect(s.asked).toEqual([]);
      expect(mitm.requests.every((r) => r.startsWith("GET /v1/sys/attestation"))).toBe(true);

      const r = await setup(server.url, { ...expectationFor(sim), replicaUrls: [server.url, mitm.url] });
      const out2 = await runAgent(r.cfg, { provider: r.provider, log: memoryLogger() });
      expect(out2.ok).toBe(false);
      expect(out2.error).toMatch(/man in the middle/);
      expect(r.asked).toEqual([]);
    } finally {
      await mitm.close();
    }
  });

  it("config: runtimeAttestation replaces the CA pin; bad fields are named", () => {
    const base = { runtimeUrl: server.url, workloadId: "web" };
    expect(() => parseConfig(base)).toThrow(/runtimeCaSha256/);
    expect(() => parseConfig({ ...base, runtimeAttestation: { snpMeasurements: ["zz"] } })).toThrow(
      /runtimeAttestation\.snpMeasurements\[0\]/,
    );
    expect(() => parseConfig({ ...base, runtimeAttestation: { measurement: "x" } })).toThrow(ConfigError);
    expect(() =>
      parseConfig({ ...base, runtimeAttestation: { ...expectationFor(sim), replicaUrls: ["http://x"] } }),
    ).toThrow(/replicaUrls\[0\]/);
    expect(() =>
      parseConfig({ ...base, runtimeAttestation: { ...expectationFor(sim), runtimeInstanceId: "xyz" } }),
    ).toThrow(/runtimeAttestation\.runtimeInstanceId/);
  });
});
