// Deploy-time prediction of vTPM boot events from real boot inputs (the Debian kernel and initrd that
// scripts/fetch-boot-inputs.sh fetches into .bk/boot): the predicted policy accepts the event log such a boot
// produces and refuses one with another kernel, initrd or command line.
import { describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import path from "node:path";
import { repoRoot } from "../support/shared.js";
import { authenticodeDigest, authenticodeSha384, predictMeasuredBoot } from "../../images/index.js";
import { appraiseMeasuredBoot, parseEventLog, type TpmVerification } from "../../runtime/attestation/tpm/index.js";
import { buildBootLog, DEFAULT_CMDLINE } from "../runtime/attestation/tpm-fixtures.js";

const boot = path.join(repoRoot, ".bk/boot");
const ready = existsSync(path.join(boot, "vmlinuz")) && existsSync(path.join(boot, "initrd.img"));
if (!ready) console.warn("[skip] vtpm-predict: no .bk/boot (run scripts/fetch-boot-inputs.sh)");

/** What verifyTpmEvidence returns for a quote covering every PCR the log replays to (quote checks: tpm-swtpm). */
const replayedAll = (log: Buffer): TpmVerification => ({
  checks: [],
  log: parseEventLog(log),
  quotedPcrs: {},
  replayed: { sha256: Array.from({ length: 24 }, (_, i) => i) },
});
const failed = (cs: { id: string; ok: boolean }[]) => cs.filter((c) => !c.ok).map((c) => c.id);

describe.runIf(ready)("predictMeasuredBoot over the real Debian kernel", () => {
  const kernel = ready ? readFileSync(path.join(boot, "vmlinuz")) : Buffer.alloc(0);
  const initrd = ready ? readFileSync(path.join(boot, "initrd.img")) : Buffer.alloc(0);
  const policy = ready
    ? predictMeasuredBoot({
        bootApplications: [{ name: "kernel", image: kernel }],
        cmdline: DEFAULT_CMDLINE,
        initrd,
        mustContain: ["roothash=4f1e0c6b"],
        secureBoot: true,
      })
    : {};

  it("uses the same Authenticode hashing as the TDX engine (checked there against an independent implementation)", () => {
    expect(authenticodeDigest(kernel, "sha384").equals(authenticodeSha384(kernel))).toBe(true);
    expect(policy.bootApplications!.required).toEqual([authenticodeDigest(kernel, "sha256").toString("hex")]);
    expect(policy.initrd).toEqual([createHash("sha256").update(initrd).digest("hex")]);
  });

  it("accepts the event log of that boot and refuses another kernel, initrd or command line", () => {
    const apps = [authenticodeDigest(kernel, "sha256").toString("hex")];
    const good = buildBootLog({ apps, initrd });
    expect(failed(appraiseMeasuredBoot(replayedAll(good.log), policy))).toEqual([]);
    const other = Buffer.from(kernel);
    other[other.length >> 1] ^= 1; // inside a section (the signature at the end is not hashed)
    const otherKernel = buildBootLog({ apps: [authenticodeDigest(other, "sha256").toString("hex")], initrd });
    expect(failed(appraiseMeasuredBoot(replayedAll(otherKernel.log), policy))).toEqual(["boot.applications"]);
    const otherInitrd = buildBootLog({ apps, initrd: Buffer.concat([initrd, Buffer.from([0])]) });
    expect(failed(appraiseMeasuredBoot(replayedAll(otherInitrd.log), policy))).toEqual(["boot.initrd"]);
    const shell = buildBootLog({ apps, initrd, cmdline: DEFAULT_CMDLINE + " init=/bin/sh" });
    expect(failed(appraiseMeasuredBoot(replayedAll(shell.log), policy))).toEqual(["boot.kernel-cmdline"]);
  });

  it("names the field when the inputs cannot bind the OS", () => {
    expect(() => predictMeasuredBoot({ bootApplications: [], cmdline: "x" })).toThrow(/bootApplications: at least/);
    expect(() =>
      predictMeasuredBoot({
        bootApplications: [{ name: "k", image: kernel }],
        cmdline: "ro",
        mustContain: ["roothash="],
      }),
    ).toThrow(/cmdline: does not contain 'roothash='/);
    expect(() =>
      predictMeasuredBoot({ bootApplications: [{ name: "k", image: Buffer.from("MZ nope") }], cmdline: "x" }),
    ).toThrow(/not a PE\/COFF EFI image/);
  });
});
