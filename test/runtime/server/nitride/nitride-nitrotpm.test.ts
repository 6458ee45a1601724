// AWS-style evidence end to end through Nitride over HTTP: a simulated SNP report binding the nonce, the
// workload key and a real (software) TPM's AK; a real TPM quote over SHA-256 and SHA-384 PCRs extended with a
// measured boot; the event log; and a NitroTPM attestation document for the same nonce, signed under a TEST
// Nitro root (runtime/sim/nitrotpm.ts) and carrying the SHA-384 PCRs of the TPM that "is" the NitroTPM. The
// workload registers no AK pin: the document is what authenticates the PCRs.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, generateKeyPairSync } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { reportDataForVtpm } from "../../../../runtime/attestation/binding.js";
import { encodeEvidence } from "../../../../runtime/protocol/evidence.js";
import { EK_HANDLE, Vtpm } from "../../../../runtime/guest/evidence/vtpm.js";
import { ekNameFromTpmt } from "../../../../runtime/attestation/aws/index.js";
import { simulatedNitroPki, type SimulatedNitroPki } from "../../../../runtime/sim/nitrotpm.js";
import { SwTpm, haveSwtpm } from "../../../support/swtpm.js";
import { nitroRunner } from "../../../support/nitro-vtpm.js";
import { buildBootLog, DEFAULT_CMDLINE, type BootSpec } from "../../attestation/tpm-fixtures.js";
import { GOOD_MEASUREMENT, startNitrideStack, type NitrideStack } from "./nitride-support.js";

const run = haveSwtpm();
const failedIds = (body: { data?: { verdict?: { checks: { id: string; ok: boolean }[] } } }) =>
  (body?.data?.verdict?.checks ?? []).filter((c) => !c.ok && c.id !== "nitride.reference-values").map((c) => c.id);

/** What `aws ec2 get-instance-tpm-ek-pub --key-format tpmt` returns for the instance, as its TPM Name. */
function ekName(v: Vm): string {
  const f = path.join(mkdtempSync(path.join(tmpdir(), "bp-ek-")), "ek.tpmt");
  const r = v.tpm.tool(["tpm2_readpublic", "-c", EK_HANDLE, "-f", "tpmt", "-o", f]);
  if (r.status !== 0) throw new Error(r.stderr.toString());
  return ekNameFromTpmt(readFileSync(f));
}

interface Vm {
  tpm: SwTpm;
  vtpm: Vtpm;
}

async function bootVm(
  pki: SimulatedNitroPki,
  spec: BootSpec = {},
  o: { documentFrom?: () => SwTpm; tool?: string[] } = {},
) {
  const tpm = await SwTpm.start();
  const boot = buildBootLog({ ...spec, sha384: true });
  tpm.extendBothBanks(boot);
  const dir = mkdtempSync(path.join(tmpdir(), "bp-evlog-"));
  writeFileSync(path.join(dir, "log"), boot.log);
  const vtpm = new Vtpm({
    tcti: tpm.tcti,
    eventLogPath: path.join(dir, "log"),
    nitroTpm: true,
    runner: nitroRunner(pki, o.documentFrom ?? (() => tpm)),
    ...(o.tool ? { nitroTpmAttest: o.tool } : {}),
  });
  await vtpm.attestationKey();
  return { tpm, vtpm } as Vm;
}

describe.runIf(run)("Nitride: SNP + NitroTPM document (AWS), no AK pin", () => {
  let s: NitrideStack;
  let pki: SimulatedNitroPki;
  let vm: Vm;
  let evil: Vm;
  const policy384 = buildBootLog({ sha384: true }).policy384!;

  beforeAll(async () => {
    s = await startNitrideStack();
    pki = await simulatedNitroPki();
    const cfg = await s.rt.api("PUT", "nitride/config", {
      simulated_nitro_roots: [Buffer.from(pki.rootDer).toString("base64")],
    });
    expect(cfg.status, JSON.stringify(cfg.body)).toBeLessThan(300);
    vm = await bootVm(pki);
    evil = await bootVm(pki, { cmdline: DEFAULT_CMDLINE + " init=/bin/sh" });
    const put = async (id: string, vtpm: unknown) => {
      const r = await s.rt.api("PUT", `nitride/workloads/${id}`, {
        platforms: ["snp"],
        reference_values: { snp_measurements: [GOOD_MEASUREMENT] },
        policy: { vtpm },
        secrets: { kv: ["secret/data/web/db"] },
      });
      expect(r.status, JSON.stringify(r.body)).toBeLessThan(300);
    };
    await put("aws", { nitroTpm: {}, measuredBoot: policy384 });
    await put("aws-pinned", { nitroTpm: { instanceIds: ["i-0aaaaaaaaaaaaaaaa"] }, measuredBoot: policy384 });
    await put("aws-sha256", { nitroTpm: {}, measuredBoot: buildBootLog().policy });
    await put("aws-ek", { nitroTpm: {}, measuredBoot: policy384, ekNames: [ekName(vm)] });
    await put("aws-ek-other", { nitroTpm: {}, measuredBoot: policy384, ekNames: [ekName(evil)] });
    await put("aws-ek-only", { measuredBoot: policy384, ekNames: [ekName(vm)] });
  }, 120_000);
  afterAll(async () => {
    await vm?.tpm.stop();
    await evil?.tpm.stop();
    await s?.rt.close();
  });

  /** The enclaivelet's steps: AK → REPORT_DATA → report → quote + NitroTPM document for SHA-256(REPORT_DATA). */
  async function attest(v: Vm, workload = "aws", o: { reuseDocument?: Buffer } = {}) {
    const ch = await s.rt.api("POST", "nitride/challenge", { workload_id: workload }, "");
    const nonce = ch.body.data.nonce as string;
    const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
    const spki = publicKey.export({ format: "der", type: "spki" });
    const ak = await v.vtpm.attestationKey();
    const reportData = reportDataForVtpm(Buffer.from(nonce, "base64url"), spki, ak);
    const report = await s.sim.report({ measurement: GOOD_MEASUREMENT, reportData });
    const q = await v.vtpm.collect(createHash("sha256").update(reportData).digest());
    const nitroDocument = o.reuseDocument ?? q.nitroDocument;
    const evidence = encodeEvidence({
      kind: "snp",
      report: report.report,
      certTable: report.certTable,
      vtpm: {
        akPublic: q.akPublic,
        quote: q.quote,
        signature: q.signature,
        pcrs: { sha256: q.pcrs, sha384: q.pcrsSha384 },
        eventLog: q.eventLog,
        ...(nitroDocument ? { nitroDocument } : {}),
      },
    });
    const r = await s.rt.api(
      "POST",
      "nitride/attest",
      { workload_id: workload, nonce, ephemeral_public_key: spki.toString("base64"), evidence },
      "",
    );
    return { r, q };
  }

  it("the VM booted from the registered image attests; the verdict lists the document's checks", async () => {
    const { r, q } = await attest(vm);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(q.nitroDocument).toBeDefined();
    const ids = r.body.data.verdict.checks.map((c: { id: string }) => c.id);
    for (const id of [
      "vtpm.ak-binding",
      "tpm.quote-signature",
      "tpm.event-log-replay",
      "aws.document-signature",
      "aws.document-chain",
      "aws.document-time",
      "aws.document-nonce",
      "aws.document-ak",
      "aws.document-pcrs",
      "aws.document-bank",
      "vtpm.ak-authenticated",
      "boot.applications",
      "boot.kernel-cmdline",
    ])
      expect(ids).toContain(id);
    expect(r.body.data.verdict.simulated).toBe(true);
  }, 60_000);

  it("the same image booted with another command line (genuine document) is refused on the boot events", async () => {
    const { r } = await attest(evil);
    expect(r.status).toBe(403);
    expect(failedIds(r.body)).toEqual(["boot.kernel-cmdline"]);
  }, 60_000);

  it("a software TPM replaying the good boot, with the real NitroTPM's document of the evil boot, is refused", async () => {
    // The guest kernel of the evil instance binds a software TPM (good PCRs) and asks its real NitroTPM for a
    // document naming the software AK: AWS signs the real (evil) SHA-384 PCRs.
    const soft = await bootVm(pki, {}, { documentFrom: () => evil.tpm });
    try {
      const { r } = await attest(soft);
      expect(r.status).toBe(403);
      expect(failedIds(r.body)).toEqual(["aws.document-pcrs", "vtpm.ak-authenticated"]);
    } finally {
      await soft.tpm.stop();
    }
  }, 60_000);

  it("a document from an earlier attestation (replayed) is refused", async () => {
    const first = await attest(vm);
    const { r } = await attest(vm, "aws", { reuseDocument: first.q.nitroDocument });
    expect(r.status).toBe(403);
    expect(failedIds(r.body)).toEqual(["aws.document-nonce", "vtpm.ak-authenticated"]);
  }, 60_000);

  it("no document (nitro-tpm-attest absent) is refused, naming the missing document", async () => {
    const bare = await bootVm(pki, {}, { tool: ["/nonexistent/nitro-tpm-attest"] });
    try {
      const { r, q } = await attest(bare);
      expect(q.nitroDocumentError).toMatch(/nitro-tpm-attest/);
      expect(r.status).toBe(403);
      expect(failedIds(r.body)).toEqual(["aws.document", "vtpm.ak-authenticated"]);
    } finally {
      await bare.tpm.stop();
    }
  }, 60_000);

  it("a workload pinned to another instance refuses this one", async () => {
    const { r } = await attest(vm, "aws-pinned");
    expect(r.status).toBe(403);
    expect(failedIds(r.body)).toEqual(["aws.document-instance", "vtpm.ak-authenticated"]);
  }, 60_000);

  it("EK pin (GetInstanceTpmEkPub, tpmt): the quote's AK is under the registered EK; another instance's EK refuses", async () => {
    const ok = await attest(vm, "aws-ek");
    expect(ok.r.status, JSON.stringify(ok.r.body)).toBe(200);
    expect(ok.r.body.data.verdict.checks.find((c: { id: string }) => c.id === "aws.ek-pin")).toMatchObject({
      ok: true,
    });
    const { r } = await attest(vm, "aws-ek-other");
    expect(r.status).toBe(403);
    expect(failedIds(r.body)).toEqual(["aws.ek-pin"]);
    // The EK is public: a software TPM could claim the same qualifiedSigner, so the pin alone authenticates nothing.
    const alone = await attest(vm, "aws-ek-only");
    expect(alone.r.status).toBe(403);
    expect(failedIds(alone.r.body)).toEqual(["vtpm.ak-authenticated"]);
  }, 60_000);

  it("a document-authenticated workload whose boot policy reads SHA-256 events is refused", async () => {
    const { r } = await attest(vm, "aws-sha256");
    expect(r.status).toBe(403);
    expect(failedIds(r.body)).toEqual(["aws.document-bank", "vtpm.ak-authenticated"]);
  }, 60_000);
});
