// The runtime's attested TLS on an Azure confidential VM: the real HTTPS runtime server with `attestation "azure"`,
// its evidence collected by the enclaivelet's Azure collector over a real software TPM (swtpm) with a simulated
// paravisor (test/runtime/azure-runtime-support.ts), verified by verifyRuntime. The binding (nonce, TLS key,
// instance id) must be both the hardware-signed claims' user-data and the HCL AK's quote's qualifying data; the
// paravisor's measurement, the vm-configuration and the OS (PCR 4) must be as expected. Every refusal names its check.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import path from "node:path";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { runtimeExpectation, verifyRuntime } from "../../../runtime/client/attested-tls.js";
import { createAttestedListener, type AttestedListener } from "../../../runtime/server/http/attested-tls.js";
import type { RunningServer } from "../../../runtime/server/http/server.js";
import type { SnpSimulator } from "../../../runtime/sim/snp.js";
import { parseHclReport } from "../../../runtime/attestation/azure/abi.js";
import { parseTpmsAttest } from "../../../runtime/attestation/azure/index.js";
import { AZURE_AK_HANDLE } from "../../../runtime/guest/evidence/azure.js";
import { haveSwtpm } from "../../support/swtpm.js";
import { runtimeVerify } from "../../../cli/runtime-verify.js";
import { insecureGet, platform, startRelay } from "../attested-runtime-support.js";
import {
  PARAVISOR_MEASUREMENT,
  azureExpectation,
  bootAzureVm,
  startAzureRuntime,
  type AzureVm,
} from "../azure-runtime-support.js";

const run = haveSwtpm();

describe.runIf(run)("verifyRuntime against a runtime on a (simulated) Azure CVM", () => {
  let sim: SnpSimulator;
  let good: AzureVm;
  let evil: AzureVm;
  let consoleVm: AzureVm;
  let other: AzureVm;
  let listener: AttestedListener;
  let server: RunningServer;
  let evilServer: RunningServer;
  let consoleServer: RunningServer;

  beforeAll(async () => {
    sim = await platform();
    good = await bootAzureVm(sim);
    // Another OS on the same paravisor: a different boot application in PCR 4.
    evil = await bootAzureVm(sim, { boot: { apps: ["ab".repeat(32), "cd".repeat(32)] } });
    // The same OS, but the VM's serial console enabled by the operator.
    consoleVm = await bootAzureVm(sim, {
      vmConfiguration: { "console-enabled": true, "secure-boot": true, "tpm-enabled": true },
    });
    // A second vTPM: the source of a quote by another AK.
    other = await bootAzureVm(sim);
    listener = await createAttestedListener(["127.0.0.1"]);
    ({ server } = await startAzureRuntime(good, { listener }));
    ({ server: evilServer } = await startAzureRuntime(evil));
    ({ server: consoleServer } = await startAzureRuntime(consoleVm));
  }, 120_000);
  afterAll(async () => {
    for (const s of [server, evilServer, consoleServer]) await s?.close();
    for (const v of [good, evil, consoleVm, other]) await v?.stop();
  });

  const expecting = (o: Parameters<typeof azureExpectation>[1] = {}) =>
    runtimeExpectation(azureExpectation(sim, { pcr4: [good.pcrs[4]], ...o }));
  const failed = (v: { checks: { id: string; ok: boolean }[] }) => v.checks.filter((c) => !c.ok).map((c) => c.id);

  it("accepts the runtime with the paravisor's measurement, its OS's PCR 4 and the vm-configuration, listing every check", async () => {
    const v = await verifyRuntime({ url: server.url, expected: expecting() });
    expect(v.reason).toBeUndefined();
    expect(v.ok).toBe(true);
    expect(v.spkiSha256).toBe(server.attestedSpkiSha256);
    expect(v.measurement).toBe(PARAVISOR_MEASUREMENT);
    expect(v.simulated).toBe(true);
    const ids = v.checks.map((c) => c.id);
    for (const id of [
      "runtime.evidence",
      "runtime.azure-os-binding",
      "azure.hcl",
      "azure.runtime-binding",
      "snp.signature",
      "policy.measurement",
      "vtpm.attestation-key",
      "vtpm.quote-signature",
      "vtpm.nonce",
      "policy.pcr4",
      "policy.secure-boot",
      "policy.console",
      "policy.report-data",
      "binding.nonce-fresh",
      "binding.tls-key",
      "runtime.instance-id",
    ])
      expect(ids).toContain(id);
    expect(v.checks.every((c) => c.ok)).toBe(true);
  }, 60_000);

  it("the endpoint's REPORT_DATA is the claims' user-data (written to NV 0x01400002) and SHA-256 of it the quote's qualifying data", async () => {
    const nonce = "5a".repeat(32);
    const r = await insecureGet(server.url, `/v1/sys/attestation?nonce=${nonce}`);
    expect(r.status).toBe(200);
    const d = r.body.data;
    expect(d.binding).toBe("buckypaper-runtime-tls-v2");
    expect(d.spki_sha256).toBe(server.attestedSpkiSha256);
    expect(d.evidence.kind).toBe("azure-snp");
    expect(d.evidence_source).toBe("azure (HCL report, /dev/tpmrm0)");
    const hcl = parseHclReport(Buffer.from(d.evidence.hcl_report, "base64"));
    expect(String(hcl.runtimeClaims["user-data"]).toLowerCase()).toBe(d.report_data);
    const attest = parseTpmsAttest(Buffer.from(d.evidence.tpm_quote.message, "base64"));
    expect(Buffer.from(attest.extraData).toString("hex")).toBe(
      createHash("sha256").update(Buffer.from(d.report_data, "hex")).digest("hex"),
    );
  }, 60_000);

  it("refuses a man in the middle with its own TLS key relaying the genuine evidence: binding.tls-key", async () => {
    const relay = await startRelay(server.url);
    try {
      const v = await verifyRuntime({ url: relay.url, expected: expecting() });
      expect(v.ok).toBe(false);
      expect(v.reason).toMatch(/^binding\.tls-key: .*man in the middle/);
      // The quote's qualifying data and the claims' user-data are not this connection's binding; the PCRs of a quote
      // that did not verify are then not read.
      expect(failed(v).sort()).toEqual(["binding.tls-key", "policy.pcr4", "policy.report-data", "vtpm.nonce"]);
    } finally {
      await relay.close();
    }
  }, 60_000);

  it("refuses a replayed answer (another nonce), even over the runtime's own key: binding.nonce-fresh", async () => {
    const old = await insecureGet(server.url, `/v1/sys/attestation?nonce=${"11".repeat(32)}`);
    expect(old.status).toBe(200);
    const relay = await startRelay(server.url, { listener, replay: JSON.stringify(old.body) });
    try {
      const v = await verifyRuntime({ url: relay.url, expected: expecting() });
      expect(v.ok).toBe(false);
      expect(v.reason).toMatch(/^binding\.nonce-fresh: .*replayed evidence/);
      // binding.tls-key too: the key is judged with this request's nonce, which the old answer does not bind.
      expect(failed(v).sort()).toEqual([
        "binding.nonce-fresh",
        "binding.tls-key",
        "policy.pcr4",
        "policy.report-data",
        "vtpm.nonce",
      ]);
    } finally {
      await relay.close();
    }
  }, 60_000);

  it("refuses a quote by another AK (another vTPM, same qualifying data) with the genuine HCL report: vtpm.quote-signature", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "bk-az-other-"));
    const relay = await startRelay(server.url, {
      listener,
      rewrite: (text) => {
        const body = JSON.parse(text);
        const rd = Buffer.from(body.data.report_data, "hex");
        const q = createHash("sha256").update(rd).digest("hex");
        const r = other.tpm.tool([
          "tpm2_quote",
          "-c",
          AZURE_AK_HANDLE,
          "-l",
          `sha256:${Array.from({ length: 24 }, (_, i) => i).join(",")}`,
          "-q",
          q,
          "-m",
          `${dir}/m`,
          "-s",
          `${dir}/s`,
          "-f",
          "plain",
          "-g",
          "sha256",
        ]);
        if (r.status !== 0) throw new Error(r.stderr.toString());
        body.data.evidence.tpm_quote.message = readFileSync(`${dir}/m`).toString("base64");
        body.data.evidence.tpm_quote.signature = readFileSync(`${dir}/s`).toString("base64");
        return JSON.stringify(body);
      },
    });
    try {
      const v = await verifyRuntime({ url: relay.url, expected: expecting() });
      expect(v.ok).toBe(false);
      expect(v.reason).toMatch(/^vtpm\.quote-signature:/);
      // The signature fails (the qualifying data is right: the relay quoted exactly the binding); the other quote's
      // PCRs are then not read.
      expect(failed(v)).toEqual(["vtpm.quote-signature", "policy.pcr4"]);
    } finally {
      await relay.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("refuses another paravisor measurement: policy.measurement", async () => {
    const v = await verifyRuntime({ url: server.url, expected: expecting({ measurements: ["cd".repeat(48)] }) });
    expect(v.ok).toBe(false);
    expect(v.reason).toMatch(/^policy\.measurement:/);
    expect(failed(v)).toEqual(["policy.measurement"]);
  }, 60_000);

  it("refuses a runtime that booted another OS on the same paravisor (PCR 4): policy.pcr4", async () => {
    expect(evil.pcrs[4]).not.toBe(good.pcrs[4]);
    const v = await verifyRuntime({ url: evilServer.url, expected: expecting() });
    expect(v.ok).toBe(false);
    expect(v.reason).toMatch(/^policy\.pcr4: PCR 4 [0-9a-f]{64} is not among/);
    expect(failed(v)).toEqual(["policy.pcr4"]);
  }, 60_000);

  it("refuses a boot policy the runtime does not meet (another expected PCR 4): policy.pcr4", async () => {
    const v = await verifyRuntime({ url: server.url, expected: expecting({ pcr4: [evil.pcrs[4]] }) });
    expect(v.ok).toBe(false);
    expect(failed(v)).toEqual(["policy.pcr4"]);
  }, 60_000);

  it("refuses an expectation that does not bind the OS (no PCR 4): runtime.azure-os-binding", async () => {
    const e = runtimeExpectation(azureExpectation(sim));
    const v = await verifyRuntime({ url: server.url, expected: e });
    expect(v.ok).toBe(false);
    expect(v.reason).toMatch(/^runtime\.azure-os-binding: .*paravisor's/);
    // PCR 11 alone does not bind it either: any OS can extend PCR 11 to a published value.
    const p11 = runtimeExpectation(
      azureExpectation(sim, {
        policy: { azure: { requireSecureBoot: true, forbidConsole: true, pcrs: { "11": [good.pcrs[11]] } } },
      }),
    );
    const v11 = await verifyRuntime({ url: server.url, expected: p11 });
    expect(v11.ok).toBe(false);
    expect(failed(v11)).toEqual(["runtime.azure-os-binding"]);
  }, 60_000);

  it("refuses a VM whose serial console is enabled (vm-configuration): policy.console", async () => {
    const v = await verifyRuntime({ url: consoleServer.url, expected: expecting() });
    expect(v.ok).toBe(false);
    expect(failed(v)).toEqual(["policy.console"]);
  }, 60_000);

  it("a verifier holding only SNP expectations is not satisfied by Azure evidence without an OS binding", async () => {
    // The local stack's expectation shape (a runtime measurement, no azure section) sent the Azure runtime's evidence.
    const e = runtimeExpectation({ ...azureExpectation(sim), policy: undefined });
    const v = await verifyRuntime({ url: server.url, expected: e });
    expect(v.ok).toBe(false);
    expect(failed(v)).toEqual(["runtime.azure-os-binding"]);
  }, 60_000);

  it("`buckypaper runtime verify` (the CLI's code, in process): exit 0 with the paravisor digest and the azure policy, 1 naming policy.pcr4 for another OS", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "bk-az-cli-"));
    try {
      const a = azureExpectation(sim, { pcr4: [good.pcrs[4]] });
      writeFileSync(`${dir}/policy.json`, a.policy!);
      writeFileSync(`${dir}/anchor.json`, JSON.stringify(a.simulatedAnchors![0]));
      const args = (url: string) => [
        "--url",
        url,
        "--measurement",
        PARAVISOR_MEASUREMENT,
        "--any-instance",
        "--policy",
        `${dir}/policy.json`,
        "--anchor",
        `${dir}/anchor.json`,
        "--kds",
        "off",
        "--format",
        "json",
      ];
      const outs: string[] = [];
      const io = { out: (t: string) => void outs.push(t), err: () => undefined };
      expect(await runtimeVerify(args(server.url), io)).toBe(0);
      expect(JSON.parse(outs[0]).runtimes[0]).toMatchObject({ ok: true, measurement: PARAVISOR_MEASUREMENT });
      outs.length = 0;
      expect(await runtimeVerify(args(evilServer.url), io)).toBe(1);
      expect(JSON.parse(outs[0]).runtimes[0].reason).toMatch(/^policy\.pcr4:/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
