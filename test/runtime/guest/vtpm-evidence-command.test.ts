// `enclaivelet vtpm-evidence`: the vTPM half of `run`'s evidence for a caller's nonce, against a real software TPM
// (swtpm through tpm2-tools) with a measured boot extended into it. The printed JSON goes through the runtime's wire
// decoder and the attestation library: signature, nonce, PCR digest, replay and the boot policy. The guest test
// (test/images/guest/cloud-disk-boot.test.ts) runs the same subcommand inside the booted cloud disk.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { SwTpm, haveSwtpm } from "../../support/swtpm.js";
import { run } from "../../../runtime/guest/command.js";
import { decodeWireVtpm } from "../../../runtime/protocol/evidence.js";
import { appraiseMeasuredBoot, verifyTpmEvidence } from "../../../runtime/attestation/tpm/index.js";
import { BOOT_PCRS } from "../../../runtime/guest/evidence/vtpm.js";
import { buildBootLog, type BootLog } from "../attestation/tpm-fixtures.js";

const failed = (checks: { id: string; ok: boolean }[]) => checks.filter((c) => !c.ok).map((c) => c.id);

async function command(argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await run(argv, { out: (t) => out.push(t), err: (t) => err.push(t) });
  return { code, out, err };
}

describe.runIf(haveSwtpm())("enclaivelet vtpm-evidence (swtpm)", () => {
  let tpm: SwTpm;
  let boot: BootLog;
  const dir = mkdtempSync(path.join(tmpdir(), "bp-vtpm-cmd-"));
  const config = path.join(dir, "enclaivelet.json");

  beforeAll(async () => {
    tpm = await SwTpm.start();
    boot = buildBootLog({});
    for (const [pcr, d] of boot.extends) tpm.extend(pcr, d);
    const log = path.join(dir, "binary_bios_measurements");
    writeFileSync(log, boot.log);
    writeFileSync(
      config,
      JSON.stringify({
        runtimeUrl: "https://runtime.invalid",
        runtimeCaSha256: "0".repeat(64),
        workloadId: "vtpm-cmd",
        evidence: { vtpm: { tcti: tpm.tcti, eventLogPath: log } },
      }),
    );
  }, 60_000);
  afterAll(async () => {
    await tpm?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("prints evidence.vtpm that verifies for its nonce (and only its nonce) and satisfies the boot policy", async () => {
    const nonce = randomBytes(32);
    const r = await command(["vtpm-evidence", "--nonce", nonce.toString("hex"), "--config", config]);
    expect(r.err).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.out).toHaveLength(1);
    const printed = JSON.parse(r.out[0]) as Record<string, unknown>;
    expect(Object.keys(printed)).toEqual(["vtpm"]);
    const ev = decodeWireVtpm(printed.vtpm, "vtpm");
    expect(Object.keys(ev.pcrs?.sha256 ?? {}).map(Number)).toEqual(BOOT_PCRS);
    expect(Buffer.from(ev.eventLog!)).toEqual(boot.log);
    const v = verifyTpmEvidence(ev, { nonce });
    expect(failed(v.checks)).toEqual([]);
    expect(failed(appraiseMeasuredBoot(v, boot.policy))).toEqual([]);
    expect(failed(verifyTpmEvidence(ev, { nonce: randomBytes(32) }).checks)).toEqual(["tpm.nonce"]);
    // The AK is the persisted one `run` binds into REPORT_DATA: a second call quotes with the same key.
    const again = await command(["vtpm-evidence", "--nonce", "ab", "--config", config]);
    expect(again.code).toBe(0);
    expect(Buffer.from(decodeWireVtpm(JSON.parse(again.out[0]).vtpm, "vtpm").akPublic)).toEqual(
      Buffer.from(ev.akPublic),
    );
  }, 60_000);

  it("refuses a nonce that is not 1..64 bytes of hex, naming the flag", async () => {
    for (const bad of [[], ["--nonce", ""], ["--nonce", "abc"], ["--nonce", "zz"], ["--nonce", "00".repeat(65)]]) {
      const r = await command(["vtpm-evidence", ...bad, "--config", config]);
      expect(r.code, bad.join(" ")).toBe(2);
      expect(r.err.join("\n")).toContain("--nonce: must be 1..64 bytes in hex");
    }
  });

  it.runIf(!existsSync("/dev/tpmrm0"))(
    "without a config it uses device:/dev/tpmrm0 and fails with a named step where there is none",
    async () => {
      const r = await command(["vtpm-evidence", "--nonce", "00"]);
      expect(r.code).toBe(1);
      expect(r.out.join("\n")).toMatch(/"reason":"vtpm".*vtpm: create-ek/);
    },
  );
});
