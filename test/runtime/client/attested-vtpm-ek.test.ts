// The runtime's AK authenticated by EK credential activation (policy.vtpm.ekPublics — on AWS the EK the EC2 API
// returns for the instance): after the first answer passes, the verifier makes a credential for the registered EK
// and the quote's AK and the runtime must activate it (POST /v1/sys/attestation/activate, TPM2_ActivateCredential
// in its own TPM) on a connection pinned to the attested key. Real HTTPS, simulated SNP reports, real swtpms: the
// runtime's TPM under its own EK is accepted; another TPM's EK (the real vTPM's, while the guest kernel bound a
// software TPM), a wrong secret and a secret replayed from another session are refused by vtpm.ek-credential.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import https from "node:https";
import { credentialEk, makeCredential } from "../../../runtime/attestation/tpm/credential.js";
import { parseTpmPublic } from "../../../runtime/attestation/tpm/abi.js";
import { ekNameFromTpmt } from "../../../runtime/attestation/aws/ek.js";
import { runtimeExpectation, verifyRuntime, type RuntimeExpectation } from "../../../runtime/client/attested-tls.js";
import { vtpmSourceFor, type RuntimeVtpmSource } from "../../../runtime/server/http/attested-tls.js";
import type { RunningServer } from "../../../runtime/server/http/server.js";
import type { SnpSimulator } from "../../../runtime/sim/snp.js";
import { EK_HANDLE } from "../../../runtime/guest/evidence/vtpm.js";
import { spawnRunner, type CommandRunner } from "../../../runtime/guest/exec.js";
import { haveSwtpm } from "../../support/swtpm.js";
import { expectationFor, startAttestedRuntime } from "../attested-runtime-support.js";
import { bootTpm, goodBootPolicy, type BootedTpm } from "../vtpm-runtime-support.js";

/**
 * What `aws ec2 get-instance-tpm-ek-pub --key-format tpmt` returns for a TPM: its EK's TPMT_PUBLIC, base64 — the
 * persisted one, or (`template`) the one tpm2_createek makes from a TCG default template (EC2 offers RSA-2048 and
 * ECC P-384).
 */
function ekTpmt(b: BootedTpm, template?: "ecc384"): string {
  const dir = mkdtempSync(path.join(tmpdir(), "bp-ek-"));
  try {
    const f = path.join(dir, "ek.tpmt");
    const r = template
      ? b.tpm.tool(["tpm2_createek", "-c", path.join(dir, "ek.ctx"), "-G", template, "-f", "tpmt", "-u", f])
      : b.tpm.tool(["tpm2_readpublic", "-c", EK_HANDLE, "-f", "tpmt", "-o", f]);
    if (r.status !== 0) throw new Error(r.stderr.toString());
    if (template) b.tpm.tool(["tpm2_flushcontext", "-t"]);
    return readFileSync(f).toString("base64");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Sends a body to POST /v1/sys/attestation/activate (or another method) over HTTPS, certificate unjudged. */
function postTo(url: string, body: unknown, method = "POST") {
  return new Promise<{ status: number; body: { data?: { secret?: string }; errors?: string[] } }>((resolve, reject) => {
    const u = new URL(`${url}/v1/sys/attestation/activate`);
    const req = https.request(
      { method, host: u.hostname, port: u.port, path: u.pathname, rejectUnauthorized: false },
      (res) => {
        let t = "";
        res.on("data", (d: Buffer) => (t += d.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(t || "{}") }));
      },
    );
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

describe.runIf(haveSwtpm())("verifyRuntime: the runtime's AK proven by EK credential activation", () => {
  let sim: SnpSimulator;
  let good: BootedTpm;
  let nitro: BootedTpm;
  let server: RunningServer;
  let liar: RunningServer;
  let replayer: RunningServer;
  /** A runtime over the same TPM whose tpm2-tools invocations are counted. */
  let counted: RunningServer;
  const tpmCommands: string[] = [];
  /** Secrets the replaying runtime's TPM activated in earlier sessions. */
  const recorded: Buffer[] = [];

  const source = (b: BootedTpm): RuntimeVtpmSource => vtpmSourceFor({ tcti: b.tpm.tcti, eventLog: b.eventLog });

  beforeAll(async () => {
    good = await bootTpm();
    // The instance's real vTPM (the EK the EC2 API names) — the runtime's kernel quotes from another TPM.
    nitro = await bootTpm();
    ({ server, sim } = await startAttestedRuntime({ attestationBody: good.stanza }));
    const lying = source(good);
    ({ server: liar } = await startAttestedRuntime({
      attestationBody: good.stanza,
      vtpmSource: { ...lying, activateCredential: async () => randomBytes(32) },
    }));
    const honest = source(good);
    ({ server: replayer } = await startAttestedRuntime({
      attestationBody: good.stanza,
      vtpmSource: {
        ...honest,
        // The first session is answered genuinely (and recorded); every later one gets that old answer.
        activateCredential: async (c) => {
          if (recorded.length) return recorded[0];
          const s = await honest.activateCredential!(c);
          recorded.push(s);
          return s;
        },
      },
    }));
    const counting: CommandRunner = {
      run: (argv, opts) => {
        tpmCommands.push(argv[0]);
        return spawnRunner.run(argv, opts);
      },
    };
    ({ server: counted } = await startAttestedRuntime({
      attestationBody: good.stanza,
      vtpmSource: vtpmSourceFor({ tcti: good.tpm.tcti, eventLog: good.eventLog }, counting),
    }));
  }, 120_000);
  afterAll(async () => {
    await counted?.close();
    await server?.close();
    await liar?.close();
    await replayer?.close();
    await good?.stop();
    await nitro?.stop();
  });

  const expecting = (ekPublics: string[]): RuntimeExpectation => {
    const e = runtimeExpectation(expectationFor(sim));
    return { ...e, policy: { ...e.policy, vtpm: { measuredBoot: goodBootPolicy(), ekPublics } } };
  };
  const failed = (v: { checks: { id: string; ok: boolean }[] }) => v.checks.filter((c) => !c.ok).map((c) => c.id);

  it("accepts the runtime whose AK activates a credential made for its TPM's EK", async () => {
    const v = await verifyRuntime({ url: server.url, expected: expecting([ekTpmt(good)]) });
    expect(v.reason).toBeUndefined();
    // As the AWS Vhsm registers it: the EK's Name too (the quote's qualifiedSigner must name the AK under that EK).
    const named = expecting([ekTpmt(good)]);
    named.policy.vtpm!.ekNames = [ekNameFromTpmt(Buffer.from(ekTpmt(good), "base64"))];
    const withName = await verifyRuntime({ url: server.url, expected: named });
    expect(withName.reason).toBeUndefined();
    expect(withName.checks.find((c) => c.id === "vtpm.ek-credential")?.ok).toBe(true);
    expect(withName.checks.find((c) => c.id === "aws.ek-pin")?.ok).toBe(true);
    expect(v.ok).toBe(true);
    expect(v.verdict?.accepted).toBe(true);
    const ek = v.checks.find((c) => c.id === "vtpm.ek-credential");
    expect(ek?.ok).toBe(true);
    expect(ek?.detail).toMatch(/activated a credential made for the registered EK/);
    for (const id of ["runtime.vtpm-policy", "vtpm.ak-authenticated", "binding.vtpm-ak", "boot.kernel-cmdline"])
      expect(v.checks.find((c) => c.id === id)?.ok, id).toBe(true);
  }, 60_000);

  it("refuses when the registered EK is another TPM's: the runtime quoted from a TPM the kernel bound", async () => {
    const v = await verifyRuntime({ url: server.url, expected: expecting([ekTpmt(nitro)]) });
    expect(v.ok).toBe(false);
    expect(failed(v)).toEqual(["vtpm.ek-credential"]);
    expect(v.reason).toMatch(/^vtpm\.ek-credential: the runtime could not activate the credential .*HTTP 422/);
  }, 60_000);

  it("activates under a default-template EK that is not the persisted one (ECC P-384, which EC2 also offers)", async () => {
    const v = await verifyRuntime({ url: server.url, expected: expecting([ekTpmt(good, "ecc384")]) });
    expect(v.reason).toBeUndefined();
    expect(v.checks.find((c) => c.id === "vtpm.ek-credential")?.ok).toBe(true);
    // Another TPM's ECC P-384 EK is still refused.
    const other = await verifyRuntime({ url: server.url, expected: expecting([ekTpmt(nitro, "ecc384")]) });
    expect(failed(other)).toEqual(["vtpm.ek-credential"]);
  }, 60_000);

  it("refuses an ek_name that is none of its TPM's EKs up front: 422 naming ek_name, the TPM not asked", async () => {
    // The EK Names were read at start; from then on a Name nobody registered costs no TPM command.
    const atStart = tpmCommands.length;
    expect(atStart).toBeGreaterThan(0);
    const ek = credentialEk(Buffer.from(ekTpmt(nitro), "base64"));
    const ak = parseTpmPublic(await good.vtpm.attestationKey());
    const m = makeCredential(ek, Buffer.from(ak.name), randomBytes(32));
    const hostile = {
      ek_name: Buffer.from(ek.name).toString("hex"),
      credential_blob: m.credentialBlob.toString("base64"),
      encrypted_secret: m.encryptedSecret.toString("base64"),
    };
    for (const body of [
      hostile, // another TPM's genuine EK
      { ...hostile, ek_name: "000b" + randomBytes(32).toString("hex") }, // a well-formed SHA-256 Name of nothing
      { ...hostile, ek_name: "000c" + randomBytes(48).toString("hex") }, // SHA-384
    ]) {
      const r = await postTo(counted.url, body);
      expect(r.status).toBe(422);
      expect(r.body.errors?.[0]).toMatch(/^sys\/attestation\/activate: ek_name names no endorsement key of this TPM/);
      expect(JSON.stringify(r.body)).not.toMatch(/"secret"/);
    }
    expect(tpmCommands.slice(atStart)).toEqual([]);
    // The same runtime still activates for its own EK, through the TPM (the counter sees that).
    const v = await verifyRuntime({ url: counted.url, expected: expecting([ekTpmt(good)]) });
    expect(v.reason).toBeUndefined();
    expect(tpmCommands.slice(atStart)).toContain("tpm2_activatecredential");
    // The default-template EKs were learnt at start, not regenerated per request: no tpm2_createek for the persisted one.
    expect(tpmCommands.slice(atStart)).not.toContain("tpm2_createek");
  }, 60_000);

  it("refuses a runtime answering the activation with a secret that is not the credential's", async () => {
    const v = await verifyRuntime({ url: liar.url, expected: expecting([ekTpmt(good)]) });
    expect(failed(v)).toEqual(["vtpm.ek-credential"]);
    expect(v.reason).toMatch(/not this verification's credential secret/);
  }, 60_000);

  it("refuses an activation answer replayed from another session", async () => {
    const first = await verifyRuntime({ url: replayer.url, expected: expecting([ekTpmt(good)]) });
    expect(first.reason).toBeUndefined();
    expect(recorded).toHaveLength(1);
    const again = await verifyRuntime({ url: replayer.url, expected: expecting([ekTpmt(good)]) });
    expect(failed(again)).toEqual(["vtpm.ek-credential"]);
    expect(again.reason).toMatch(/replayed from another session/);
  }, 90_000);

  it("the endpoint opens nothing but credentials for the runtime's own AK (no decryption oracle), only by POST", async () => {
    const ek = credentialEk(Buffer.from(ekTpmt(good), "base64"));
    const post = (body: unknown, method = "POST") => postTo(server.url, body, method);
    const made = (name: Uint8Array, secret: Buffer) => {
      const m = makeCredential(ek, Buffer.from(name), secret);
      return {
        ek_name: Buffer.from(ek.name).toString("hex"),
        credential_blob: m.credentialBlob.toString("base64"),
        encrypted_secret: m.encryptedSecret.toString("base64"),
      };
    };
    // For the runtime's AK: opened (what the verifier relies on).
    const ownAk = parseTpmPublic(await good.vtpm.attestationKey());
    const secret = randomBytes(32);
    const own = await post(made(ownAk.name, secret));
    expect(own.status).toBe(200);
    expect(Buffer.from(own.body.data!.secret!, "base64").equals(secret)).toBe(true);
    // For any other object Name under the same EK (here another TPM's AK): the TPM refuses (integrity), nothing leaks.
    const foreign = parseTpmPublic(await nitro.vtpm.attestationKey());
    const other = await post(made(foreign.name, randomBytes(32)));
    expect(other.status).toBe(422);
    expect(JSON.stringify(other.body)).not.toMatch(/"secret"/);
    expect((await post({ ...made(ownAk.name, secret), extra: 1 })).status).toBe(400);
    expect((await post("not an object")).status).toBe(400);
    expect((await post(undefined, "GET")).status).toBe(405);
  }, 60_000);
});
