// The runtime's vTPM half on AWS: the runtime quotes the SHA-256 and SHA-384 banks and sends the NitroTPM attestation
// document `nitro-tpm-attest` returned for the quote's qualifying data and its AK (`vtpm { nitro_tpm = true }`; the
// tool answered by a simulated Nitro PKI over the SHA-384 PCRs of the TPM that "is" the NitroTPM). The verifier
// (`policy.vtpm.nitroTpm`, the checks Nitride runs on workloads) believes the boot only in the bank AWS signs —
// over real HTTPS with simulated SNP reports and a real swtpm.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { runtimeExpectation, verifyRuntime, type RuntimeExpectation } from "../../../runtime/client/attested-tls.js";
import { vtpmSourceFor } from "../../../runtime/server/http/attested-tls.js";
import type { RunningServer } from "../../../runtime/server/http/server.js";
import type { SnpSimulator } from "../../../runtime/sim/snp.js";
import { simulatedNitroPki, type SimulatedNitroPki } from "../../../runtime/sim/nitrotpm.js";
import type { VtpmPolicy } from "../../../runtime/attestation/tpm/policy.js";
import { SwTpm, haveSwtpm } from "../../support/swtpm.js";
import { nitroRunner } from "../../support/nitro-vtpm.js";
import { buildBootLog, DEFAULT_CMDLINE, type BootSpec } from "../attestation/tpm-fixtures.js";
import { expectationFor, platform, startAttestedRuntime } from "../attested-runtime-support.js";

describe.runIf(haveSwtpm())("verifyRuntime: an AWS runtime's PCRs vouched for by a NitroTPM document", () => {
  let sim: SnpSimulator;
  let pki: SimulatedNitroPki;
  const tpms: SwTpm[] = [];
  const dir = mkdtempSync(path.join(tmpdir(), "bk-rt-aws-"));
  let server: RunningServer;
  let evil: RunningServer;
  const policy384 = buildBootLog({ sha384: true }).policy384!;

  async function runtime(spec: BootSpec = {}): Promise<RunningServer> {
    const tpm = await SwTpm.start();
    tpms.push(tpm);
    const boot = buildBootLog({ ...spec, sha384: true });
    tpm.extendBothBanks(boot);
    const log = path.join(dir, `log-${tpms.length}`);
    writeFileSync(log, boot.log);
    const stanza = { tcti: tpm.tcti, eventLog: log, nitroTpm: true };
    return (
      await startAttestedRuntime({
        attestationBody: `vtpm {\n tcti = "${tpm.tcti}"\n event_log = "${log}"\n nitro_tpm = true\n }`,
        vtpmSource: vtpmSourceFor(
          stanza,
          nitroRunner(pki, () => tpm),
        ),
      })
    ).server;
  }

  beforeAll(async () => {
    pki = await simulatedNitroPki();
    server = await runtime();
    evil = await runtime({ cmdline: DEFAULT_CMDLINE + " init=/bin/sh" });
    sim = await platform();
  }, 120_000);
  afterAll(async () => {
    await server?.close();
    await evil?.close();
    for (const t of tpms) await t.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const expecting = (vtpm: VtpmPolicy, roots = [pki.rootDer]): RuntimeExpectation => {
    const e = runtimeExpectation(expectationFor(sim));
    return { policy: { ...e.policy, vtpm }, trust: { ...e.trust, aws: { testRoots: roots } } };
  };
  const failed = (v: { checks: { id: string; ok: boolean }[] }) => v.checks.filter((c) => !c.ok).map((c) => c.id);

  it("accepts: the document for this quote's nonce and AK carries its SHA-384 PCRs; boot read in sha384", async () => {
    const v = await verifyRuntime({ url: server.url, expected: expecting({ nitroTpm: {}, measuredBoot: policy384 }) });
    expect(v.reason).toBeUndefined();
    expect(v.ok).toBe(true);
    expect(v.checks.find((c) => c.id === "vtpm.ak-authenticated")?.detail).toMatch(/AWS Nitro PKI/);
    for (const id of ["aws.document-pcrs", "binding.vtpm-ak", "boot.kernel-cmdline"])
      expect(v.checks.find((c) => c.id === id)?.ok, id).toBe(true);
  }, 60_000);

  it("refuses another measured command line, a document root it does not trust, and the sha256 bank", async () => {
    const other = await verifyRuntime({
      url: evil.url,
      expected: expecting({ nitroTpm: {}, measuredBoot: policy384 }),
    });
    expect(failed(other)).toEqual(["boot.kernel-cmdline"]);
    const stranger = await simulatedNitroPki();
    const untrusted = await verifyRuntime({
      url: server.url,
      expected: expecting({ nitroTpm: {}, measuredBoot: policy384 }, [stranger.rootDer]),
    });
    expect(untrusted.ok).toBe(false);
    expect(failed(untrusted).some((id) => id.startsWith("aws."))).toBe(true);
    expect(failed(untrusted)).toContain("vtpm.ak-authenticated");
    const sha256 = await verifyRuntime({
      url: server.url,
      expected: expecting({ nitroTpm: {}, measuredBoot: buildBootLog().policy }),
    });
    expect(failed(sha256)).toContain("aws.document-bank");
  }, 60_000);
});
