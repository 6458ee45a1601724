// renderRuntimeConfig (runtime/server/http/config-render.ts) round-trips through the runtime's own
// config parser: what a Vhsm deployment writes is exactly what the server then runs with.
import { describe, expect, it } from "vitest";
import { availableParallelism } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { renderRuntimeConfig, type RuntimeConfigInputs } from "../../../../runtime/server/http/config-render.js";
import { MAX_WORKERS, parseConfig } from "../../../../runtime/server/http/config.js";

const base: RuntimeConfigInputs = {
  stateDir: "/var/lib/buckypaper/vhsm-dev",
  listenAddress: "0.0.0.0",
  port: 8200,
  tls: true,
  publicHost: "runtime.example.com",
  publicUrl: "https://runtime.example.com:8200",
};

describe("renderRuntimeConfig ↔ parseConfig", () => {
  it("a TLS deployment: storage, listener, api_addr, audit file and workers come back as given", () => {
    const c = parseConfig(renderRuntimeConfig({ ...base, auditLog: true, workers: 3 }), "/");
    expect(c.storage).toEqual({ type: "sqlite", path: "/var/lib/buckypaper/vhsm-dev/runtime.db" });
    expect(c.listener).toMatchObject({
      host: "0.0.0.0",
      port: 8200,
      tlsDisable: false,
      tlsDir: "/var/lib/buckypaper/vhsm-dev/tls",
      tlsHosts: ["runtime.example.com"],
    });
    expect(c.apiAddr).toBe("https://runtime.example.com:8200");
    expect(c.auditFile).toBe("/var/lib/buckypaper/vhsm-dev/audit.log");
    expect(c.workers).toBe(3);
  });

  it("plain http on IPv6 loopback, no audit log, one worker by default", () => {
    const c = parseConfig(
      renderRuntimeConfig({ ...base, tls: false, listenAddress: "::1", port: 18200, publicUrl: "http://[::1]:18200" }),
      "/",
    );
    expect(c.listener).toMatchObject({ host: "::1", port: 18200, tlsDisable: true });
    expect(c.listener.tlsDir).toBeUndefined();
    expect(c.auditFile).toBeUndefined();
    expect(c.workers).toBe(1);
  });

  it("attested TLS with the vTPM half comes back as given (AWS NitroTPM, GCE certified AK, defaults)", () => {
    const aws = parseConfig(
      renderRuntimeConfig({ ...base, attestation: { source: "sev-guest", vtpm: { nitroTpm: true } } }),
      "/",
    );
    expect(aws.attestation).toEqual({
      type: "sev-guest",
      device: "/dev/sev-guest",
      vtpm: { tcti: "device:/dev/tpmrm0", nitroTpm: true },
    });
    const gce = parseConfig(
      renderRuntimeConfig({
        ...base,
        attestation: {
          source: "configfs-tsm",
          path: "/sys/kernel/config/tsm/report",
          vtpm: { device: "/dev/tpm0", eventLog: "/run/log.bin", googleAk: true },
        },
      }),
      "/",
    );
    expect(gce.attestation?.vtpm).toEqual({ tcti: "device:/dev/tpm0", eventLog: "/run/log.bin", googleAk: true });
    const plain = parseConfig(renderRuntimeConfig({ ...base, attestation: { source: "sev-guest", vtpm: true } }), "/");
    expect(plain.attestation?.vtpm).toEqual({ tcti: "device:/dev/tpmrm0" });
    expect(
      parseConfig(renderRuntimeConfig({ ...base, attestation: { source: "sev-guest" } }), "/").attestation?.vtpm,
    ).toBeUndefined();
  });

  it('"auto" workers become one per CPU (capped)', () => {
    const c = parseConfig(renderRuntimeConfig({ ...base, workers: "auto" }), "/");
    expect(c.workers).toBe(Math.min(availableParallelism(), MAX_WORKERS));
  });

  it("fuzz: any port, worker count and state directory round-trip", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 65535 }),
        fc.integer({ min: 1, max: MAX_WORKERS }),
        fc.stringMatching(/^\/[A-Za-z0-9_.-]{1,20}(\/[A-Za-z0-9_-]{1,10}){0,3}$/),
        fc.boolean(),
        (port, workers, stateDir, tls) => {
          const c = parseConfig(renderRuntimeConfig({ ...base, port, workers, stateDir, tls }), "/");
          expect(c.listener.port).toBe(port);
          expect(c.workers).toBe(workers);
          // The parser resolves paths, so "/a/../b" comes back as "/b".
          expect(c.storage).toEqual({ type: "sqlite", path: path.resolve(stateDir, "runtime.db") });
          expect(c.listener.tlsDisable).toBe(!tls);
        },
      ),
      { numRuns: 200 },
    );
  });
});
