// The provider with attested TLS (`connection.attestation`): at `pulumi up` it verifies the runtime — every
// replica — before sending anything, and refuses (naming why) a wrong measurement, a man in the middle or an
// impostor replica; nothing is written server-side then. Real HTTPS runtime, simulated SNP evidence.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as h from "../../provider/handlers.js";
import { runtimeRequest } from "../../provider/client.js";
import type { RunningServer } from "../../runtime/server/http/server.js";
import type { SnpSimulator } from "../../runtime/sim/snp.js";
import type { RuntimeConnection } from "../../runtime/client/connection.js";
import {
  OTHER_MEASUREMENT,
  expectationFor,
  initUnseal,
  kvStatus,
  startAttestedRuntime,
  startRelay,
} from "../runtime/attested-runtime-support.js";

let server: RunningServer;
let replica: RunningServer;
let sim: SnpSimulator;
let token: string;

beforeAll(async () => {
  ({ server, sim } = await startAttestedRuntime());
  ({ server: replica } = await startAttestedRuntime());
  token = await initUnseal(server);
});
afterAll(async () => {
  await server?.close();
  await replica?.close();
});

const conn = (o: Partial<RuntimeConnection> = {}): RuntimeConnection => ({
  url: server.url,
  token,
  attestation: expectationFor(sim),
  ...o,
});

async function create(connection: RuntimeConnection, path: string) {
  const c = h.check("secret", { connection, path, data: { password: "pw" } });
  expect(c.failures).toEqual([]);
  return h.create("secret", c.inputs);
}

describe("provider over attested TLS", () => {
  it("verifies the runtime, then writes over a connection pinned to the attested key", async () => {
    const r = await create(conn(), "apps/ok");
    expect(r.id).toBe("secret/apps/ok");
    expect(await kvStatus(server, token, "apps/ok")).toBe(200);
    // a caFingerprint given as well must match the presented chain too ("in addition to")
    const s = await runtimeRequest(conn(), "GET", "sys/seal-status");
    expect((s.body as { sealed: boolean }).sealed).toBe(false);
    await expect(runtimeRequest(conn({ caFingerprint: "00".repeat(32) }), "GET", "sys/seal-status")).rejects.toThrow(
      /caFingerprint/,
    );
  });

  it("refuses a runtime with the wrong measurement before any write", async () => {
    await expect(
      create(conn({ attestation: expectationFor(sim, [OTHER_MEASUREMENT]) }), "apps/wrong-measurement"),
    ).rejects.toThrow(/refused by attested TLS: policy\.measurement/);
    expect(await kvStatus(server, token, "apps/wrong-measurement")).toBe(404);
  });

  it("refuses a man in the middle before sending the token or any write", async () => {
    const mitm = await startRelay(server.url);
    try {
      await expect(create(conn({ url: mitm.url }), "apps/mitm")).rejects.toThrow(
        /binding\.tls-key: .*man in the middle/,
      );
      expect(mitm.requests.length).toBeGreaterThan(0);
      expect(mitm.requests.every((r) => r.startsWith("GET /v1/sys/attestation?nonce="))).toBe(true);
      expect(await kvStatus(server, token, "apps/mitm")).toBe(404);
    } finally {
      await mitm.close();
    }
  });

  it("verifies every replica: an impostor in replicaUrls refuses the write to the genuine one", async () => {
    const mitm = await startRelay(replica.url);
    try {
      const attestation = { ...expectationFor(sim), replicaUrls: [server.url, replica.url] };
      await create(conn({ attestation }), "apps/replicas-ok");
      expect(await kvStatus(server, token, "apps/replicas-ok")).toBe(200);
      const bad = { ...expectationFor(sim), replicaUrls: [server.url, mitm.url] };
      await expect(create(conn({ attestation: bad }), "apps/replicas-bad")).rejects.toThrow(/man in the middle/);
      expect(await kvStatus(server, token, "apps/replicas-bad")).toBe(404);
    } finally {
      await mitm.close();
    }
  });

  it("check names bad attestation fields", () => {
    const r = h.check("secret", {
      connection: { url: server.url, token, attestation: { snpMeasurements: ["nope"] } },
      path: "x",
      data: { k: "v" },
    });
    expect(r.failures).toEqual([
      { property: "connection.attestation.snpMeasurements[0]", reason: expect.stringMatching(/96 hex digits/) },
    ]);
    const plain = h.check("secret", {
      connection: { url: "http://x", token, attestation: expectationFor(sim) },
      path: "x",
      data: { k: "v" },
    });
    expect(plain.failures.map((f) => f.property)).toContain("connection.url");
  });
});
