// The enclaivelet on GCE quotes with Google's certified AK: a real TPM 2.0 (swtpm) provisioned the way GCE
// provisions a Shielded VM's vTPM — Google's AK template in NV 0x01c10003 (ECC) / 0x01c10001 (RSA) and the AK
// certificate (here from a simulated Google EK/AK CA) in NV 0x01c10002 / 0x01c10000. The certified key is made by
// a hand-encoded TPM2_CreatePrimary sent with tpm2_send — independent of the agent's tpm2_createprimary options —
// so the agent creating the same key proves it reproduces the template exactly. Then the real agent attests to a
// real runtime over HTTPS whose workload asks for Google's AK certificate of its project, and hostile vTPMs
// (no template, a certificate for another key) are refused before anything is sent.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { runAgent } from "../../../runtime/guest/agent.js";
import { parseConfig } from "../../../runtime/guest/config.js";
import { renderUserData } from "../../../runtime/guest/cloud-init/index.js";
import { memoryLogger } from "../../../runtime/guest/log.js";
import { GCE_AK_HANDLE, Vtpm } from "../../../runtime/guest/evidence/vtpm.js";
import { derPrefix, parseAkTemplate } from "../../../runtime/guest/evidence/gce-ak.js";
import { parseTpmPublic } from "../../../runtime/attestation/tpm/index.js";
import { createGceAkCaSimulator, type GceAkCaSimulator } from "../../../runtime/sim/gce-ak-ca.js";
import { SwTpm, haveSwtpm } from "../../support/swtpm.js";
import { eccTemplate, nvWrite, referencePrimary, rsaTemplate } from "../../support/gce-vtpm.js";
import { buildBootLog } from "../attestation/tpm-fixtures.js";
import { GCE_INSTANCE } from "../attestation/gce-fixtures.js";
import type { AttestObserver } from "../../../runtime/guest/attest.js";
import type { WireEvidence } from "../../../runtime/protocol/evidence.js";
import { startEnclaiveletStack, simulatedSnpProvider, GOOD_MEASUREMENT, type EnclaiveletStack } from "./stack.js";

/** What the agent sent to /attest (the observer's argument). */
type AttestRequest = Parameters<AttestObserver>[0];
/** The vTPM part of SNP/TDX evidence (Azure evidence carries its TPM quote elsewhere). */
const vtpmOf = (e: WireEvidence) => ("vtpm" in e ? e.vtpm : undefined);

const run = haveSwtpm();

interface GceVm {
  tpm: SwTpm;
  eventLogPath: string;
  akPublic?: Buffer;
}

describe("Google's AK template → tpm2_createprimary options", () => {
  it("ECC: curve, scheme, attributes and the unique field in the layout tpm2_createprimary -u reads", () => {
    const t = parseAkTemplate(eccTemplate());
    expect(t.options).toEqual(["-g", "sha256", "-G", "ecc256:ecdsa-sha256:null", "-a", "0x00050072"]);
    expect(t.unique).toHaveLength(2 * 130);
    expect(t.unique.readUInt16LE(0)).toBe(32);
    expect(t.unique.readUInt16LE(130)).toBe(32);
    expect(t.prefix.equals(eccTemplate().subarray(0, eccTemplate().length - 68))).toBe(true);
  });
  it("refuses what the options cannot reproduce, naming the field", () => {
    const withKdf = eccTemplate();
    withKdf.writeUInt16BE(0x0020, 18); // kdf = KDF1_SP800_56A
    expect(() => parseAkTemplate(withKdf)).toThrow(/gce_ak_template\.parameters\.kdf: must be NULL/);
    const exp = rsaTemplate();
    exp.writeUInt32BE(3, 18);
    expect(() => parseAkTemplate(exp)).toThrow(/parameters\.exponent: must be 0/);
    expect(() => parseAkTemplate(Buffer.concat([eccTemplate(), Buffer.from([0])]))).toThrow(/trailing bytes/);
    expect(() => parseAkTemplate(eccTemplate().subarray(0, 20))).toThrow(/truncated/);
  });
  it("user-data and config: googleAk only with a GCE vTPM, never together with the NitroTPM document", () => {
    const base = {
      runtimeUrl: "https://runtime.example:8200",
      runtimeCaSha256: "ab".repeat(32),
      workloadId: "w",
      vtpm: true,
    };
    const ud = renderUserData({ ...base, platform: "gcp", vtpmGoogleAk: true });
    expect(ud.agentConfig.evidence.vtpm).toEqual({ tcti: "device:/dev/tpmrm0", googleAk: true });
    expect(() => renderUserData({ ...base, platform: "aws", vtpmGoogleAk: true })).toThrow(
      /vtpmGoogleAk: needs platform gcp and vtpm/,
    );
    const cfg = { runtimeUrl: base.runtimeUrl, runtimeCaSha256: base.runtimeCaSha256, workloadId: "w" };
    expect(() => parseConfig({ ...cfg, evidence: { vtpm: { googleAk: true, nitroTpm: true } } })).toThrow(
      /evidence\.vtpm\.googleAk: excludes nitroTpm/,
    );
    expect(() => parseConfig({ ...cfg, evidence: { vtpm: { googleAk: "yes" } } })).toThrow(
      /evidence\.vtpm\.googleAk: must be true or false/,
    );
  });
  it("a certificate read from a larger NV index is cut at its DER length", () => {
    const der = Buffer.concat([Buffer.from([0x30, 0x82, 0x00, 0x03]), Buffer.from([1, 2, 3])]);
    expect(derPrefix(Buffer.concat([der, Buffer.alloc(9, 0xff)])).equals(der)).toBe(true);
    expect(() => derPrefix(Buffer.from([0x04, 0x01, 0x00]))).toThrow(/DER SEQUENCE/);
    expect(() => derPrefix(der.subarray(0, 5))).toThrow(/exceeds/);
  });
});

describe.runIf(run)("the enclaivelet on a GCE-provisioned vTPM (swtpm)", () => {
  let stack: EnclaiveletStack;
  let akCa: GceAkCaSimulator;
  const vms: SwTpm[] = [];
  let dir: string;

  async function gceVm(
    o: { kind?: "ecc" | "rsa"; certForOtherKey?: boolean; noTemplate?: boolean; instance?: typeof GCE_INSTANCE } = {},
  ) {
    const tpm = await SwTpm.start();
    vms.push(tpm);
    const boot = buildBootLog();
    for (const [pcr, d] of boot.extends) tpm.extend(pcr, d);
    const eventLogPath = path.join(dir, `log-${vms.length}`);
    await writeFile(eventLogPath, boot.log);
    const vm: GceVm = { tpm, eventLogPath };
    if (o.noTemplate) return vm;
    const kind = o.kind ?? "ecc";
    const template = kind === "ecc" ? eccTemplate() : rsaTemplate();
    vm.akPublic = referencePrimary(tpm, template);
    const certified = o.certForOtherKey
      ? parseTpmPublic(referencePrimary(tpm, kind === "ecc" ? rsaTemplate() : eccTemplate())).key
      : parseTpmPublic(vm.akPublic).key;
    const cert = Buffer.from(await akCa.issue(certified, o.instance ?? GCE_INSTANCE));
    nvWrite(tpm, kind === "ecc" ? 0x01c10003 : 0x01c10001, template);
    // GCE sizes the index for the certificate; a larger one (padding after the DER) must not matter.
    nvWrite(tpm, kind === "ecc" ? 0x01c10002 : 0x01c10000, cert, cert.length + 16);
    return vm;
  }

  beforeAll(async () => {
    [stack, akCa] = await Promise.all([startEnclaiveletStack(), createGceAkCaSimulator()]);
    dir = await mkdtemp(path.join(tmpdir(), "bk-gce-ak-"));
    await stack.admin("PUT", "nitride/config", { simulated_gce_ak_roots: [akCa.rootPem] });
    await stack.admin("PUT", "nitride/workloads/gce", {
      platforms: ["snp"],
      reference_values: { snp_measurements: [GOOD_MEASUREMENT] },
      policy: { vtpm: { gceAkCertificate: { projectIds: ["bk-prod"] }, measuredBoot: buildBootLog().policy } },
      secrets: { kv: ["secret/data/web/db"] },
    });
  }, 120_000);
  afterAll(async () => {
    for (const t of vms) await t.stop();
    await stack?.rt.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("ECC: the agent's AK is the key Google's template yields (= the certified key), persisted and reused", async () => {
    const vm = await gceVm();
    const vtpm = new Vtpm({ tcti: vm.tpm.tcti, eventLogPath: vm.eventLogPath, googleAk: true });
    const ak = await vtpm.attestationKey();
    expect(ak.equals(vm.akPublic!)).toBe(true);
    expect(vm.tpm.tool(["tpm2_readpublic", "-c", GCE_AK_HANDLE]).status).toBe(0);
    // A fresh agent (next boot) reuses the persisted key, and the quote carries the certificate from NV.
    const again = new Vtpm({ tcti: vm.tpm.tcti, eventLogPath: vm.eventLogPath, googleAk: true });
    const q = await again.collect(Buffer.alloc(32, 1));
    expect(q.akPublic.equals(vm.akPublic!)).toBe(true);
    expect(q.akCertificate).toBeDefined();
    expect(q.akCertificate![0]).toBe(0x30);
  }, 60_000);

  it("RSA: the same for Google's RSA 2048 template (NV 0x01c10001 / 0x01c10000)", async () => {
    const vm = await gceVm({ kind: "rsa" });
    const ak = await new Vtpm({ tcti: vm.tpm.tcti, eventLogPath: vm.eventLogPath, googleAk: true }).attestationKey();
    expect(ak.equals(vm.akPublic!)).toBe(true);
    expect(parseTpmPublic(ak).type).toBe("rsa");
  }, 60_000);

  const provider = () => simulatedSnpProvider(stack);

  async function agent(vm: GceVm, o: { workload?: string; sleep?: (ms: number) => Promise<void> } = {}) {
    const root = await mkdtemp(path.join(tmpdir(), "bk-gce-ak-root-"));
    try {
      const sent: AttestRequest[] = [];
      const cfg = parseConfig({
        runtimeUrl: stack.rt.url,
        runtimeCaSha256: stack.caSha256,
        workloadId: o.workload ?? "gce",
        root,
        evidence: { provider: "auto", vtpm: { tcti: vm.tpm.tcti, eventLogPath: vm.eventLogPath, googleAk: true } },
        retry: { attempts: o.sleep ? 3 : 1, initialDelayMs: 1, maxDelayMs: 1 },
        envFiles: [{ path: "/etc/app/env", vars: { DB_PASSWORD: "web/db#password" } }],
      });
      const out = await runAgent(cfg, {
        provider: provider(),
        log: memoryLogger(),
        onAttestRequest: (r) => sent.push(r),
        ...(o.sleep ? { sleep: o.sleep } : {}),
      });
      return { out, sent, files: await readdir(root, { recursive: true }) };
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }

  it("end to end: the agent sends Google's AK certificate, Nitride authenticates the AK by it, secrets arrive", async () => {
    const vm = await gceVm();
    const { out, sent, files } = await agent(vm);
    expect(out, out.error).toMatchObject({ ok: true });
    expect(files).toContain(path.join("etc", "app", "env"));
    const cert = Buffer.from(vtpmOf(sent[0].evidence)!.ak_cert!, "base64");
    expect(parseTpmPublic(vm.akPublic!).key.export({ type: "spki", format: "der" })).toEqual(
      new (await import("node:crypto")).X509Certificate(cert).publicKey.export({ type: "spki", format: "der" }),
    );
    expect(createHash("sha256").update(cert).digest()).toHaveLength(32);
  }, 90_000);

  it("registered after the VM exists (the component pins the instance): the agent waits for the workload", async () => {
    const vm = await gceVm();
    let registered = 0;
    const { out } = await agent(vm, {
      workload: "gce-late",
      // The retry pause is when the deployment registers the workload (after the instance exists).
      sleep: async () => {
        if (registered++ === 0)
          await stack.admin("PUT", "nitride/workloads/gce-late", {
            platforms: ["snp"],
            reference_values: { snp_measurements: [GOOD_MEASUREMENT] },
            policy: {
              vtpm: {
                gceAkCertificate: {
                  projectIds: ["bk-prod"],
                  zones: ["europe-west4-a"],
                  instanceIds: ["4242424242424242"],
                },
                measuredBoot: buildBootLog().policy,
              },
            },
            secrets: { kv: ["secret/data/web/db"] },
          });
      },
    });
    expect(registered).toBe(1);
    expect(out, out.error).toMatchObject({ ok: true });
    // Another VM of the same project and zone, booted from the same image, with a genuine Google AK certificate:
    // the workload is pinned to its own instance, so it is refused.
    const sibling = await gceVm({ instance: { ...GCE_INSTANCE, instanceId: 7777777777n, instanceName: "other" } });
    const r = await agent(sibling, { workload: "gce-late" });
    expect(r.out).toMatchObject({ ok: false, reason: "refused" });
    expect(r.out.error).toMatch(/vtpm\.gce-instance: instance 7777777777 is not allowed/);
    expect(r.files).toEqual([]);
  }, 120_000);

  it("hostile: a vTPM without Google's template (a software TPM) → the agent stops at gce-ak-template, nothing sent", async () => {
    const vm = await gceVm({ noTemplate: true });
    const { out, sent, files } = await agent(vm);
    expect(out).toMatchObject({ ok: false, reason: "evidence" });
    expect(out.error).toMatch(/vtpm: gce-ak-template: no Google AK template in NV 0x01c10003 \(ECC\) or 0x01c10001/);
    expect(sent).toEqual([]);
    expect(files).toEqual([]);
  }, 60_000);

  it("hostile: a certificate in NV for another key → the agent stops at gce-ak-certificate, nothing sent", async () => {
    const vm = await gceVm({ certForOtherKey: true });
    const { out, sent, files } = await agent(vm);
    expect(out).toMatchObject({ ok: false, reason: "evidence" });
    expect(out.error).toMatch(/gce-ak-certificate: the key created from Google's AK template is not the key/);
    expect(sent).toEqual([]);
    expect(files).toEqual([]);
  }, 60_000);
});
