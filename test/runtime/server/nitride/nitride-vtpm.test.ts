// AWS/GCE-style evidence end to end through Nitride over HTTP: a simulated SNP report whose REPORT_DATA binds
// the nonce, the workload key and a real (software) TPM's attestation key; a real TPM quote over PCRs extended
// with a measured boot; the event log. The workload's policy pins the AK and appraises the boot events.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, generateKeyPairSync } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { reportDataFor, reportDataForVtpm } from "../../../../runtime/attestation/binding.js";
import { encodeEvidence } from "../../../../runtime/protocol/evidence.js";
import { Vtpm } from "../../../../runtime/guest/evidence/vtpm.js";
import { SwTpm, haveSwtpm } from "../../../support/swtpm.js";
import { buildBootLog, DEFAULT_CMDLINE, type BootSpec } from "../../attestation/tpm-fixtures.js";
import { GOOD_MEASUREMENT, startNitrideStack, type NitrideStack } from "./nitride-support.js";

const run = haveSwtpm();
// Nitride's own reference-value check also fails whenever a rejected verdict has no claims: leave it out.
const failedIds = (body: { data?: { verdict?: { checks: { id: string; ok: boolean }[] } } }) =>
  (body?.data?.verdict?.checks ?? []).filter((c) => !c.ok && c.id !== "nitride.reference-values").map((c) => c.id);

interface Vm {
  tpm: SwTpm;
  vtpm: Vtpm;
  akSha256: string;
}

async function bootVm(spec: BootSpec = {}): Promise<Vm> {
  const tpm = await SwTpm.start();
  const boot = buildBootLog(spec);
  for (const [pcr, d] of boot.extends) tpm.extend(pcr, d);
  const dir = mkdtempSync(path.join(tmpdir(), "bp-evlog-"));
  writeFileSync(path.join(dir, "log"), boot.log);
  const vtpm = new Vtpm({ tcti: tpm.tcti, eventLogPath: path.join(dir, "log") });
  const ak = await vtpm.attestationKey();
  return { tpm, vtpm, akSha256: createHash("sha256").update(ak).digest("hex") };
}

describe.runIf(run)("Nitride: SNP + vTPM (AK bound and pinned, measured boot over events)", () => {
  let s: NitrideStack;
  let vm: Vm;
  let evil: Vm;

  beforeAll(async () => {
    s = await startNitrideStack();
    vm = await bootVm();
    evil = await bootVm({ cmdline: DEFAULT_CMDLINE + " init=/bin/sh" });
    const policy = buildBootLog().policy;
    const r = await s.rt.api("PUT", "nitride/workloads/vm", {
      platforms: ["snp"],
      reference_values: { snp_measurements: [GOOD_MEASUREMENT] },
      policy: { vtpm: { akPins: [vm.akSha256, evil.akSha256], measuredBoot: policy } },
      secrets: { kv: ["secret/data/web/db"] },
    });
    expect(r.status, JSON.stringify(r.body)).toBeLessThan(300);
  }, 120_000);
  afterAll(async () => {
    await vm?.tpm.stop();
    await evil?.tpm.stop();
    await s?.rt.close();
  });

  /** What the enclaivelet does with a vTPM: AK → REPORT_DATA binding → report → quote(SHA-256(REPORT_DATA)). */
  async function attestVm(
    v: Vm,
    o: { quoteFrom?: Vm; unboundAk?: boolean; workload?: string; dropVtpm?: boolean } = {},
  ) {
    const workload = o.workload ?? "vm";
    const ch = await s.rt.api("POST", "nitride/challenge", { workload_id: workload }, "");
    const nonce = ch.body.data.nonce as string;
    const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
    const spki = publicKey.export({ format: "der", type: "spki" });
    const ak = await v.vtpm.attestationKey();
    const n = Buffer.from(nonce, "base64url");
    const reportData = o.unboundAk ? reportDataFor(n, spki) : reportDataForVtpm(n, spki, ak);
    const report = await s.sim.report({ measurement: GOOD_MEASUREMENT, reportData });
    const q = await (o.quoteFrom ?? v).vtpm.collect(createHash("sha256").update(reportData).digest());
    const evidence = encodeEvidence({
      kind: "snp",
      report: report.report,
      certTable: report.certTable,
      ...(o.dropVtpm
        ? {}
        : {
            vtpm: {
              akPublic: q.akPublic,
              quote: q.quote,
              signature: q.signature,
              pcrs: { sha256: q.pcrs },
              eventLog: q.eventLog,
            },
          }),
    });
    return s.rt.api(
      "POST",
      "nitride/attest",
      { workload_id: workload, nonce, ephemeral_public_key: spki.toString("base64"), evidence },
      "",
    );
  }

  it("the VM booted from the registered image attests and gets a token; the verdict lists every vTPM check", async () => {
    const r = await attestVm(vm);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const ids = r.body.data.verdict.checks.map((c: { id: string }) => c.id);
    for (const id of [
      "policy.report-data",
      "vtpm.ak-binding",
      "tpm.ak-attributes",
      "tpm.quote-signature",
      "tpm.nonce",
      "tpm.pcr-digest",
      "tpm.event-log-replay",
      "vtpm.ak-authenticated",
      "boot.applications",
      "boot.kernel-cmdline",
      "boot.initrd",
      "boot.secure-boot",
    ])
      expect(ids).toContain(id);
  }, 60_000);

  it("the same instance booted with another command line (genuine vTPM, pinned AK) is refused", async () => {
    const r = await attestVm(evil);
    expect(r.status).toBe(403);
    expect(failedIds(r.body)).toEqual(["boot.kernel-cmdline"]);
  }, 60_000);

  it("a good VM's quote presented with another VM's SNP binding (quote relay) is refused", async () => {
    // REPORT_DATA binds evil's AK; the quote comes from the good VM's TPM.
    const r = await attestVm(evil, { quoteFrom: vm });
    expect(r.status).toBe(403);
    expect(failedIds(r.body)).toContain("policy.report-data");
  }, 60_000);

  it("an AK that is not bound into REPORT_DATA is refused", async () => {
    const r = await attestVm(vm, { unboundAk: true });
    expect(r.status).toBe(403);
    expect(failedIds(r.body)).toEqual(expect.arrayContaining(["policy.report-data", "vtpm.ak-binding"]));
  }, 60_000);

  it("a software TPM that is not a registered vTPM key is refused even when bound and booted right", async () => {
    const soft = await bootVm();
    try {
      const r = await attestVm(soft);
      expect(r.status).toBe(403);
      expect(failedIds(r.body)).toEqual(["vtpm.ak-authenticated"]);
    } finally {
      await soft.tpm.stop();
    }
  }, 60_000);

  it("evidence without the vTPM part is refused for a workload whose policy needs it", async () => {
    const r = await attestVm(vm, { dropVtpm: true });
    expect(r.status).toBe(403);
    expect(failedIds(r.body)).toContain("vtpm.evidence");
  }, 60_000);
});
