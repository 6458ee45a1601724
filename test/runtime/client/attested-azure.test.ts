// The runtime's attested TLS on an Azure confidential VM: the real HTTPS runtime server with `attestation "azure"`,
// its evidence collected by the enclaivelet's Azure collector over a real software TPM (swtpm) with a simulated
// paravisor (test/runtime/azure-runtime-support.ts), verified by verifyRuntime. The binding (nonce, TLS key,
// instance id) must be both the hardware-signed claims' user-data and the HCL AK's quote's qualifying data; the
// paravisor's measurement, the vm-configuration and the OS must be as expected: by events (azure.measuredBoot: the
// event log replayed to the AK's quote, what the Vhsm predicts from the runtime disk) or by a PCR 4 value. Every
// refusal names its check.
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
import { DEFAULT_CMDLINE } from "../attestation/tpm-fixtures.js";
import { runtimeVerify } from "../../../cli/runtime-verify.js";
import { initUnseal, insecureGet, platform, startRelay } from "../attested-runtime-support.js";
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
    // Another OS on the same paravisor: other boot applications in PCR 4, a root shell on the command line.
    evil = await bootAzureVm(sim, {
      boot: { apps: ["ab".repeat(32), "cd".repeat(32)], cmdline: DEFAULT_CMDLINE + " init=/bin/sh" },
    });
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

  /** By events (the Vhsm's registration): the boot policy the good VM's boot meets. */
  const expecting = (o: Parameters<typeof azureExpectation>[1] = {}) =>
    runtimeExpectation(azureExpectation(sim, { measuredBoot: good.bootPolicy, ...o }));
  const failed = (v: { checks: { id: string; ok: boolean }[] }) => v.checks.filter((c) => !c.ok).map((c) => c.id);

  it("accepts the runtime with the paravisor's measurement, its boot events and the vm-configuration, listing every check", async () => {
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
      "tpm.event-log-replay",
      "boot.applications",
      "boot.kernel-cmdline",
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
    expect(Buffer.from(d.evidence.event_log, "base64").equals(readFileSync(good.eventLog))).toBe(true);
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
      expect(failed(v).sort()).toEqual(["binding.tls-key", "boot.event-log", "policy.report-data", "vtpm.nonce"]);
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
        "boot.event-log",
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
      expect(failed(v)).toEqual(["vtpm.quote-signature", "boot.event-log"]);
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

  it("refuses a runtime that booted another OS on the same paravisor: boot.applications, boot.kernel-cmdline", async () => {
    const v = await verifyRuntime({ url: evilServer.url, expected: expecting() });
    expect(v.ok).toBe(false);
    expect(v.reason).toMatch(/^boot\.applications:/);
    expect(failed(v)).toEqual(["boot.applications", "boot.kernel-cmdline"]);
  }, 60_000);

  it("refuses a boot policy the runtime does not meet (another command line expected): boot.kernel-cmdline", async () => {
    const p = structuredClone(good.bootPolicy);
    p.kernelCmdline = { ...p.kernelCmdline!, allowed: [DEFAULT_CMDLINE + " quiet"] };
    const v = await verifyRuntime({ url: server.url, expected: expecting({ measuredBoot: p }) });
    expect(v.ok).toBe(false);
    expect(failed(v)).toEqual(["boot.kernel-cmdline"]);
  }, 60_000);

  it("refuses an event log that does not replay to the quoted PCRs (forged by the host): tpm.event-log-replay", async () => {
    const relay = await startRelay(server.url, {
      listener,
      rewrite: (text) => {
        const body = JSON.parse(text);
        body.data.evidence.event_log = readFileSync(evil.eventLog).toString("base64");
        return JSON.stringify(body);
      },
    });
    try {
      const v = await verifyRuntime({ url: relay.url, expected: expecting() });
      expect(v.ok).toBe(false);
      expect(failed(v)).toContain("tpm.event-log-replay");
      expect(v.reason).toMatch(/^tpm\.event-log-replay:/);
    } finally {
      await relay.close();
    }
  }, 60_000);

  it("by PCR 4 value instead of events: accepted with the runtime's, refused naming policy.pcr4 for another OS or value", async () => {
    const byPcr = (pcr4: string[]) => runtimeExpectation(azureExpectation(sim, { pcr4 }));
    expect(evil.pcrs[4]).not.toBe(good.pcrs[4]);
    const ok = await verifyRuntime({ url: server.url, expected: byPcr([good.pcrs[4]]) });
    expect(ok.reason).toBeUndefined();
    expect(ok.checks.map((c) => c.id)).toContain("policy.pcr4");
    const os = await verifyRuntime({ url: evilServer.url, expected: byPcr([good.pcrs[4]]) });
    expect(os.reason).toMatch(/^policy\.pcr4: PCR 4 [0-9a-f]{64} is not among/);
    expect(failed(os)).toEqual(["policy.pcr4"]);
    const other = await verifyRuntime({ url: server.url, expected: byPcr([evil.pcrs[4]]) });
    expect(failed(other)).toEqual(["policy.pcr4"]);
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
    // Nor a boot policy that requires no boot application (a command line alone: any OS could log one).
    const loose = { ...good.bootPolicy, bootApplications: { allowed: good.bootPolicy.bootApplications!.allowed } };
    const vl = await verifyRuntime({ url: server.url, expected: expecting({ measuredBoot: loose }) });
    expect(failed(vl)).toEqual(["runtime.azure-os-binding"]);
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

  it("`buckypaper runtime verify` (the CLI's code, in process): exit 0 with the paravisor digest and the azure boot policy, 1 naming boot.applications for another OS", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "bk-az-cli-"));
    try {
      const a = azureExpectation(sim, { measuredBoot: good.bootPolicy });
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
      expect(JSON.parse(outs[0]).runtimes[0].reason).toMatch(/^boot\.applications:/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("policy.azure.vmUniqueIds: the HCL report's vmUniqueId must be listed (case-insensitive); malformed lists refused", async () => {
    const withId = (ids: unknown) =>
      runtimeExpectation(
        azureExpectation(sim, {
          policy: { azure: { measuredBoot: good.bootPolicy, vmUniqueIds: ids } },
        }),
      );
    // The simulated paravisor here publishes no vmUniqueId: a pinned id is refused, naming the check.
    const v = await verifyRuntime({ url: server.url, expected: withId(["2F1C7A52-4B0E-4D6F-9A31-7C0E5D2B8E41"]) });
    expect(v.ok).toBe(false);
    expect(failed(v)).toEqual(["policy.vm-unique-id"]);
    expect(v.reason).toMatch(/names VM \(none\), not the expected 2f1c7a52-/);
    for (const bad of [[], "2f1c7a52", ["not a guid"], [42]])
      expect(() => withId(bad)).toThrow(/vmUniqueIds: expected a non-empty list of VM ids/);
  }, 60_000);

  it("once initialised, the claims' user-data binds the runtime instance id: the expected one accepted, a twin's refused (runtime.instance-id)", async () => {
    await initUnseal(server);
    const first = await verifyRuntime({ url: server.url, expected: expecting() });
    expect(first.ok).toBe(true);
    expect(first.instanceId).toMatch(/^[0-9a-f]{64}$/);
    const pinned = await verifyRuntime({ url: server.url, expected: { ...expecting(), instanceId: first.instanceId } });
    expect(pinned.reason).toBeUndefined();
    expect(pinned.checks.find((k) => k.id === "runtime.instance-id")?.detail).toMatch(/REPORT_DATA binds the expected/);
    const twin = await verifyRuntime({ url: server.url, expected: { ...expecting(), instanceId: "ee".repeat(32) } });
    expect(twin.ok).toBe(false);
    expect(failed(twin)).toEqual(["runtime.instance-id"]);
    // A relay that forges instance_id over the runtime's own key: the claims' user-data does not bind it.
    const relay = await startRelay(server.url, {
      listener,
      rewrite: (text) => {
        const body = JSON.parse(text);
        body.data.instance_id = "ee".repeat(32);
        return JSON.stringify(body);
      },
    });
    try {
      const forged = await verifyRuntime({ url: relay.url, expected: { ...expecting(), instanceId: "ee".repeat(32) } });
      expect(forged.ok).toBe(false);
      expect(forged.reason).toMatch(/^binding\.instance-id: .*forged instance_id/);
    } finally {
      await relay.close();
    }
  }, 60_000);
});
