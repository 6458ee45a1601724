// EK credential activation end to end (AWS: the workload registers the instance's EK from EC2
// GetInstanceTpmEkPub as vtpm.ekPublics): the real enclaivelet against a real runtime over HTTPS, a simulated SNP
// report, and real TPMs (swtpm) — `tpm` is the instance's NitroTPM, `soft` a second TPM the guest kernel runs
// itself (at VMPL0 it can bind any TPM's AK into REPORT_DATA). Nitride accepts the evidence but for
// `vtpm.ek-credential`, answers 202 with a credential made for the registered EK and the AK's Name, and issues the
// token only for the activated secret. Hostile cases: the other TPM's AK with the registered EK (refused, nothing
// delivered), a wrong / replayed / cross-session / expired / other-workload answer; a workload without EK
// registration behaves as before (no second round trip).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { reportDataForVtpm } from "../../../runtime/attestation/binding.js";
import { runAgent } from "../../../runtime/guest/agent.js";
import { parseConfig, type EnclaiveletConfig } from "../../../runtime/guest/config.js";
import { memoryLogger } from "../../../runtime/guest/log.js";
import { newEphemeralKey } from "../../../runtime/guest/attest.js";
import { RuntimeError } from "../../../runtime/guest/client.js";
import { AK_HANDLE, EK_HANDLE, Vtpm } from "../../../runtime/guest/evidence/vtpm.js";
import { SwTpm, haveSwtpm } from "../../support/swtpm.js";
import { buildBootLog } from "../attestation/tpm-fixtures.js";
import {
  simulatedSnpProvider,
  startEnclaiveletStack,
  wireVtpm,
  GOOD_MEASUREMENT,
  type EnclaiveletStack,
} from "./stack.js";

const run = haveSwtpm();
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

interface Check {
  id: string;
  ok: boolean;
  detail: string;
}
interface Answer {
  status: number;
  body: {
    data?: {
      token?: string;
      verdict?: { accepted: boolean; checks: Check[] };
      ek_credential?: { ek_name: string; credential_blob: string; encrypted_secret: string; expires_at: number };
    };
    errors?: string[];
  };
}

describe.runIf(run)("EK credential activation (vtpm.ekPublics) through Nitride, real agent, real TPMs", () => {
  let stack: EnclaiveletStack;
  let tpm: SwTpm;
  let soft: SwTpm;
  let dir: string;
  let eventLogPath: string;
  let ekTpmt: string;

  beforeAll(async () => {
    stack = await startEnclaiveletStack();
    [tpm, soft] = await Promise.all([SwTpm.start(), SwTpm.start()]);
    // Both TPMs show the same good measured boot: only the EK credential tells them apart.
    const boot = buildBootLog();
    for (const t of [tpm, soft]) for (const [pcr, d] of boot.extends) t.extend(pcr, d);
    dir = await mkdtemp(path.join(tmpdir(), "bk-ekcred-"));
    eventLogPath = path.join(dir, "log");
    await writeFile(eventLogPath, boot.log);
    const ak = await new Vtpm({ tcti: tpm.tcti, eventLogPath }).attestationKey();
    await new Vtpm({ tcti: soft.tcti, eventLogPath }).attestationKey();
    // What `aws ec2 get-instance-tpm-ek-pub --key-format tpmt` returns for the instance: its EK's TPMT_PUBLIC.
    const f = path.join(dir, "ek.tpmt");
    const r = tpm.tool(["tpm2_readpublic", "-c", EK_HANDLE, "-f", "tpmt", "-o", f]);
    expect(r.status, r.stderr.toString()).toBe(0);
    ekTpmt = readFileSync(f).toString("base64");
    const put = (id: string, vtpm: unknown) =>
      stack.admin("PUT", `nitride/workloads/${id}`, {
        platforms: ["snp"],
        reference_values: { snp_measurements: [GOOD_MEASUREMENT] },
        policy: { vtpm },
        secrets: { kv: ["secret/data/web/db"] },
      });
    // The EK credential is the only AK authentication of this workload: no pin, no NitroTPM document.
    await put("aws-ek", { measuredBoot: boot.policy, ekPublics: [ekTpmt] });
    // Without an EK: the AK pinned, as before this feature.
    await put("aws-plain", { measuredBoot: boot.policy, akPins: [sha256(ak)] });
  }, 120_000);
  afterAll(async () => {
    await tpm?.stop();
    await soft?.stop();
    await stack?.rt.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const provider = () => simulatedSnpProvider(stack);
  const cfg = (workloadId: string, t: SwTpm, root: string): EnclaiveletConfig =>
    parseConfig({
      runtimeUrl: stack.rt.url,
      runtimeCaSha256: stack.caSha256,
      workloadId,
      root,
      evidence: { provider: "auto", vtpm: { tcti: t.tcti, eventLogPath } },
      retry: { attempts: 1, initialDelayMs: 1, maxDelayMs: 1 },
      envFiles: [{ path: "/etc/app/env", vars: { DB_PASSWORD: "web/db#password" } }],
    });

  async function agent(workloadId: string, t: SwTpm) {
    const root = await mkdtemp(path.join(tmpdir(), "bk-ekcred-root-"));
    const log = memoryLogger();
    try {
      const out = await runAgent(cfg(workloadId, t, root), { provider: provider(), log });
      return { out, files: await readdir(root, { recursive: true }), events: log.events.map((e) => e.event) };
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }

  const post = (p: string, body: unknown): Promise<Answer> =>
    stack.client.request("POST", p, { body }).then(
      (r) => ({ status: r.status, body: r.body as Answer["body"] }),
      (e: unknown) => {
        if (e instanceof RuntimeError) return { status: e.status, body: e.body as Answer["body"] };
        throw e;
      },
    );

  /** The enclaivelet's first half by hand: challenge, REPORT_DATA binding `t`'s AK, quote, attest. */
  async function attestWith(workloadId: string, t: SwTpm) {
    const ch = await post("nitride/challenge", { workload_id: workloadId });
    const nonceText = (ch.body.data as unknown as { nonce: string }).nonce;
    const nonce = Buffer.from(nonceText, "base64url");
    const eph = newEphemeralKey({ hybrid: false });
    const vtpm = new Vtpm({ tcti: t.tcti, eventLogPath });
    const ak = await vtpm.attestationKey();
    const reportData = reportDataForVtpm(nonce, eph.spkiDer, ak);
    const evidence = await provider().collect(reportData);
    const q = await vtpm.collect(createHash("sha256").update(reportData).digest());
    const r = await post("nitride/attest", {
      workload_id: workloadId,
      nonce: nonceText,
      ephemeral_public_key: eph.spkiDer.toString("base64"),
      evidence: { ...evidence, vtpm: wireVtpm(q) },
    });
    return { r, nonceText, vtpm };
  }
  /** TPM2_ActivateCredential on the 202's credential with `vtpm`. */
  const activate = (vtpm: Vtpm, r: Answer) => {
    const c = r.body.data!.ek_credential!;
    return vtpm.activateCredential({
      ekName: Buffer.from(c.ek_name, "hex"),
      credentialBlob: Buffer.from(c.credential_blob, "base64"),
      encryptedSecret: Buffer.from(c.encrypted_secret, "base64"),
    });
  };
  const answer = (workloadId: string, nonce: string, secret: Buffer) =>
    post("nitride/attest/credential", { workload_id: workloadId, nonce, secret: secret.toString("base64") });
  const check = (r: Answer, id = "vtpm.ek-credential") => r.body.data?.verdict?.checks.find((c) => c.id === id);
  const failed = (r: Answer) => (r.body.data?.verdict?.checks ?? []).filter((c) => !c.ok).map((c) => c.id);

  it("the instance's TPM: the agent activates the credential and is provisioned", async () => {
    const { out, files, events } = await agent("aws-ek", tpm);
    expect(out, out.error).toMatchObject({ ok: true });
    expect(files).toContain(path.join("etc", "app", "env"));
    expect(events).toContain("ek-credential.activated");
  }, 90_000);

  it("the first answer is 202 with a credential and no token; the verdict is pending only on vtpm.ek-credential", async () => {
    const { r, nonceText, vtpm } = await attestWith("aws-ek", tpm);
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect(r.body.data?.token).toBeUndefined();
    expect(r.body.data?.verdict?.accepted).toBe(false);
    expect(failed(r)).toEqual(["vtpm.ek-credential"]);
    expect(check(r)?.detail).toMatch(/^pending:/);
    const ok = await answer("aws-ek", nonceText, await activate(vtpm, r));
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(typeof ok.body.data?.token).toBe("string");
    expect(ok.body.data?.verdict?.accepted).toBe(true);
    expect(check(ok)).toMatchObject({ ok: true });
    expect(check(ok, "vtpm.ak-authenticated")?.detail).toMatch(/EK credential activation/);
    // Replayed: the same (correct) answer a second time finds nothing pending.
    const again = await answer("aws-ek", nonceText, await activate(vtpm, r));
    expect(again.status).toBe(403);
    expect(again.body.errors?.join()).toMatch(/no EK credential is pending/);
  }, 90_000);

  it("hostile: another TPM's AK bound in REPORT_DATA with the registered EK → refused (vtpm.ek-credential), nothing delivered", async () => {
    const { out, files, events } = await agent("aws-ek", soft);
    expect(out).toMatchObject({ ok: false, reason: "refused" });
    expect(out.error).toMatch(/vtpm\.ek-credential: the guest could not activate the credential/);
    expect(events).toContain("ek-credential.failed");
    expect(files).toEqual([]);
  }, 90_000);

  it("hostile: the other TPM answers with a guessed secret → refused; it cannot try again", async () => {
    const { r, nonceText } = await attestWith("aws-ek", soft);
    expect(r.status).toBe(202);
    const guess = await answer("aws-ek", nonceText, randomBytes(32));
    expect(guess.status).toBe(403);
    expect(failed(guess)).toEqual(["vtpm.ek-credential"]);
    expect(check(guess)?.detail).toMatch(/not the credential's secret/);
    expect(guess.body.data?.token).toBeUndefined();
    const retry = await answer("aws-ek", nonceText, randomBytes(32));
    expect(retry.status).toBe(403);
    expect(retry.body.errors?.join()).toMatch(/no EK credential is pending/);
  }, 90_000);

  it("hostile: the secret of another session (replayed) is not this session's answer", async () => {
    const a = await attestWith("aws-ek", tpm);
    const secretA = await activate(a.vtpm, a.r);
    const b = await attestWith("aws-ek", tpm);
    expect(b.r.status).toBe(202);
    const cross = await answer("aws-ek", b.nonceText, secretA);
    expect(cross.status).toBe(403);
    expect(failed(cross)).toEqual(["vtpm.ek-credential"]);
    // And session A's own pending credential is still answerable exactly once.
    expect((await answer("aws-ek", a.nonceText, secretA)).status).toBe(200);
  }, 120_000);

  it("hostile: the answer sent for another workload is refused (and spends the credential)", async () => {
    const { r, nonceText, vtpm } = await attestWith("aws-ek", tpm);
    const secret = await activate(vtpm, r);
    const other = await answer("aws-plain", nonceText, secret);
    expect(other.status).toBe(403);
    expect(check(other)?.detail).toMatch(/another workload/);
    expect((await answer("aws-ek", nonceText, secret)).status).toBe(403);
  }, 90_000);

  it("an expired credential is refused even with the right secret", async () => {
    await stack.admin("PUT", "nitride/config", { ek_credential_ttl: "1s" });
    try {
      const { r, nonceText, vtpm } = await attestWith("aws-ek", tpm);
      expect(r.status).toBe(202);
      const secret = await activate(vtpm, r);
      const expiresAt = r.body.data!.ek_credential!.expires_at;
      while (Math.floor(Date.now() / 1000) <= expiresAt) await new Promise((res) => setTimeout(res, 250));
      const late = await answer("aws-ek", nonceText, secret);
      expect(late.status).toBe(403);
      expect(check(late)?.detail).toMatch(/expired/);
    } finally {
      await stack.admin("PUT", "nitride/config", { ek_credential_ttl: "30s" });
    }
  }, 90_000);

  it("malformed answers are refused with the field named, before anything is spent", async () => {
    const { r, nonceText, vtpm } = await attestWith("aws-ek", tpm);
    expect(
      (await post("nitride/attest/credential", { workload_id: "aws-ek", nonce: nonceText })).body.errors?.join(),
    ).toMatch(/secret: .* is required/);
    const long = await answer("aws-ek", nonceText, Buffer.alloc(65));
    expect(long.status).toBe(400);
    expect(long.body.errors?.join()).toMatch(/secret: at most 64 bytes/);
    // Still pending: the right answer goes through.
    expect((await answer("aws-ek", nonceText, await activate(vtpm, r))).status).toBe(200);
  }, 90_000);

  it("hostile: an AK whose ADMIN role is a policy (adminWithPolicy=1) is refused before any credential is made", async () => {
    // A TPM whose persisted AK (the one the agent quotes with) was created with adminWithPolicy and a policy anyone
    // can satisfy: a public-only copy of such a key is what a guest would try to activate in another TPM.
    const adm = await SwTpm.start();
    try {
      const d = (f: string) => path.join(dir, `adm-${f}`);
      const ok = (argv: string[]) => {
        const r = adm.tool(argv);
        expect(r.status, `${argv.join(" ")}: ${r.stderr.toString()}`).toBe(0);
        adm.tool(["tpm2_flushcontext", "-t"]);
      };
      for (const [pcr, dg] of buildBootLog().extends) adm.extend(pcr, dg);
      ok(["tpm2_createek", "-c", EK_HANDLE, "-G", "rsa", "-u", d("ek.pub")]);
      ok(["tpm2_createprimary", "-C", "o", "-g", "sha256", "-G", "ecc", "-c", d("prim.ctx")]);
      ok(["tpm2_startauthsession", "-S", d("trial.ctx")]);
      ok(["tpm2_policycommandcode", "-S", d("trial.ctx"), "-L", d("cc.policy"), "TPM2_CC_ActivateCredential"]);
      adm.tool(["tpm2_flushcontext", d("trial.ctx")]);
      ok([
        "tpm2_create",
        "-C",
        d("prim.ctx"),
        "-G",
        "ecc:ecdsa-sha256:null",
        "-a",
        "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|adminwithpolicy|restricted|sign",
        "-L",
        d("cc.policy"),
        "-u",
        d("ak.pub"),
        "-r",
        d("ak.priv"),
      ]);
      ok(["tpm2_load", "-C", d("prim.ctx"), "-u", d("ak.pub"), "-r", d("ak.priv"), "-c", d("ak.ctx")]);
      ok(["tpm2_evictcontrol", "-C", "o", "-c", d("ak.ctx"), AK_HANDLE]);
      ok(["tpm2_readpublic", "-c", EK_HANDLE, "-f", "tpmt", "-o", d("ek.tpmt")]);
      await stack.admin("PUT", "nitride/workloads/aws-ek-adm", {
        platforms: ["snp"],
        reference_values: { snp_measurements: [GOOD_MEASUREMENT] },
        policy: {
          vtpm: { measuredBoot: buildBootLog().policy, ekPublics: [readFileSync(d("ek.tpmt")).toString("base64")] },
        },
        secrets: { kv: ["secret/data/web/db"] },
      });
      const { out, files, events } = await agent("aws-ek-adm", adm);
      expect(out).toMatchObject({ ok: false, reason: "refused" });
      expect(out.error).toMatch(
        /vtpm\.ek-credential: the AK cannot be proven by EK credential activation: adminWithPolicy=1/,
      );
      expect(events).not.toContain("ek-credential.activated");
      expect(files).toEqual([]);
    } finally {
      await adm.stop();
    }
  }, 90_000);

  it("a workload without an EK registration behaves as before: one round trip, token at once", async () => {
    const { r } = await attestWith("aws-plain", tpm);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(typeof r.body.data?.token).toBe("string");
    expect(check(r)).toBeUndefined();
    const { out, events } = await agent("aws-plain", tpm);
    expect(out, out.error).toMatchObject({ ok: true });
    expect(events).not.toContain("ek-credential.activated");
  }, 90_000);
});
