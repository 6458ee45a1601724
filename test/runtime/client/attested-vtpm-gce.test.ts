// The runtime's vTPM half on GCE: the runtime quotes with the AK Google's EK/AK CA certified (`vtpm { google_ak =
// true }`: a swtpm provisioned like a Shielded VM's vTPM, the certificate from a simulated CA), and the verifier
// authenticates that AK by the certificate (`policy.vtpm.gceAkCertificate`, the check Nitride runs on workloads)
// before it believes the quoted boot — over real HTTPS with simulated SNP reports.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { runtimeExpectation, verifyRuntime, type RuntimeExpectation } from "../../../runtime/client/attested-tls.js";
import type { RunningServer } from "../../../runtime/server/http/server.js";
import type { SnpSimulator } from "../../../runtime/sim/snp.js";
import { createGceAkCaSimulator, type GceAkCaSimulator } from "../../../runtime/sim/gce-ak-ca.js";
import type { VtpmPolicy } from "../../../runtime/attestation/tpm/policy.js";
import { SwTpm, haveSwtpm } from "../../support/swtpm.js";
import { provisionGoogleEccAk } from "../../support/gce-vtpm.js";
import { buildBootLog } from "../attestation/tpm-fixtures.js";
import { GCE_INSTANCE } from "../attestation/gce-fixtures.js";
import { expectationFor, startAttestedRuntime } from "../attested-runtime-support.js";

describe.runIf(haveSwtpm())("verifyRuntime: a GCE runtime's AK authenticated by Google's AK certificate", () => {
  let sim: SnpSimulator;
  let akCa: GceAkCaSimulator;
  let tpm: SwTpm;
  let server: RunningServer;
  const dir = mkdtempSync(path.join(tmpdir(), "bk-rt-gce-"));

  beforeAll(async () => {
    akCa = await createGceAkCaSimulator();
    tpm = await SwTpm.start();
    const boot = buildBootLog();
    for (const [pcr, d] of boot.extends) tpm.extend(pcr, d);
    const log = path.join(dir, "binary_bios_measurements");
    writeFileSync(log, boot.log);
    await provisionGoogleEccAk(tpm, (ak) => akCa.issue(ak, GCE_INSTANCE));
    ({ server, sim } = await startAttestedRuntime({
      attestationBody: `vtpm {\n tcti = "${tpm.tcti}"\n event_log = "${log}"\n google_ak = true\n }`,
    }));
  }, 120_000);
  afterAll(async () => {
    await server?.close();
    await tpm?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const expecting = (vtpm: VtpmPolicy, roots = [akCa.rootDer]): RuntimeExpectation => {
    const e = runtimeExpectation(expectationFor(sim));
    return { policy: { ...e.policy, vtpm }, trust: { ...e.trust, gce: { simulatedAkRoots: roots } } };
  };
  const failed = (v: { checks: { id: string; ok: boolean }[] }) => v.checks.filter((c) => !c.ok).map((c) => c.id);

  it("accepts: the certified AK signed the quote REPORT_DATA binds, for the expected project", async () => {
    const v = await verifyRuntime({
      url: server.url,
      expected: expecting({
        measuredBoot: buildBootLog().policy,
        gceAkCertificate: { projectIds: [GCE_INSTANCE.projectId] },
      }),
    });
    expect(v.reason).toBeUndefined();
    expect(v.ok).toBe(true);
    const auth = v.checks.find((c) => c.id === "vtpm.ak-authenticated");
    expect(auth?.detail).toMatch(/certified by Google's EK\/AK CA/);
    for (const id of ["vtpm.ak-certificate", "vtpm.gce-instance", "binding.vtpm-ak", "boot.kernel-cmdline"])
      expect(v.checks.find((c) => c.id === id)?.ok, id).toBe(true);
  }, 60_000);

  it("refuses another project, and a certificate from a CA the verifier does not trust", async () => {
    const other = await verifyRuntime({
      url: server.url,
      expected: expecting({ measuredBoot: buildBootLog().policy, gceAkCertificate: { projectIds: ["someone-else"] } }),
    });
    expect(other.ok).toBe(false);
    expect(failed(other)).toEqual(["vtpm.gce-instance", "vtpm.ak-authenticated"]);
    const strangerCa = await createGceAkCaSimulator();
    const untrusted = await verifyRuntime({
      url: server.url,
      expected: expecting({ measuredBoot: buildBootLog().policy, gceAkCertificate: {} }, [strangerCa.rootDer]),
    });
    expect(untrusted.ok).toBe(false);
    expect(failed(untrusted)).toContain("vtpm.ak-certificate");
    expect(failed(untrusted)).toContain("vtpm.ak-authenticated");
  }, 60_000);
});
