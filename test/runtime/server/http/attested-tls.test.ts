// The runtime's side of attested TLS: an in-memory listener key, GET /v1/sys/attestation binding that key and the
// caller's nonce — and nothing else the caller chooses — into REPORT_DATA; rate-limited; answered while sealed.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, generateKeyPairSync } from "node:crypto";
import { readdirSync } from "node:fs";
import tls from "node:tls";
import { parseConfig, ConfigError } from "../../../../runtime/server/http/config.js";
import { renderRuntimeConfig } from "../../../../runtime/server/http/config-render.js";
import { parseReport } from "../../../../runtime/attestation/snp/abi.js";
import { reportDataFor, runtimeTlsReportData } from "../../../../runtime/attestation/binding.js";
import { appraise } from "../../../../runtime/attestation/appraise.js";
import { decodeEvidence } from "../../../../runtime/protocol/evidence.js";
import type { RunningServer } from "../../../../runtime/server/http/server.js";
import { MEASUREMENT, insecureGet, startAttestedRuntime } from "../../attested-runtime-support.js";
import type { SnpSimulator } from "../../../../runtime/sim/snp.js";

let server: RunningServer;
let sim: SnpSimulator;

beforeAll(async () => {
  ({ server, sim } = await startAttestedRuntime({
    extraConfig: 'rate_limit "sys/attestation" { per_second = 0.01  burst = 12 }',
  }));
});
afterAll(async () => {
  await server?.close();
});

function presentedSpkiSha256(url: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: u.hostname, port: Number(u.port), rejectUnauthorized: false }, () => {
      const spki = s.getPeerX509Certificate()!.publicKey.export({ type: "spki", format: "der" });
      s.destroy();
      resolve(createHash("sha256").update(spki).digest("hex"));
    });
    s.on("error", reject);
  });
}

describe("attestation config stanza", () => {
  it("parses each source with defaults and names bad fields", () => {
    const base = 'storage "inmem" {}\nlistener "tcp" { address = "127.0.0.1:0" }\n';
    expect(parseConfig(base + 'attestation "sev-guest" {}').attestation).toEqual({
      type: "sev-guest",
      device: "/dev/sev-guest",
    });
    expect(parseConfig(base + 'attestation "virtio-psp" {}').attestation?.type).toBe("virtio-psp");
    expect(parseConfig(base + 'attestation "configfs-tsm" { root = "/x" }').attestation).toEqual({
      type: "configfs-tsm",
      root: "/x",
    });
    expect(() => parseConfig(base + 'attestation "tpm" {}')).toThrow(/attestation: unknown source 'tpm'/);
    expect(() => parseConfig(base + 'attestation "sev-guest" { dev = "/x" }')).toThrow(
      /attestation.sev-guest: unknown setting 'dev'/,
    );
    expect(() => parseConfig(base + 'attestation "simulated" { measurement = "ab" }')).toThrow(
      /attestation.simulated.measurement: must be 96 hex/,
    );
    expect(() =>
      parseConfig('storage "inmem" {}\nlistener "tcp" { tls_disable = true }\nattestation "sev-guest" {}'),
    ).toThrow(ConfigError);
    expect(() =>
      parseConfig(
        'storage "inmem" {}\nlistener "tcp" { tls_cert_file = "/a"  tls_key_file = "/b" }\nattestation "sev-guest" {}',
      ),
    ).toThrow(/generated in memory/);
  });

  it("round-trips through renderRuntimeConfig's JSON form", () => {
    const json = renderRuntimeConfig({
      stateDir: "/var/lib/bk",
      listenAddress: "0.0.0.0",
      port: 8200,
      tls: true,
      publicHost: "vhsm.example",
      publicUrl: "https://vhsm.example:8200",
      attestation: { source: "sev-guest" },
    });
    expect(parseConfig(json).attestation).toEqual({ type: "sev-guest", device: "/dev/sev-guest" });
    const azure = renderRuntimeConfig({
      stateDir: "/var/lib/bk",
      listenAddress: "0.0.0.0",
      port: 8200,
      tls: true,
      publicHost: "vhsm.example",
      publicUrl: "https://vhsm.example:8200",
      attestation: { source: "azure", path: "/dev/tpmrm1" },
    });
    expect(parseConfig(azure).attestation).toEqual({ type: "azure", device: "/dev/tpmrm1" });
  });

  it("azure: the vTPM device (default /dev/tpmrm0), no vtpm block (the HCL's AK quotes already), one worker", async () => {
    const base = 'storage "inmem" {}\nlistener "tcp" { address = "127.0.0.1:0" }\n';
    expect(parseConfig(base + 'attestation "azure" {}').attestation).toEqual({ type: "azure", device: "/dev/tpmrm0" });
    expect(() => parseConfig(base + 'attestation "azure" { vtpm { device = "/dev/tpmrm0" } }')).toThrow(
      /attestation\.azure\.vtpm: not with the azure source/,
    );
    expect(() =>
      parseConfig(base + 'attestation "azure" {}\npeer_unseal { peers = ["https://10.0.0.2:8200"] }'),
    ).toThrow(/peer_unseal: not with attestation "azure"/);
    expect(() => parseConfig(base + 'attestation "azure" { tcti = "swtpm:port=1" }')).toThrow(
      /attestation\.azure: unknown setting 'tcti'/,
    );
    const { runCluster } = await import("../../../../runtime/server/http/cluster.js");
    const { mkdtempSync, rmSync } = await import("node:fs");
    const dir = mkdtempSync(`${(await import("node:os")).tmpdir()}/bk-az-workers-`);
    try {
      const cfg = parseConfig(
        `storage "sqlite" { path = "${dir}/db" }\nlistener "tcp" { address = "127.0.0.1:0" }\nworkers = 2\nattestation "azure" {}`,
      );
      await expect(runCluster(cfg, { info() {}, warn() {}, error() {} } as never)).rejects.toThrow(
        /attestation "azure" runs in one process only/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("GET /v1/sys/attestation", () => {
  it("answers while sealed and uninitialised, binding the listener's own SPKI and the nonce", async () => {
    expect(server.core.sealed).toBe(true);
    const nonce = "11".repeat(32);
    const r = await insecureGet(server.url, `/v1/sys/attestation?nonce=${nonce}`);
    expect(r.status).toBe(200);
    const spki = await presentedSpkiSha256(server.url);
    expect(r.body.data.spki_sha256).toBe(spki);
    expect(server.attestedSpkiSha256).toBe(spki);
    expect(r.body.data.binding).toBe("buckypaper-runtime-tls-v2");
    // Sealed and uninitialised: no instance, and REPORT_DATA says so (binding flag 0x00).
    expect(r.body.data.instance_id).toBe(null);
    const report = parseReport(Buffer.from(r.body.data.evidence.report, "base64"));
    const want = runtimeTlsReportData(Buffer.from(nonce, "hex"), Buffer.from(spki, "hex"));
    expect(Buffer.from(report.reportData).equals(want)).toBe(true);
    expect(Buffer.from(report.measurement).toString("hex")).toBe(MEASUREMENT);
  });

  it("never writes the listener key: no tls dir, no key file", () => {
    // inmem storage and no tls_dir: the only place the key exists is this process.
    expect(parseConfig('storage "inmem" {}\nlistener "tcp" {}\nattestation "sev-guest" {}').listener.tlsDir).toBe(
      undefined,
    );
    expect(readdirSync(process.cwd()).filter((f) => /server-key|bootstrap-ca/.test(f))).toEqual([]);
  });

  it("cannot be made to sign caller-chosen data other than the nonce", async () => {
    // 64 bytes of attacker data as the nonce: REPORT_DATA is still a hash over the domain, the nonce AND the
    // runtime's own key — never the attacker's bytes, never a workload binding for a key the attacker holds.
    const chosen = Buffer.alloc(64, 0x41);
    const r = await insecureGet(server.url, `/v1/sys/attestation?nonce=${chosen.toString("hex")}`);
    expect(r.status).toBe(200);
    const rd = Buffer.from(parseReport(Buffer.from(r.body.data.evidence.report, "base64")).reportData);
    expect(rd.equals(chosen)).toBe(false);
    expect(rd.equals(runtimeTlsReportData(chosen, Buffer.from(r.body.data.spki_sha256, "hex")))).toBe(true);
    // As a workload's evidence (binding v1/v2 over a key the attacker holds) it is refused.
    const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
    const attackerSpki = publicKey.export({ type: "spki", format: "der" });
    expect(rd.equals(reportDataFor(chosen, attackerSpki))).toBe(false);
    const trust = { snp: { simulated: [sim.trustAnchor] } };
    const evidence = decodeEvidence(r.body.data.evidence);
    const asWorkload = await appraise(
      evidence,
      { snp: {} },
      { trust, binding: { nonce: chosen, publicKeySpki: attackerSpki } },
    );
    expect(asWorkload.accepted).toBe(false);
    expect(asWorkload.checks.find((c) => c.id === "policy.report-data")?.ok).toBe(false);
    // …while the same evidence is genuine (signature and chain) for what it does bind.
    const asRuntime = await appraise(evidence, { snp: {} }, { trust, expectedReportData: rd });
    expect(asRuntime.accepted).toBe(true);
  });

  it("refuses other parameters, bad nonces and other methods", async () => {
    const n = "22".repeat(32);
    const extra = await insecureGet(server.url, `/v1/sys/attestation?nonce=${n}&report_data=${"00".repeat(64)}`);
    expect(extra.status).toBe(400);
    expect(extra.body.errors[0]).toMatch(/unknown parameter 'report_data'/);
    for (const bad of ["", "zz".repeat(32), "11".repeat(15), "11".repeat(65), "1".repeat(33)]) {
      const r = await insecureGet(server.url, `/v1/sys/attestation?nonce=${bad}`);
      expect(r.status, bad).toBe(400);
      expect(r.body.errors[0]).toMatch(/nonce must be 16..64 bytes of hex/);
    }
    const post = await insecureGet(server.url, `/v1/sys/attestation?nonce=${n}`, "POST");
    expect(post.status).toBe(405);
  });

  it("is rate-limited per client", async () => {
    let limited = 0;
    for (let i = 0; i < 14; i++) {
      const r = await insecureGet(server.url, `/v1/sys/attestation?nonce=${"33".repeat(16)}`);
      if (r.status === 429) limited++;
    }
    expect(limited).toBeGreaterThan(0);
  });
});
