// appraise() as the single entry point: digest, dispatch by evidence kind (SNP here; TDX and Azure reach
// their modules and get the shared REPORT_DATA check), unknown kinds and malformed evidence objects.
import { describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { noteIfSharedMissing, sharedPath } from "../../support/shared.js";
import { appraise } from "../../../runtime/attestation/appraise.js";
import { DEFAULT_POLICY, PolicyError, parsePolicy } from "../../../runtime/attestation/policy.js";
import * as api from "../../../runtime/attestation/index.js";
import * as sim from "../../../runtime/sim/index.js";

const failed = (v: { checks: { id: string; ok: boolean }[] }) => v.checks.filter((c) => !c.ok).map((c) => c.id);

describe("appraise() dispatch", () => {
  it("refuses unknown kinds and malformed evidence objects with a named check", async () => {
    const unknown = await appraise({ kind: "sgx" } as never, DEFAULT_POLICY, { trust: {} });
    expect(unknown).toMatchObject({ accepted: false, simulated: false });
    expect(failed(unknown)).toEqual(["evidence.kind"]);
    const broken = await appraise({ kind: "snp", report: 42 } as never, DEFAULT_POLICY, { trust: {} });
    expect(failed(broken)).toEqual(["evidence.format"]);
    const short = await appraise({ kind: "snp", report: new Uint8Array(10) }, DEFAULT_POLICY, { trust: {} });
    expect(short.accepted).toBe(false);
    expect(short.checks.find((c) => c.id === "snp.report")!.detail).toMatch(/expected 1184 bytes, got 10/);
    expect(short.evidenceDigest).toBe(createHash("sha384").update(new Uint8Array(10)).digest("hex"));
  });

  it("azure evidence reaches the Azure module", async () => {
    const v = await appraise(
      {
        kind: "azure-snp",
        hclReport: new Uint8Array(16),
        tpmQuote: { message: new Uint8Array(), signature: new Uint8Array(), pcrs: {} },
      },
      DEFAULT_POLICY,
      { trust: {} },
    );
    expect(v.accepted).toBe(false);
    expect(v.checks[0].id).toMatch(/^azure\./);
  });

  (noteIfSharedMissing("TDX dispatch test") ? it : it.skip)(
    "TDX quotes reach the TDX module and get the REPORT_DATA binding check",
    async () => {
      const quote = readFileSync(sharedPath("evidence", "tdx", "go-tdx-guest-spr-e4-v4", "quote.bin"));
      const v = await appraise({ kind: "tdx", quote }, {}, { trust: {} });
      expect(v.checks.some((c) => c.id.startsWith("tdx."))).toBe(true);
      expect(v.claims?.platform).toBe("tdx");
      const rd = Buffer.from(v.claims!.reportData, "hex");
      const bound = await appraise({ kind: "tdx", quote }, {}, { trust: {}, expectedReportData: rd });
      expect(bound.checks.find((c) => c.id === "policy.report-data")).toMatchObject({ ok: true });
      expect(bound.accepted).toBe(v.accepted);
      const wrong = Buffer.from(rd);
      wrong[0] ^= 1;
      const unbound = await appraise({ kind: "tdx", quote }, {}, { trust: {}, expectedReportData: wrong });
      expect(unbound.accepted).toBe(false);
      expect(unbound.checks.find((c) => c.id === "policy.report-data")).toMatchObject({ ok: false });
    },
  );
});

describe("policy documents", () => {
  it("parses a full SNP policy and names the field of every error", () => {
    const p = parsePolicy({
      snp: {
        measurements: ["AB".repeat(48)],
        allowDebug: false,
        vmpl: 0,
        minTcb: { bootloader: 3, microcode: 115 },
        hostData: "0x" + "00".repeat(32),
        products: ["milan", "Turin"],
        minAbi: { major: 1, minor: 51 },
      },
      requireReportDataBinding: true,
    });
    expect(p.snp?.measurements).toEqual(["ab".repeat(48)]);
    expect(p.snp?.products).toEqual(["Milan", "Turin"]);
    const bad: Array<[unknown, RegExp]> = [
      [{ snp: { measurements: ["ab"] } }, /snp\.measurements\[0\]: expected 48 bytes/],
      [{ snp: { vmpl: 4 } }, /snp\.vmpl: expected an integer 0\.\.3/],
      [{ snp: { minTcb: { spl4: 1 } } }, /snp\.minTcb\.spl4: unknown TCB component/],
      [{ snp: { products: ["Naples"] } }, /snp\.products\[0\]: unknown product/],
      [{ snp: { debug: true } }, /snp\.debug: unknown field/],
      [{ nonsense: 1 }, /nonsense: unknown field/],
    ];
    for (const [doc, msg] of bad) {
      expect(() => parsePolicy(doc)).toThrow(PolicyError);
      expect(() => parsePolicy(doc)).toThrow(msg);
    }
  });

  it("the package index exposes the SNP library and the simulator", () => {
    for (const name of [
      "appraise",
      "parseReport",
      "parseCertTable",
      "verifySnp",
      "KdsClient",
      "PINNED_ARK_SHA256",
      "reportDataFor",
    ]) {
      expect(typeof (api as Record<string, unknown>)[name], name).not.toBe("undefined");
    }
    // The simulator moved to runtime/sim (never reached from server code paths by import).
    expect(typeof sim.createSnpSimulator).toBe("function");
  });
});
