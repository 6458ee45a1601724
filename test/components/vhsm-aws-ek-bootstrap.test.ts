// The AWS Vhsm's EK path end to end: the component's own `attestation` for a runtime image quoting with its own AK
// (manifest runtime.vtpm.ak "runtime-ak": EK credential activation against the EK EC2 GetInstanceTpmEkPub returns for
// the instance — mocked, the only mock besides the engine) handed to the provider's AttestedRuntime create, as
// `pulumi up` runs it, against a real `buckypaper runtime server` process (dist) whose attested TLS carries the vTPM
// half from a real swtpm (PCRs extended with the boot of the runtime disk's UKI) and simulated SNP reports. The
// process states EC2's firmware digest the component expects; the test changes only where the runtime is (url) and
// which AMD root counts (the simulated platform's anchor instead of AMD's, KDS off) — the vTPM policy, the
// measurement and the instance binding are the component's. Hostile first: EC2 naming another TPM's EK (the real
// vTPM's, while the guest kernel quotes from a TPM of its own) is refused by vtpm.ek-credential, and the runtime stays
// uninitialised with no key file written; then the instance's own EK: verified, initialised, the deployer's scoped
// credential works, the recovery share opens with the local recovery key.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installMocks, resolve, unsecret, type MockHarness } from "../support/pulumi-mocks.js";
import { haveDiskTools, writeRuntimeDisk, type RuntimeDisk } from "../support/runtime-disk.js";
import { requireTool } from "../support/prereq.js";
import { SwTpm, haveSwtpm } from "../support/swtpm.js";
import { bootApplicationDigest, ukiCmdline, ukiMeasurements } from "../../images/index.js";
import { buildBootLog } from "../runtime/attestation/tpm-fixtures.js";
import { ekNameFromTpmt } from "../../runtime/attestation/aws/ek.js";
import { EK_HANDLE, Vtpm } from "../../runtime/guest/evidence/vtpm.js";
import { initPlatform } from "../../runtime/sim/localvm/platform.js";
import type { RuntimeAttestation } from "../../runtime/client/connection.js";
import { check, create } from "../../provider/attested-runtime-handlers.js";
import { runtimeRequest } from "../../provider/client.js";
import { decryptShare } from "../../runtime/client/recovery-share.js";
import { forgetDeployerTokens } from "../../runtime/client/deployer.js";
import { startServerProc, type ServerProc } from "../runtime/server/core-procs.js";

const EC2_ID = "i-0123456789abcdef0";
const ready = haveDiskTools() && haveSwtpm();
/** What the mocked GetInstanceTpmEkPub answers for the instance (set per case before the component is built). */
let ekPub: Buffer;
let h: MockHarness;
let c: typeof import("../../components/index.js");

/** The instance's TPM: PCRs and event log of a boot of `uki`, EK and AK made; its EK as EC2 returns it (TPMT). */
async function bootedTpm(uki: Buffer | undefined, dir: string, name: string) {
  const tpm = await SwTpm.start();
  let eventLog = "";
  if (uki) {
    const boot = buildBootLog({
      apps: [bootApplicationDigest(uki, "sha256")],
      cmdline: ukiCmdline(uki)!,
      pcr11: ukiMeasurements(uki).flatMap((m) => [Buffer.from(m.name + "\0", "latin1"), m.data]),
    });
    for (const [pcr, d] of boot.extends) tpm.extend(pcr, d);
    eventLog = path.join(dir, `${name}.log`);
    writeFileSync(eventLog, boot.log);
  }
  await new Vtpm({ tcti: tpm.tcti }).attestationKey();
  const f = path.join(dir, `${name}.tpmt`);
  const r = tpm.tool(["tpm2_readpublic", "-c", EK_HANDLE, "-f", "tpmt", "-o", f]);
  if (r.status !== 0) throw new Error(r.stderr.toString());
  return { tpm, eventLog, ek: readFileSync(f) };
}

describe.runIf(
  requireTool("swtpm + tpm2-tools, systemd-boot-efi, binutils, dosfstools and mtools (a UKI on a FAT32 ESP)", ready),
)("Vhsm on AWS, EK path: the component's attestation through the provider's bootstrap of a runtime process", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bk-vhsm-aws-ek-"));
  const platformDir = path.join(dir, "platform");
  let disk: RuntimeDisk;
  let instance: Awaited<ReturnType<typeof bootedTpm>>;
  let stranger: Awaited<ReturnType<typeof bootedTpm>>;
  let server: ServerProc;
  let anchor: { product: string; ark_sha256: string; ca_certs: string[] };

  beforeAll(async () => {
    h = await installMocks(
      {
        // EC2 GetInstanceTpmEkPub (--key-format tpmt); the SDK call itself: test/provider/aws-ek.test.ts.
        "pulumi-nodejs:dynamic/buckypaper:InstanceTpmEk": (i) => ({
          instanceId: i.instanceId,
          ekName: ekNameFromTpmt(ekPub),
          ekPublicTpmt: ekPub.toString("base64"),
        }),
        "aws:ec2/instance:Instance": () => ({ publicIp: "198.51.100.7" }),
        // Only the inputs matter here: the test runs the resource's create itself, against the process.
        "pulumi-nodejs:dynamic/buckypaper:AttestedRuntime": (inputs) => ({
          measurement: (inputs.attestation as { snpMeasurements: string[] }).snpMeasurements[0],
        }),
      },
      { "aws:region": "us-east-2" },
      (type, name) => (type === "aws:ec2/instance:Instance" ? EC2_ID : `${name}-id`),
    );
    c = await import("../../components/index.js");
    disk = writeRuntimeDisk({ cloud: "ec2", unseal: "shares", ak: "runtime-ak" });
    await initPlatform(platformDir);
    anchor = JSON.parse(readFileSync(path.join(platformDir, "anchor.json"), "utf8"));
    instance = await bootedTpm(disk.uki, dir, "instance");
    stranger = await bootedTpm(undefined, dir, "stranger");
  }, 120_000);
  afterAll(async () => {
    await server?.kill();
    await instance?.tpm.stop();
    await stranger?.tpm.stop();
    if (disk) rmSync(disk.dir, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  });

  /** The Vhsm for the instance whose EK EC2 names `ek`: the inputs it gives AttestedRuntime, pointed at the process. */
  async function componentInputs(name: string, ek: Buffer) {
    ekPub = ek;
    const v = new c.Vhsm(name, {
      mode: "confidential-vm" as never,
      platform: "aws" as never,
      image: disk.manifest,
      cloudImageId: "ami-0123456789abcdef0",
      deployerKeyFile: path.join(dir, `${name}-deployer.pem`),
    });
    await resolve(v.attestation);
    const rt = unsecret(h.resources.find((r) => r.name === `${name}-runtime`)!.inputs) as Record<string, unknown>;
    const att = rt.attestation as RuntimeAttestation;
    const policy = JSON.parse(att.policy!);
    // The component's EK registration for this instance, as the verifier will use it.
    expect(policy.vtpm.ekPublics).toEqual([ek.toString("base64")]);
    expect(policy.vtpm.akPins).toBeUndefined();
    expect(policy.vtpm.nitroTpm).toBeUndefined();
    return {
      att,
      inputs: {
        ...rt,
        url: server.url,
        attestation: { ...att, simulatedAnchors: [anchor], kds: "off" },
        localRecoveryKeyFile: path.join(dir, `${name}-recovery.jwk`),
        timeoutSeconds: 20,
      },
    };
  }

  /** Asked over a connection verified on the SNP half only (the hostile expectations would refuse it). */
  async function initialized(att: RuntimeAttestation): Promise<boolean> {
    const plain = {
      snpMeasurements: att.snpMeasurements,
      allowAnyInstance: true,
      simulatedAnchors: [anchor],
      kds: "off",
    };
    const r = await runtimeRequest({ url: server.url, token: "-", attestation: plain as never }, "GET", "sys/init");
    return (r.body as { initialized: boolean }).initialized;
  }

  it("refused with another TPM's EK (aws.ek-pin; vtpm.ek-credential when the quote lies about its signer), nothing written; verified, initialised and bootstrapped with the instance's", async () => {
    // The runtime process states the measurement the component expects (EC2's firmware digest for m6a.large).
    ekPub = instance.ek;
    const probe = new c.Vhsm("probe", {
      mode: "confidential-vm" as never,
      platform: "aws" as never,
      image: disk.manifest,
      cloudImageId: "ami-0123456789abcdef0",
    });
    const measurement = (unsecret(await resolve(probe.attestation)) as RuntimeAttestation).snpMeasurements![0];
    const config = path.join(dir, "runtime.hcl");
    writeFileSync(
      config,
      `storage "sqlite" { path = "${path.join(dir, "runtime.db")}" }
       listener "tcp" { address = "127.0.0.1:0" }
       attestation "simulated" {
         platform_dir = "${platformDir}"
         measurement = "${measurement}"
         vtpm {
           tcti = "${instance.tpm.tcti}"
           event_log = "${instance.eventLog}"
         }
       }`,
    );
    server = await startServerProc(config);
    expect(server.output()).toMatch(/with a quote from vtpm/);

    // Hostile: EC2 names another TPM's EK — the runtime's AK lives in a TPM the guest kernel chose. A genuine TPM
    // says so in its quote (qualifiedSigner: an AK under its own EK), so the component's registration (ekNames)
    // refuses it before the activation round trip.
    const bad = await componentInputs("awsek-other", stranger.ek);
    const refused = async (inputs: Record<string, unknown>, reason: RegExp) => {
      const checked = check("attested-runtime", inputs);
      expect(checked.failures).toEqual([]);
      const e = await create("attested-runtime", checked.inputs).catch((x: unknown) => x as Error);
      expect(e).toBeInstanceOf(Error);
      expect((e as Error).message).toMatch(reason);
      expect(await initialized(bad.att)).toBe(false);
      expect(existsSync(path.join(dir, "awsek-other-deployer.pem"))).toBe(false);
      expect(existsSync(path.join(dir, "awsek-other-recovery.jwk"))).toBe(false);
    };
    await refused(
      bad.inputs,
      /refused before anything was sent to it \(attested TLS\): aws\.ek-pin: the quote's qualifiedSigner is not an AK under any registered EK/,
    );
    // A software TPM is not bound to tell the truth there: it can sign any qualifiedSigner, the registered EK's
    // too. With that check passing (here: the registration without ekNames), what remains is the activation —
    // a credential only the registered EK's TPM can open, for the AK that signed the quote — and it refuses.
    const policy = JSON.parse(bad.att.policy!);
    delete policy.vtpm.ekNames;
    const att = bad.inputs.attestation as RuntimeAttestation;
    await refused(
      { ...bad.inputs, attestation: { ...att, policy: JSON.stringify(policy) } },
      /refused before anything was sent to it \(attested TLS\): vtpm\.ek-credential: the runtime could not activate the credential for the registered EK .*HTTP 422: sys\/attestation\/activate: ek_name names no endorsement key of this TPM/,
    );

    // The instance's own EK: verified (EK credential activation included), then initialised and bootstrapped.
    const good = await componentInputs("awsek", instance.ek);
    const ok = check("attested-runtime", good.inputs);
    expect(ok.failures).toEqual([]);
    const { outs } = await create("attested-runtime", ok.inputs);
    const checks = outs.checks as string[];
    for (const id of [
      "vtpm.ek-credential",
      "aws.ek-pin",
      "vtpm.ak-authenticated",
      "boot.applications",
      "policy.measurement",
    ])
      expect(checks, id).toContainEqual(expect.stringMatching(new RegExp(`^${id.replace(".", "\\.")}: `)));
    expect(outs.rootToken).toBeUndefined();
    expect(JSON.stringify(outs)).not.toMatch(/"(root_token|keys_base64)"/);
    expect(outs.runtimeInstanceId).toMatch(/^[0-9a-f]{64}$/);
    expect(await initialized(good.att)).toBe(true);
    // The deployer's scoped credential works over attested TLS, with the expectation the component outputs.
    forgetDeployerTokens();
    const who = await runtimeRequest(
      {
        url: server.url,
        deployer: outs.deployer as never,
        attestation: { ...good.att, simulatedAnchors: [anchor], kds: "off" },
      },
      "GET",
      "auth/token/lookup-self",
    );
    expect(who.status).toBe(200);
    expect(JSON.stringify(who.body)).toMatch(/bk-deployer/);
    expect(JSON.stringify(who.body)).not.toMatch(/"root"/);
    // The one recovery share opens with the local recovery key only.
    const shares = outs.recoveryShares as string[];
    expect(shares).toHaveLength(1);
    const jwk = JSON.parse(readFileSync(path.join(dir, "awsek-recovery.jwk"), "utf8"));
    expect((await decryptShare(shares[0], jwk)).threshold).toBe(1);
  }, 240_000);
});
