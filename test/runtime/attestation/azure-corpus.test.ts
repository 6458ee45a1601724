// Azure confidential VM evidence from ../shared/evidence/cloud (trustee's az-snp-vtpm / az-tdx-vtpm test
// data): every JSON shape, raw HCL + quote files, the documented non-matching fixtures, mutations, policy,
// appraise() and the `verify azure` CLI.
import { describe, expect, it } from "vitest";
import { readFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { encodeEvent2, encodeSpecIdHeader, EV } from "../../../runtime/attestation/tpm/index.js";
import { hasShared, noteIfSharedMissing, sharedPath } from "../../support/shared.js";
import {
  parseAzureEvidence,
  parseHclReport,
  parseTpmQuoteFile,
  verifyAzure,
  type AzureEvidence,
} from "../../../runtime/attestation/azure/index.js";
import { appraise } from "../../../runtime/attestation/appraise.js";
import { run as verifyAzureCli } from "../../../cli/verify-azure.js";
import { main } from "../../../cli/main.js";

noteIfSharedMissing("Azure CVM evidence tests");
const SNP = "evidence/cloud/azure-snp-vtpm-trustee";
const TDX = "evidence/cloud/azure-tdx-vtpm-trustee";
const file = (...p: string[]) => readFileSync(sharedPath(...p));
const trust = () => ({ snp: { certDir: sharedPath("evidence/trust/amd") } });
const challenge = Buffer.from("challenge");
const failed = (v: { checks: { id: string; ok: boolean }[] }) => v.checks.filter((c) => !c.ok).map((c) => c.id);

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (t: string) => out.push(t), err: (t: string) => err.push(t) }, out, err };
}

/** Evidence JSON files: kind, and whether the TPM quote's extraData is the nonce "challenge". */
const JSON_CASES: Array<[string, "azure-snp" | "azure-tdx", boolean]> = [
  [`${SNP}/evidence-v0.json`, "azure-snp", true],
  [`${SNP}/evidence-v1.json`, "azure-snp", true],
  [`${SNP}/evidence-v2.json`, "azure-snp", false],
  [`${SNP}/evidence-genoa.json`, "azure-snp", false],
  [`${TDX}/evidence-v0.json`, "azure-tdx", true],
  [`${TDX}/evidence-v1.json`, "azure-tdx", true],
];

function snpFiles(quote = "quote.bin"): AzureEvidence {
  return {
    kind: "azure-snp",
    hclReport: file(SNP, "hcl-report.bin"),
    tpmQuote: parseTpmQuoteFile(file(SNP, quote)),
    vcekChainPem: file(SNP, "vcek.pem").toString("utf8"),
  };
}
function tdxFiles(quote = "quote.bin"): AzureEvidence {
  return {
    kind: "azure-tdx",
    hclReport: file(TDX, "hcl-report.bin"),
    tdQuote: file(TDX, "td-quote.bin"),
    tpmQuote: parseTpmQuoteFile(file(TDX, quote)),
  };
}

describe.skipIf(!hasShared)("Azure evidence JSON shapes (trustee)", () => {
  for (const [p, kind, isChallenge] of JSON_CASES) {
    it(`${p.split("/").slice(-2).join("/")}: ${kind} verifies end to end`, async () => {
      const ev = parseAzureEvidence(file(p));
      expect(ev.kind).toBe(kind);
      const v = await verifyAzure(ev, {}, { trust: trust() });
      expect(failed(v)).toEqual([]);
      expect(v.accepted).toBe(true);
      expect(v.simulated).toBe(false);
      const ids = v.checks.map((c) => c.id);
      expect(ids).toEqual(
        expect.arrayContaining([
          "azure.runtime-binding",
          "vtpm.attestation-key",
          "vtpm.quote-signature",
          "vtpm.pcr-digest",
        ]),
      );
      expect(ids).toEqual(
        expect.arrayContaining(
          kind === "azure-snp" ? ["snp.signature", "snp.chip-id"] : ["tdx.quote-signature", "azure.td-report-match"],
        ),
      );
      expect(Object.keys(v.claims?.extra.pcrs as object)).toHaveLength(24);
      expect(v.claims?.platform).toBe(kind);
      // The verifier nonce in the TPM quote: "challenge" in these fixtures, except v2 and genoa.
      const withNonce = await verifyAzure(ev, {}, { trust: trust(), tpmNonce: challenge });
      expect(withNonce.accepted).toBe(isChallenge);
      if (!isChallenge) expect(failed(withNonce)).toEqual(["vtpm.nonce"]);
    });
  }
});

describe.skipIf(!hasShared)("Azure raw files", () => {
  it("SNP: hcl-report.bin + bincode quote.bin + vcek.pem (VCEK, ASK, ARK) verify without any AMD directory", async () => {
    const v = await verifyAzure(snpFiles(), {}, { tpmNonce: challenge });
    expect(failed(v)).toEqual([]);
    expect(v.claims?.extra.tpmExtraData).toBe(challenge.toString("hex"));
  });

  it("SNP: the same HCL report with the JSON TPM quote", async () => {
    expect((await verifyAzure(snpFiles("tpm-quote-v1.json"), {}, { tpmNonce: challenge })).accepted).toBe(true);
  });

  it("SNP: the HCL report binds its runtime claims (REPORT_DATA = SHA-256(JSON) ‖ 0^32)", () => {
    const hcl = parseHclReport(file(SNP, "hcl-report.bin"));
    expect(hcl.type).toBe("snp");
    expect(hcl.hashType).toBe(1);
    expect(hcl.runtimeClaims.keys.map((k) => k.kid)).toEqual(["HCLAkPub", "HCLEkPub"]);
  });

  it("TDX: hcl-report.bin + td-quote.bin + quote.bin verify and describe the same TD", async () => {
    const v = await verifyAzure(tdxFiles(), {}, { tpmNonce: challenge });
    expect(failed(v)).toEqual([]);
    expect(v.checks.find((c) => c.id === "azure.td-report-match")?.detail).toMatch(/same TD/);
    expect(v.claims?.measurement).toHaveLength(96);
    expect(v.claims?.rtmrs).toHaveLength(4);
  });

  it("documented non-match: tpm-quote.msg/.sig was made by a key none of the samples carries", async () => {
    const ev = snpFiles();
    const v = await verifyAzure(
      {
        ...ev,
        tpmQuote: { ...ev.tpmQuote, message: file(SNP, "tpm-quote.msg"), signature: file(SNP, "tpm-quote.sig") },
      },
      {},
      {},
    );
    expect(v.accepted).toBe(false);
    expect(failed(v)).toContain("vtpm.quote-signature");
  });

  it("non-matching pairings are refused: another VM's TPM quote, another TD's quote", async () => {
    const genoa = parseAzureEvidence(file(SNP, "evidence-genoa.json"));
    const v1 = await verifyAzure({ ...snpFiles(), tpmQuote: genoa.tpmQuote }, {}, {});
    expect(failed(v1)).toContain("vtpm.quote-signature");

    const v2 = await verifyAzure(
      { ...tdxFiles(), tdQuote: file("evidence/tdx/trustee-tdx-quote-5/quote.bin") } as AzureEvidence,
      {},
      {},
    );
    expect(failed(v2)).toEqual(expect.arrayContaining(["azure.runtime-binding", "azure.td-report-match"]));

    const v3 = await verifyAzure(
      { ...snpFiles(), kind: "azure-tdx", tdQuote: file(TDX, "td-quote.bin") } as AzureEvidence,
      {},
      {},
    );
    expect(failed(v3)).toEqual(["azure.hcl"]);
  });

  it("documented non-match: the kinvolk HCL report with certs.pem of a different chip is refused", async () => {
    const ev: AzureEvidence = {
      kind: "azure-snp",
      hclReport: file("evidence/snp/azure-kinvolk-hcl/hcl-report.bin"),
      tpmQuote: snpFiles().tpmQuote,
      vcekChainPem:
        file("evidence/snp/azure-kinvolk-hcl/vcek.pem").toString("utf8") +
        file("evidence/snp/azure-kinvolk-hcl/ask_ark.pem").toString("utf8"),
    };
    const v = await verifyAzure(ev, {}, {});
    expect(v.accepted).toBe(false);
    // Its runtime claims are bound correctly; the hardware signature is what fails.
    expect(v.checks.find((c) => c.id === "azure.runtime-binding")?.ok).toBe(true);
    expect(failed(v)).toEqual(expect.arrayContaining(["snp.signature", "vtpm.quote-signature"]));
  });
});

describe.skipIf(!hasShared)("Azure mutations", () => {
  const hclWithJsonEdit = (path: string, from: string, to: string) => {
    const b = Buffer.from(file(...path.split("|")));
    const at = b.indexOf(from);
    expect(at).toBeGreaterThan(0);
    Buffer.from(to).copy(b, at);
    return b;
  };

  it("SNP: editing the runtime JSON (unsigned) breaks the hardware binding", async () => {
    const hcl = hclWithJsonEdit(`${SNP}|hcl-report.bin`, "911B0EF8", "911C0EF8");
    const v = await verifyAzure({ ...snpFiles(), hclReport: hcl }, {}, {});
    expect(failed(v)).toContain("azure.runtime-binding");
  });

  it("TDX: editing the runtime JSON breaks the TD quote binding", async () => {
    const hcl = hclWithJsonEdit(`${TDX}|hcl-report.bin`, "6332533D", "6332533E");
    const v = await verifyAzure({ ...tdxFiles(), hclReport: hcl }, {}, {});
    expect(failed(v)).toContain("azure.runtime-binding");
  });

  it("a changed PCR value no longer matches the quoted digest; a flipped TPMS_ATTEST byte breaks the signature", async () => {
    const ev = snpFiles();
    const pcrs = { ...ev.tpmQuote.pcrs, 7: Buffer.alloc(32, 1) };
    expect(failed(await verifyAzure({ ...ev, tpmQuote: { ...ev.tpmQuote, pcrs } }, {}, {}))).toEqual([
      "vtpm.pcr-digest",
    ]);
    const msg = Buffer.from(ev.tpmQuote.message);
    msg[msg.length - 1] ^= 1;
    expect(failed(await verifyAzure({ ...ev, tpmQuote: { ...ev.tpmQuote, message: msg } }, {}, {}))).toEqual(
      expect.arrayContaining(["vtpm.quote-signature"]),
    );
  });

  it("a flipped bit in the SNP report inside the HCL report breaks its signature", async () => {
    const hcl = Buffer.from(file(SNP, "hcl-report.bin"));
    hcl[0x20 + 0x90] ^= 0x80; // MEASUREMENT
    const v = await verifyAzure({ ...snpFiles(), hclReport: hcl }, {}, {});
    expect(failed(v)).toContain("snp.signature");
  });

  it("a missing PCR value is reported, not skipped", async () => {
    const ev = snpFiles();
    const pcrs = { ...ev.tpmQuote.pcrs };
    delete pcrs[3];
    expect(failed(await verifyAzure({ ...ev, tpmQuote: { ...ev.tpmQuote, pcrs } }, {}, {}))).toEqual([
      "vtpm.pcr-digest",
    ]);
  });
});

describe.skipIf(!hasShared)("Azure policy and appraise()", () => {
  it("PCR allow-lists, secure boot and console rules", async () => {
    const ev = snpFiles();
    const pcr0 = Buffer.from(ev.tpmQuote.pcrs[0]).toString("hex");
    const ok = await verifyAzure(ev, { azure: { pcrs: { "0": [pcr0] }, requireSecureBoot: true } }, {});
    expect(failed(ok)).toEqual([]);
    const bad = await verifyAzure(ev, { azure: { pcrs: { "0": ["00".repeat(32)] }, forbidConsole: true } }, {});
    expect(failed(bad).sort()).toEqual(["policy.console", "policy.pcr0"]);
  });

  it("SNP and TDX policies apply to the hardware part", async () => {
    const v = await verifyAzure(snpFiles(), { snp: { measurements: ["00".repeat(48)] } }, {});
    expect(failed(v)).toContain("policy.measurement");
    const t = await verifyAzure(tdxFiles(), { tdx: { mrTd: ["00".repeat(48)] } }, {});
    expect(failed(t)).toEqual(["policy.mrtd"]);
  });

  it("the workload binding is the runtime claims' user-data", async () => {
    const ev = snpFiles();
    expect((await verifyAzure(ev, {}, { expectedReportData: new Uint8Array(64), tpmNonce: challenge })).accepted).toBe(
      true,
    );
    const v = await verifyAzure(ev, {}, { expectedReportData: Buffer.alloc(64, 1), tpmNonce: challenge });
    expect(failed(v)).toEqual(["policy.report-data"]);
    // Without an explicit nonce, the TPM quote must carry SHA-256(expected REPORT_DATA) (the enclaivelet's convention).
    expect(failed(await verifyAzure(ev, {}, { expectedReportData: new Uint8Array(64) }))).toEqual(["vtpm.nonce"]);
    const req = await verifyAzure(ev, { requireReportDataBinding: true }, {});
    expect(failed(req)).toEqual(["policy.report-data"]);
  });

  it("appraise() dispatches azure-snp, azure-tdx and tdx evidence to these verifiers", async () => {
    const a = await appraise(snpFiles(), {}, { trust: {} });
    expect(a.accepted).toBe(true);
    expect(a.claims?.platform).toBe("azure-snp");
    const b = await appraise(tdxFiles(), {}, { trust: {} });
    expect(b.accepted).toBe(true);
    const c = await appraise(
      { kind: "tdx", quote: file("evidence/tdx/trustee-tdx-quote-4/quote.bin") },
      {},
      { trust: {} },
    );
    expect(c.accepted).toBe(false);
    expect(failed(c)).toEqual(["policy.debug"]);
  });
});

describe.skipIf(!hasShared)("buckypaper verify azure", () => {
  it("--evidence JSON with the nonce: exit 0; wrong nonce: exit 1 naming vtpm.nonce", async () => {
    const c = capture();
    const base = [
      "--evidence",
      sharedPath(SNP, "evidence-v1.json"),
      "--amd-certs",
      sharedPath("evidence/trust/amd"),
      "--offline",
    ];
    expect(await verifyAzureCli([...base, "--nonce-text", "challenge"], c.io)).toBe(0);
    expect(c.out.join("\n")).toMatch(/Azure SEV-SNP CVM evidence: ACCEPTED/);
    const r = capture();
    expect(await verifyAzureCli([...base, "--nonce", "00ff"], r.io)).toBe(1);
    expect(r.out.join("\n")).toMatch(/\[FAIL\] vtpm\.nonce/);
  });

  it("without AMD certificates and offline, a VCEK-only evidence file cannot chain (exit 1)", async () => {
    const c = capture();
    expect(await verifyAzureCli(["--evidence", sharedPath(SNP, "evidence-v0.json"), "--offline"], c.io)).toBe(1);
    expect(c.out.join("\n")).toMatch(/\[FAIL\] snp\./);
  });

  it("raw files for TDX, --json output", async () => {
    const c = capture();
    const code = await verifyAzureCli(
      [
        "--hcl-report",
        sharedPath(TDX, "hcl-report.bin"),
        "--tpm-quote",
        sharedPath(TDX, "tpm-quote-v1.json"),
        "--td-quote",
        sharedPath(TDX, "td-quote.bin"),
        "--offline",
        "--json",
        "--nonce-text",
        "challenge",
      ],
      c.io,
    );
    expect(code).toBe(0);
    const v = JSON.parse(c.out.join(""));
    expect(v.claims.platform).toBe("azure-tdx");
    expect(v.claims.extra.vmConfiguration["tpm-enabled"]).toBe(true);
  });

  it("a policy file with an azure section", async () => {
    const dir = mkdtempSync("/tmp/bk-az-policy-");
    writeFileSync(`${dir}/p.json`, JSON.stringify({ azure: { forbidConsole: true } }));
    const c = capture();
    expect(
      await verifyAzureCli(
        [
          "--hcl-report",
          sharedPath(SNP, "hcl-report.bin"),
          "--tpm-quote",
          sharedPath(SNP, "quote.bin"),
          "--vcek",
          sharedPath(SNP, "vcek.pem"),
          "--offline",
          "--policy",
          `${dir}/p.json`,
        ],
        c.io,
      ),
    ).toBe(1);
    expect(c.out.join("\n")).toMatch(/\[FAIL\] policy\.console/);
    writeFileSync(`${dir}/bad.json`, JSON.stringify({ azure: { pcrs: { "24": [] } } }));
    await expect(
      verifyAzureCli(["--evidence", sharedPath(SNP, "evidence-v1.json"), "--policy", `${dir}/bad.json`], c.io),
    ).rejects.toThrow(/PCR index must be 0..23/);
  });

  it("real evidence with azure.measuredBoot: refused without an event log (tpm.event-log) and with one that does not replay to its quote (tpm.event-log-replay)", async () => {
    const dir = mkdtempSync(`${tmpdir()}/bk-azure-mb-`);
    const uki = "ab".repeat(32);
    writeFileSync(
      `${dir}/mb.json`,
      JSON.stringify({ azure: { measuredBoot: { bootApplications: { allowed: [uki], required: [uki] } } } }),
    );
    // A well-formed log (what a guest could send) whose events are not this VM's: the real quote's PCRs differ.
    const log = Buffer.concat([
      encodeSpecIdHeader(["sha256"]),
      encodeEvent2(4, EV.EFI_BOOT_SERVICES_APPLICATION, [["sha256", Buffer.from(uki, "hex")]], Buffer.alloc(32)),
    ]);
    writeFileSync(`${dir}/log.bin`, log);
    const base = ["--evidence", sharedPath(SNP, "evidence-v1.json"), "--amd-certs", sharedPath("evidence/trust/amd")];
    const run = async (extra: string[]) => {
      const c = capture();
      const code = await verifyAzureCli(
        [...base, "--offline", "--nonce-text", "challenge", "--policy", `${dir}/mb.json`, ...extra],
        c.io,
      );
      return { code, out: c.out.join("\n") };
    };
    const none = await run([]);
    expect(none.code).toBe(1);
    expect(none.out).toMatch(/\[FAIL\] tpm\.event-log: no TCG event log/);
    expect(none.out).not.toMatch(/\[FAIL\] (snp|vtpm)\./);
    const forged = await run(["--event-log", `${dir}/log.bin`]);
    expect(forged.code).toBe(1);
    expect(forged.out).toMatch(/\[ok\] tpm\.event-log: crypto-agile event log, 1 events/);
    expect(forged.out).toMatch(/\[FAIL\] tpm\.event-log-replay/);
    // Without the boot policy the same evidence is accepted as before (the log is not read).
    const c = capture();
    expect(
      await verifyAzureCli([...base, "--offline", "--nonce-text", "challenge", "--event-log", `${dir}/log.bin`], c.io),
    ).toBe(0);
  });

  it("usage errors and unreadable evidence exit 2", async () => {
    const c = capture();
    expect(await main(["verify", "azure"], c.io)).toBe(2);
    expect(await main(["verify", "azure", "--evidence", "/nonexistent.json"], c.io)).toBe(2);
    expect(
      await main(["verify", "azure", "--evidence", sharedPath("evidence/tdx/trustee-tdx-quote-4/quote.bin")], c.io),
    ).toBe(2);
    expect(c.err.join("\n")).toMatch(/not JSON/);
  });
});
