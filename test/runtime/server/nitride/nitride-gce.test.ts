// GCE end to end through Nitride over HTTP: a simulated SNP report bound to a real (software) TPM's AK, a real TPM
// quote over a measured boot, the AK certified by a (simulated) Google EK/AK CA, and the launch measurement
// endorsed by a (simulated) Google launch endorsement that the runtime verifies against its configured
// GCE-cc-tcb-root. Hostile cases: an AK only bound by REPORT_DATA (the VMPL0 software-TPM attack), a certificate
// for another key, another project, an endorsement for another shape, no configured root.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, generateKeyPairSync } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { reportDataForVtpm } from "../../../../runtime/attestation/binding.js";
import { parseTpmPublic } from "../../../../runtime/attestation/tpm/index.js";
import { buildCertTable, parseCertTable, parseReport } from "../../../../runtime/attestation/snp/abi.js";
import { GCE_ENDORSEMENT_GUID } from "../../../../runtime/attestation/gce/index.js";
import { encodeEvidence } from "../../../../runtime/protocol/evidence.js";
import { Vtpm } from "../../../../runtime/guest/evidence/vtpm.js";
import {
  createGceEndorsementSimulator,
  type GceEndorsementSimulator,
} from "../../../../runtime/sim/gce-endorsement.js";
import { createGceAkCaSimulator, type GceAkCaSimulator } from "../../../../runtime/sim/gce-ak-ca.js";
import { SwTpm, haveSwtpm } from "../../../support/swtpm.js";
import { buildBootLog } from "../../attestation/tpm-fixtures.js";
import { GCE_INSTANCE } from "../../attestation/gce-fixtures.js";
import { GOOD_MEASUREMENT, startNitrideStack, type NitrideStack } from "./nitride-support.js";

const run = haveSwtpm();
const failedIds = (body: { data?: { verdict?: { checks: { id: string; ok: boolean }[] } } }) =>
  (body?.data?.verdict?.checks ?? []).filter((c) => !c.ok && c.id !== "nitride.reference-values").map((c) => c.id);

interface Vm {
  tpm: SwTpm;
  vtpm: Vtpm;
  akCert: Uint8Array;
}

describe.runIf(run)("Nitride: GCE — Google-endorsed firmware, Google-certified vTPM AK, measured boot", () => {
  let s: NitrideStack;
  let google: GceEndorsementSimulator;
  let akCa: GceAkCaSimulator;
  let vm: Vm;
  let other: Vm;
  let tableEndorsement: Buffer;
  let otherShapeEndorsement: Buffer;

  async function bootVm(instance = GCE_INSTANCE): Promise<Vm> {
    const tpm = await SwTpm.start();
    const boot = buildBootLog();
    for (const [pcr, d] of boot.extends) tpm.extend(pcr, d);
    const dir = mkdtempSync(path.join(tmpdir(), "bp-gce-"));
    writeFileSync(path.join(dir, "log"), boot.log);
    const vtpm = new Vtpm({ tcti: tpm.tcti, eventLogPath: path.join(dir, "log") });
    const ak = parseTpmPublic(await vtpm.attestationKey()).key;
    return { tpm, vtpm, akCert: await akCa.issue(ak, instance) };
  }

  beforeAll(async () => {
    [s, google, akCa] = await Promise.all([
      startNitrideStack(),
      createGceEndorsementSimulator(),
      createGceAkCaSimulator(),
    ]);
    [vm, other] = await Promise.all([bootVm(), bootVm({ ...GCE_INSTANCE, projectId: "someone-else", instanceId: 7n })]);
    const probe = await s.sim.report({ measurement: GOOD_MEASUREMENT, reportData: new Uint8Array(64) });
    const policy = parseReport(probe.report).policy;
    const endorse = (vcpus: number) =>
      google
        .sign({
          clSpec: 700001n,
          sevSnp: { svn: 2, policy, measurements: { [vcpus]: GOOD_MEASUREMENT, 16: "cd".repeat(48) } },
        })
        .toString("base64");
    const put = async (path: string, body: unknown) => {
      const r = await s.rt.api("PUT", path, body);
      expect(r.status, JSON.stringify(r.body)).toBeLessThan(300);
    };
    await put("nitride/config", { gce_tcb_roots: [google.rootPem], simulated_gce_ak_roots: [akCa.rootPem] });
    const workload = (vcpus: number, extra: object = {}) => ({
      platforms: ["snp"],
      reference_values: { snp_measurements: [GOOD_MEASUREMENT] },
      policy: {
        gce: { endorsements: [endorse(vcpus)], vcpus: 4, minSvn: 2 },
        vtpm: { gceAkCertificate: { projectIds: ["bk-prod"] }, measuredBoot: buildBootLog().policy, ...extra },
      },
      secrets: { kv: ["secret/data/web/db"] },
    });
    await put("nitride/workloads/gce", workload(4));
    // As GCE delivers it: no registered endorsement, the one in the extended report's certificate table.
    const inTable = workload(4);
    delete (inTable.policy.gce as { endorsements?: string[] }).endorsements;
    await put("nitride/workloads/gce-table", inTable);
    tableEndorsement = Buffer.from(endorse(4), "base64");
    otherShapeEndorsement = Buffer.from(endorse(8), "base64");
    await put("nitride/workloads/gce-wrong-shape", workload(8));
  }, 180_000);
  afterAll(async () => {
    await vm?.tpm.stop();
    await other?.tpm.stop();
    await s?.rt.close();
  });

  async function attest(v: Vm, o: { workload?: string; akCert?: Uint8Array | null; tableEntry?: Buffer } = {}) {
    const workload = o.workload ?? "gce";
    const ch = await s.rt.api("POST", "nitride/challenge", { workload_id: workload }, "");
    const nonce = Buffer.from(ch.body.data.nonce as string, "base64url");
    const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
    const spki = publicKey.export({ format: "der", type: "spki" });
    const reportData = reportDataForVtpm(nonce, spki, await v.vtpm.attestationKey());
    const report = await s.sim.report({ measurement: GOOD_MEASUREMENT, reportData });
    const q = await v.vtpm.collect(createHash("sha256").update(reportData).digest());
    const cert = o.akCert === undefined ? v.akCert : o.akCert;
    const evidence = encodeEvidence({
      kind: "snp",
      report: report.report,
      certTable: o.tableEntry
        ? buildCertTable([...parseCertTable(report.certTable!), { guid: GCE_ENDORSEMENT_GUID, data: o.tableEntry }])
        : report.certTable,
      vtpm: {
        akPublic: q.akPublic,
        quote: q.quote,
        signature: q.signature,
        pcrs: { sha256: q.pcrs },
        eventLog: q.eventLog,
        ...(cert ? { akCertificate: cert } : {}),
      },
    });
    return s.rt.api(
      "POST",
      "nitride/attest",
      { workload_id: workload, nonce: ch.body.data.nonce, ephemeral_public_key: spki.toString("base64"), evidence },
      "",
    );
  }

  it("the VM with Google-endorsed firmware and a Google-certified AK attests; every GCE check is listed", async () => {
    const r = await attest(vm);
    expect(r.status, JSON.stringify(failedIds(r.body))).toBe(200);
    const ids = r.body.data.verdict.checks.map((c: { id: string }) => c.id);
    for (const id of [
      "gce.endorsement-format",
      "gce.endorsement-provenance",
      "gce.endorsement-signer",
      "gce.endorsement-signature",
      "gce.endorsed-measurement",
      "gce.launch-policy",
      "gce.svn",
      "gce.endorsement",
      "vtpm.ak-binding",
      "vtpm.ak-certificate",
      "vtpm.gce-instance",
      "vtpm.ak-authenticated",
      "boot.applications",
    ])
      expect(ids).toContain(id);
  }, 60_000);

  it("an AK only bound by REPORT_DATA, without Google's certificate (a software TPM at VMPL0), is refused", async () => {
    const r = await attest(vm, { akCert: null });
    expect(r.status).toBe(403);
    expect(failedIds(r.body)).toEqual(["vtpm.ak-certificate", "vtpm.ak-authenticated"]);
  }, 60_000);

  it("a genuine Google AK certificate of another key (another VM's) is refused", async () => {
    const r = await attest(vm, { akCert: other.akCert });
    expect(r.status).toBe(403);
    expect(failedIds(r.body)).toEqual(["vtpm.ak-certificate", "vtpm.ak-authenticated"]);
  }, 60_000);

  it("a certified AK of a VM in another project is refused", async () => {
    const r = await attest(other);
    expect(r.status).toBe(403);
    expect(failedIds(r.body)).toEqual(["vtpm.gce-instance", "vtpm.ak-authenticated"]);
  }, 60_000);

  it("firmware endorsed only for another vCPU count is refused", async () => {
    const r = await attest(vm, { workload: "gce-wrong-shape" });
    expect(r.status).toBe(403);
    expect(failedIds(r.body)).toEqual(["gce.endorsed-measurement", "gce.endorsement"]);
  }, 60_000);

  it("without a configured GCE-cc-tcb-root no endorsement is believed", async () => {
    const put = (roots: string[]) => s.rt.api("PUT", "nitride/config", { gce_tcb_roots: roots });
    expect((await put([])).status).toBeLessThan(300);
    try {
      const r = await attest(vm);
      expect(r.status).toBe(403);
      expect(failedIds(r.body)).toEqual(["gce.endorsement-signer", "gce.endorsement"]);
    } finally {
      expect((await put([google.rootPem])).status).toBeLessThan(300);
    }
  }, 60_000);

  it("the endorsement GCE puts in the extended report's certificate table is verified the same way", async () => {
    const ok = await attest(vm, { workload: "gce-table", tableEntry: tableEndorsement });
    expect(ok.status, JSON.stringify(failedIds(ok.body))).toBe(200);
    const wrong = await attest(vm, { workload: "gce-table", tableEntry: otherShapeEndorsement });
    expect(wrong.status).toBe(403);
    expect(failedIds(wrong.body)).toEqual(["gce.endorsed-measurement", "gce.endorsement"]);
    const none = await attest(vm, { workload: "gce-table" });
    expect(none.status).toBe(403);
    expect(failedIds(none.body)).toEqual(["gce.endorsement"]);
  }, 90_000);
});
