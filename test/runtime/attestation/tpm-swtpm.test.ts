// Real TPM 2.0 quotes (swtpm/libtpms through tpm2-tools, the enclaivelet's vTPM collector) over PCRs extended
// with a measured boot's events, verified with the event log: signature, nonce, PCR digest, replay, and the
// measured-boot policy over events. Negatives flip one thing each.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { SwTpm, haveSwtpm } from "../../support/swtpm.js";
import { Vtpm, type VtpmEvidence } from "../../../runtime/guest/evidence/vtpm.js";
import {
  appraiseMeasuredBoot,
  parseTpmPublic,
  parseTpmsAttest,
  verifyTpmEvidence,
  type TpmEvidence,
} from "../../../runtime/attestation/tpm/index.js";
import { buildBootLog, DEFAULT_CMDLINE, type BootLog, type BootSpec } from "./tpm-fixtures.js";

const run = haveSwtpm();
const failed = (checks: { id: string; ok: boolean }[]) => checks.filter((c) => !c.ok).map((c) => c.id);

interface Booted {
  tpm: SwTpm;
  boot: BootLog;
  vtpm: Vtpm;
}

async function bootWith(spec: BootSpec): Promise<Booted> {
  const tpm = await SwTpm.start();
  const boot = buildBootLog(spec);
  for (const [pcr, d] of boot.extends) tpm.extend(pcr, d);
  const dir = mkdtempSync(path.join(tmpdir(), "bp-evlog-"));
  const logPath = path.join(dir, "binary_bios_measurements");
  writeFileSync(logPath, boot.log);
  return { tpm, boot, vtpm: new Vtpm({ tcti: tpm.tcti, eventLogPath: logPath }) };
}

const asEvidence = (e: VtpmEvidence): TpmEvidence => ({
  akPublic: e.akPublic,
  quote: e.quote,
  signature: e.signature,
  pcrs: { sha256: e.pcrs },
  eventLog: e.eventLog,
});

describe.runIf(run)("swtpm: real quotes over a measured boot", () => {
  let good: Booted;
  let evidence: TpmEvidence;
  const nonce = randomBytes(32);

  beforeAll(async () => {
    good = await bootWith({});
    evidence = asEvidence(await good.vtpm.collect(nonce));
  }, 60_000);
  afterAll(async () => {
    await good?.tpm.stop();
  });

  it("verifies: AK attributes, signature, nonce, PCR digest, replay, and every boot rule", () => {
    const v = verifyTpmEvidence(evidence, { nonce });
    expect(failed(v.checks)).toEqual([]);
    expect(v.checks.map((c) => c.id)).toEqual([
      "tpm.ak-attributes",
      "tpm.quote-signature",
      "tpm.nonce",
      "tpm.event-log",
      "tpm.pcr-digest",
      "tpm.event-log-replay",
    ]);
    expect(v.replayed.sha256).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 14]);
    const boot = appraiseMeasuredBoot(v, good.boot.policy);
    expect(failed(boot)).toEqual([]);
    expect(boot.map((c) => c.id)).toEqual([
      "boot.separators",
      "boot.applications",
      "boot.kernel-cmdline",
      "boot.initrd",
      "boot.secure-boot",
    ]);
    // The quote's qualifiedSigner names this AK (Name = nameAlg ‖ H(TPMT_PUBLIC) under the EK).
    expect(parseTpmPublic(evidence.akPublic).type).toBe("ecc");
    expect(Buffer.from(parseTpmsAttest(evidence.quote).extraData).equals(nonce)).toBe(true);
  });

  it("the same AK is reused across collections (persistent handle)", async () => {
    const again = await good.vtpm.collect(randomBytes(16));
    expect(again.akPublic.equals(Buffer.from(evidence.akPublic))).toBe(true);
  });

  it("a replayed quote (other nonce) fails tpm.nonce only", () => {
    const v = verifyTpmEvidence(evidence, { nonce: randomBytes(32) });
    expect(failed(v.checks)).toEqual(["tpm.nonce"]);
  });

  it("a one-bit change in the signed message or the signature fails the signature", () => {
    const q = Buffer.from(evidence.quote);
    q[q.length - 1] ^= 1;
    expect(failed(verifyTpmEvidence({ ...evidence, quote: q }, { nonce }).checks)).toContain("tpm.quote-signature");
    const s = Buffer.from(evidence.signature);
    s[10] ^= 1;
    expect(failed(verifyTpmEvidence({ ...evidence, signature: s }, { nonce }).checks)).toEqual(["tpm.quote-signature"]);
  });

  it("another key (a software TPM's) does not verify the quote", async () => {
    const other = await SwTpm.start();
    try {
      const ak = await new Vtpm({ tcti: other.tcti }).attestationKey();
      expect(failed(verifyTpmEvidence({ ...evidence, akPublic: ak }, { nonce }).checks)).toEqual([
        "tpm.quote-signature",
      ]);
    } finally {
      await other.stop();
    }
  });

  it("a PCR value that differs from the quoted digest fails tpm.pcr-digest", () => {
    const pcrs = { ...evidence.pcrs!.sha256! };
    pcrs[4] = Buffer.from(pcrs[4]).fill(0x11);
    const v = verifyTpmEvidence({ ...evidence, pcrs: { sha256: pcrs } }, { nonce });
    expect(failed(v.checks)).toEqual(["tpm.pcr-digest", "tpm.event-log-replay"]);
  });

  it("a one-bit change of an event digest, or a removed event, fails the replay and blocks the boot policy", () => {
    const log = Buffer.from(evidence.eventLog!);
    // Flip a bit of the last event's SHA-256 digest (PCR 9 load options).
    const last = good.boot.offsets[good.boot.offsets.length - 1];
    log[last + 12 + 2 + 20 + 2 + 5] ^= 1;
    const v = verifyTpmEvidence({ ...evidence, eventLog: log }, { nonce });
    expect(failed(v.checks)).toEqual(["tpm.event-log-replay"]);
    expect(failed(appraiseMeasuredBoot(v, good.boot.policy))).toEqual(["boot.event-log"]);
    const cut = Buffer.from(evidence.eventLog!).subarray(0, last);
    expect(failed(verifyTpmEvidence({ ...evidence, eventLog: cut }, { nonce }).checks)).toEqual([
      "tpm.event-log-replay",
    ]);
  });

  it("without PCR values in the evidence, the replayed values are checked against the quoted digest", () => {
    const v = verifyTpmEvidence({ ...evidence, pcrs: undefined }, { nonce });
    expect(failed(v.checks)).toEqual([]);
    const log = Buffer.from(evidence.eventLog!);
    log[good.boot.offsets[3] + 40] ^= 1;
    expect(failed(verifyTpmEvidence({ ...evidence, pcrs: undefined, eventLog: log }, { nonce }).checks)).toEqual([
      "tpm.pcr-digest",
    ]);
  });

  it("event data rewritten without its digest (Secure Boot 'enabled' on a disabled boot) is not believed", () => {
    // Relabel the SecureBoot variable's value in the data only: the digest no longer covers the data.
    const log = Buffer.from(evidence.eventLog!);
    const sbEvent = good.boot.offsets[3];
    const size = log.readUInt32LE(sbEvent + 12 + 2 + 20 + 2 + 32);
    const dataStart = sbEvent + 12 + 2 + 20 + 2 + 32 + 4;
    log[dataStart + size - 1] ^= 1;
    const v = verifyTpmEvidence({ ...evidence, eventLog: log }, { nonce });
    expect(failed(v.checks)).toEqual([]); // digests unchanged: the replay still holds …
    const boot = appraiseMeasuredBoot(v, good.boot.policy);
    expect(failed(boot)).toEqual(["boot.secure-boot"]); // … but the data is not what was measured
  });

  it("policy rules each refuse what they should", () => {
    const v = verifyTpmEvidence(evidence, { nonce });
    const p = good.boot.policy;
    const only = (pol: typeof p) => failed(appraiseMeasuredBoot(v, pol));
    expect(only({ ...p, bootApplications: { allowed: p.bootApplications!.allowed.slice(1) } })).toEqual([
      "boot.applications",
    ]);
    expect(
      only({ ...p, bootApplications: { allowed: p.bootApplications!.allowed, required: ["00".repeat(32)] } }),
    ).toEqual(["boot.applications"]);
    expect(only({ ...p, kernelCmdline: { allowed: [DEFAULT_CMDLINE + " init=/bin/sh"] } })).toEqual([
      "boot.kernel-cmdline",
    ]);
    expect(only({ ...p, kernelCmdline: { allowed: [DEFAULT_CMDLINE], mustContain: ["roothash=ffff"] } })).toEqual([
      "boot.kernel-cmdline",
    ]);
    expect(only({ ...p, initrd: [createHash("sha256").update("other").digest("hex")] })).toEqual(["boot.initrd"]);
    expect(only({ ...p, secureBoot: { enabled: false } })).toEqual(["boot.secure-boot"]);
    expect(only({ ...p, secureBoot: { enabled: true, dbx: "00".repeat(32) } })).toEqual(["boot.secure-boot"]);
    expect(only({ ...p, pcrs: { "4": "00".repeat(32) } })).toEqual(["boot.pcrs"]);
    expect(only({ ...p, pcrs: { "4": v.quotedPcrs.sha256![4] } })).toEqual([]);
  });

  it("a boot policy needs its PCRs in the quote", async () => {
    const narrow = new Vtpm({ tcti: good.tpm.tcti, eventLogPath: "/dev/null", pcrs: [0, 7] });
    const e = await narrow.collect(nonce);
    const v = verifyTpmEvidence({ ...asEvidence(e), eventLog: evidence.eventLog }, { nonce });
    expect(failed(v.checks)).toEqual([]);
    const boot = appraiseMeasuredBoot(v, good.boot.policy);
    expect(failed(boot)).toEqual(["boot.applications", "boot.kernel-cmdline", "boot.initrd"]);
    expect(boot.find((c) => c.id === "boot.applications")!.detail).toMatch(/PCR 4 .*not covered/);
  });
});

describe.runIf(run)("swtpm: a VM booted with another command line or OS", () => {
  it("a genuine quote of a boot with init=/bin/sh appended fails only the command-line rule", async () => {
    const b = await bootWith({ cmdline: DEFAULT_CMDLINE + " init=/bin/sh" });
    try {
      const nonce = randomBytes(32);
      const v = verifyTpmEvidence(asEvidence(await b.vtpm.collect(nonce)), { nonce });
      expect(failed(v.checks)).toEqual([]);
      expect(failed(appraiseMeasuredBoot(v, buildBootLog().policy))).toEqual(["boot.kernel-cmdline"]);
    } finally {
      await b.tpm.stop();
    }
  }, 60_000);

  it("a grub command relabelled as the kernel command line is caught (digest is of the command)", async () => {
    const b = await bootWith({
      extraPcr8: [
        {
          data: Buffer.from(`kernel_cmdline: ${DEFAULT_CMDLINE}\0`),
          digest: createHash("sha256").update("something else").digest(),
        },
      ],
      secureBoot: false,
      pcr12Cmdline: "console=ttyS0 init=/bin/sh",
    });
    try {
      const nonce = randomBytes(32);
      const v = verifyTpmEvidence(asEvidence(await b.vtpm.collect(nonce)), { nonce });
      expect(failed(v.checks)).toEqual([]);
      const boot = appraiseMeasuredBoot(v, buildBootLog().policy);
      expect(failed(boot)).toEqual(["boot.kernel-cmdline", "boot.secure-boot"]);
      const detail = boot.find((c) => c.id === "boot.kernel-cmdline")!.detail;
      expect(detail).toMatch(/PCR 8 event \d+ .* not a grub string bound to its digest/);
      expect(detail).toMatch(/PCR 12 event \d+ measured a command line that is not allowed/);
    } finally {
      await b.tpm.stop();
    }
  }, 60_000);
});
