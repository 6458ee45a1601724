// Genuine Intel TDX quotes from ../shared/evidence: manifest verdicts, one-bit negatives, PCS collateral,
// and the `verify tdx` CLI on them.
import { describe, expect, it } from "vitest";
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { hasShared, noteIfSharedMissing, repoRoot, sharedPath } from "../../support/shared.js";
import {
  INTEL_SGX_ROOT_CA_SHA256,
  emptyCollateral,
  loadCollateralDir,
  parseQuote,
  verifyTdx,
} from "../../../runtime/attestation/tdx/index.js";
import { matchPlatformLevel, rawJsonMember } from "../../../runtime/attestation/tdx/collateral.js";
import { parsePckExtension, pemCertificates } from "../../../runtime/attestation/tdx/pck.js";
import { createHash } from "node:crypto";
import { run as verifyTdxCli } from "../../../cli/verify-tdx.js";
import { main } from "../../../cli/main.js";

interface ManifestRow {
  kind: string;
  case: string;
  version: number;
  verifies: boolean;
  product: string;
}

const shared = noteIfSharedMissing("TDX corpus tests");
const manifest: ManifestRow[] = shared ? JSON.parse(readFileSync(sharedPath("evidence/manifest.json"), "utf8")) : [];
const tdxCases = manifest.filter((r) => r.kind === "tdx");
const quote = (c: string) => readFileSync(sharedPath("evidence/tdx", c, "quote.bin"));
const failed = (v: { checks: { id: string; ok: boolean }[] }) => v.checks.filter((c) => !c.ok).map((c) => c.id);

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (t: string) => out.push(t), err: (t: string) => err.push(t) }, out, err };
}

/** Cases the default policy must refuse although they are authentic: TD launched with DEBUG. */
const DEBUG_CASES = new Set(["trustee-tdx-quote-4"]);

describe.skipIf(!hasShared)("TDX manifest cases", () => {
  it("the corpus has TDX cases", () => expect(tdxCases.length).toBeGreaterThanOrEqual(3));

  it("pins the fingerprint of the Intel SGX Root CA shipped in trust/intel", () => {
    const [der] = pemCertificates(readFileSync(sharedPath("evidence/trust/intel/Intel_SGX_Root_CA.pem"), "utf8"));
    expect(createHash("sha256").update(der).digest("hex")).toBe(INTEL_SGX_ROOT_CA_SHA256);
  });

  for (const row of tdxCases) {
    it(`${row.case}: v${row.version} signature chain ${row.verifies ? "verifies" : "fails"}`, async () => {
      const q = parseQuote(quote(row.case));
      expect(q.header.version).toBe(row.version);
      const v = await verifyTdx(quote(row.case));
      const crypto = v.checks.filter((c) => c.id.startsWith("tdx."));
      expect(crypto.every((c) => c.ok)).toBe(row.verifies);
      expect(v.simulated).toBe(false);
      if (row.verifies) {
        expect(v.claims?.extra.fmspc).toBe(row.product.replace(/^FMSPC /, "").toLowerCase());
        // Authentic, but a debug TD is refused by the default policy, and the reason says so.
        if (DEBUG_CASES.has(row.case)) {
          expect(v.accepted).toBe(false);
          expect(failed(v)).toEqual(["policy.debug"]);
          expect(v.checks.find((c) => c.id === "policy.debug")?.detail).toMatch(/DEBUG is set/);
          expect(v.claims?.debug).toBe(true);
          // ...and accepted when the policy explicitly allows debug TDs.
          expect((await verifyTdx(quote(row.case), { policy: { allowDebug: true } })).accepted).toBe(true);
        } else {
          expect(v.accepted).toBe(true);
          expect(v.claims?.debug).toBe(false);
        }
      } else {
        expect(v.accepted).toBe(false);
      }
    });
  }

  it("reads the README fields of go-tdx-guest-spr-e4-v4 (v4, 39 unsigned trailing bytes)", () => {
    const q = parseQuote(quote("go-tdx-guest-spr-e4-v4"));
    const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
    expect(hex(q.body.mrTd)).toBe(
      "6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb",
    );
    expect(hex(q.body.rtmrs[0])).toBe(
      "2927da70461cd63266f43230cc1849c03ef25ebe490062a801d8fcc80af42976823adf08f833c1e50b51779c6593f32a",
    );
    expect(hex(q.body.teeTcbSvn)).toBe("03000400000000000000000000000000");
    expect(hex(q.qeReport.mrSigner)).toBe("dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5");
    expect(q.trailingBytes).toBe(39);
    const [leaf] = pemCertificates(q.pckChainPem);
    const ext = parsePckExtension(leaf);
    expect(ext).toMatchObject({ fmspc: "50806f000000", pceId: "0000", pceSvn: 11 });
    expect(hex(ext.cpuSvn)).toBe("03030202020100020000000000000000");
    // Intel's PCK certificates name the platform: the PPID peer unseal holds slots by.
    expect(ext.ppid).toBe("089ddfdb9c0359c82a3bc7719239574e");
  });

  it("reads trustee-tdx-quote-5 as v5 with a TD report 1.5 body", () => {
    const q = parseQuote(quote("trustee-tdx-quote-5"));
    expect(q.bodyType).toBe(3);
    expect(q.body.teeTcbSvn2).toHaveLength(16);
    expect(q.body.mrServiceTd).toHaveLength(48);
    expect(Buffer.from(q.body.teeTcbSvn).toString("hex")).toBe("05010200000000000000000000000000");
  });

  it("policy: MRTD and RTMR allow-lists, REPORTDATA, minimum TEE_TCB_SVN", async () => {
    const q = parseQuote(quote("go-tdx-guest-spr-e4-v4"));
    const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
    const good = await verifyTdx(quote("go-tdx-guest-spr-e4-v4"), {
      policy: {
        mrTd: [hex(q.body.mrTd).toUpperCase()],
        rtmr0: [hex(q.body.rtmrs[0])],
        reportData: hex(q.body.reportData),
        minTeeTcbSvn: "03000400000000000000000000000000",
      },
    });
    expect(good.accepted).toBe(true);
    const bad = await verifyTdx(quote("go-tdx-guest-spr-e4-v4"), {
      policy: {
        mrTd: ["00".repeat(48)],
        rtmr1: ["11".repeat(48)],
        reportData: "22".repeat(64),
        minTeeTcbSvn: "03000500000000000000000000000000",
      },
    });
    expect(bad.accepted).toBe(false);
    expect(failed(bad).sort()).toEqual(["policy.mrtd", "policy.report-data", "policy.rtmr1", "policy.tee-tcb-svn"]);
    expect(bad.checks.find((c) => c.id === "policy.tee-tcb-svn")?.detail).toMatch(/component\(s\) 2/);
  });
});

/** Which check a one-bit flip of each named field must break. */
const NEGATIVE_EXPECT: Record<string, string> = {
  attest_key: "tdx.quote-signature",
  header_user_data: "tdx.quote-signature",
  mr_td: "tdx.quote-signature",
  pck_leaf_sig_region: "tdx.pck-chain",
  qe_auth_data: "tdx.qe-binding",
  qe_report_data: "tdx.qe-report-signature",
  qe_report_mrsigner: "tdx.qe-identity",
  qe_sig: "tdx.qe-report-signature",
  quote_sig: "tdx.quote-signature",
  report_data: "tdx.quote-signature",
  rtmr0: "tdx.quote-signature",
  td_attributes: "tdx.quote-signature",
  body_type: "tdx.parse",
};

describe.skipIf(!hasShared)("TDX negatives (one-bit mutations of genuine quotes)", () => {
  const dir = shared ? sharedPath("evidence/tdx/negatives") : "";
  const files = shared && existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".bin")) : [];
  it("there are negatives", () => expect(files.length).toBeGreaterThan(5));
  for (const f of files) {
    it(`${f} is rejected for the right reason`, async () => {
      const v = await verifyTdx(readFileSync(`${dir}/${f}`), { policy: { allowDebug: true } });
      expect(v.accepted).toBe(false);
      const field = f.replace(/\.bin$/, "").split("__")[1] ?? "";
      const fails = failed(v);
      // A cryptographic (or format) check fails, never only a policy check.
      expect(fails.some((id) => id.startsWith("tdx."))).toBe(true);
      const want = NEGATIVE_EXPECT[field];
      if (want) expect(fails).toContain(want);
      // Claims of a quote that does not verify are attacker-chosen: withheld unless explicitly explained.
      expect(v.claims).toBeUndefined();
      if (!fails.includes("tdx.parse"))
        expect((await verifyTdx(readFileSync(`${dir}/${f}`), { explain: true })).claims?.platform).toBe("tdx");
    });
  }
});

describe.skipIf(!hasShared)("TDX PCS collateral", () => {
  const colDir = shared ? sharedPath("evidence/tdx/go-tdx-guest-collateral") : "";
  const at = new Date("2023-06-20T00:00:00Z");

  it("go-tdx-guest samples at 2023-06-20: every signature, identity and CRL check passes; no TCB level matches", async () => {
    const col = loadCollateralDir(colDir);
    expect(col.tcbInfos.length).toBe(2);
    expect(col.crls.length).toBe(2);
    const v = await verifyTdx(quote("go-tdx-guest-spr-e4-v4"), { collateral: col, now: at });
    const ids = v.checks.filter((c) => c.id.startsWith("tdx.collateral")).map((c) => [c.id, c.ok]);
    expect(ids).toEqual([
      ["tdx.collateral.signer", true],
      ["tdx.collateral.tcb-info", true],
      ["tdx.collateral.qe-identity", true],
      ["tdx.collateral.pck-crl", true],
      ["tdx.collateral.root-crl", true],
    ]);
    expect(v.claims?.extra.platformTcbStatus).toMatch(/^Unsupported/);
    expect(v.claims?.extra.qeTcbStatus).toBe("UpToDate");
    // "no TCB level" is not an acceptable status, whatever the signatures say.
    expect(v.accepted).toBe(false);
    expect(failed(v)).toEqual(["policy.tcb-status"]);
    expect(
      (
        await verifyTdx(quote("go-tdx-guest-spr-e4-v4"), {
          collateral: col,
          now: at,
          policy: { allowedTcbStatuses: ["Unsupported", "UpToDate"] },
        })
      ).accepted,
    ).toBe(true);
  });

  it("stale collateral is refused (nextUpdate 2023-07 against today)", async () => {
    const v = await verifyTdx(quote("go-tdx-guest-spr-e4-v4"), { collateral: loadCollateralDir(colDir) });
    expect(v.accepted).toBe(false);
    const f = failed(v);
    expect(f).toEqual(
      expect.arrayContaining(["tdx.collateral.signer", "tdx.collateral.pck-crl", "tdx.collateral.root-crl"]),
    );
    expect(v.checks.find((c) => c.id === "tdx.collateral.pck-crl")?.detail).toMatch(/stale/);
  });

  it("a PCK CRL with a tampered signature is refused", async () => {
    const col = loadCollateralDir(colDir);
    const crl = Buffer.from(col.crls.find((c) => c.length > 1000)!);
    crl[crl.length - 10] ^= 1; // inside the signature
    const v = await verifyTdx(quote("go-tdx-guest-spr-e4-v4"), { collateral: { ...col, crls: [crl] }, now: at });
    expect(v.checks.find((c) => c.id === "tdx.collateral.pck-crl")).toMatchObject({ ok: false });
  });

  it("a TCB info whose signed bytes changed is refused", async () => {
    const col = loadCollateralDir(colDir);
    const tampered = col.tcbInfos.map((t) => t.replace('"tcbEvaluationDataNumber":15', '"tcbEvaluationDataNumber":16'));
    expect(tampered).not.toEqual(col.tcbInfos);
    const v = await verifyTdx(quote("go-tdx-guest-spr-e4-v4"), { collateral: { ...col, tcbInfos: tampered }, now: at });
    expect(v.checks.find((c) => c.id === "tdx.collateral.tcb-info")?.detail).toMatch(/signature does not verify/);
  });

  it("TCB info without a signing certificate cannot be trusted", async () => {
    const col = loadCollateralDir(colDir);
    const v = await verifyTdx(quote("go-tdx-guest-spr-e4-v4"), { collateral: { ...col, certificates: [] }, now: at });
    expect(v.checks.find((c) => c.id === "tdx.collateral.signer")).toMatchObject({ ok: false });
    expect(v.accepted).toBe(false);
  });

  it("TCB level matching on the v5 sample (go-tdx-guest getMatchingTcbLevel rules)", () => {
    const text = readFileSync(`${colDir}/sample_tcbinfo_response_v5`, "utf8");
    const raw = rawJsonMember(text, "tcbInfo")!;
    expect(raw.startsWith("{") && raw.endsWith("}")).toBe(true);
    const info = JSON.parse(raw);
    const q = parseQuote(quote("trustee-tdx-quote-5"));
    const ext = parsePckExtension(pemCertificates(q.pckChainPem)[0]);
    expect(ext.fmspc).toBe(info.fmspc);
    // This platform's SGX component 0 (1) is below every level (2 or 3): no level matches.
    expect(ext.sgxTcbComponents.slice(0, 8)).toEqual([1, 1, 2, 2, 3, 1, 0, 3]);
    expect(matchPlatformLevel(info.tcbLevels, ext.sgxTcbComponents, ext.pceSvn, q.body.teeTcbSvn)).toBeUndefined();
    const comps = (c: number[]) => [...c, ...new Array(16 - c.length).fill(0)];
    const svn = (h: string) => Buffer.from(h.padEnd(32, "0"), "hex");
    expect(matchPlatformLevel(info.tcbLevels, comps([3, 3, 2, 2, 4, 1, 0, 5]), 13, svn("050003"))?.tcbStatus).toBe(
      "UpToDate",
    );
    expect(matchPlatformLevel(info.tcbLevels, comps([2, 2, 2, 2, 3, 1, 0, 5]), 13, svn("050003"))?.tcbStatus).toBe(
      "OutOfDate",
    );
    expect(matchPlatformLevel(info.tcbLevels, comps([3, 3, 2, 2, 4, 1, 0, 5]), 12, svn("050003"))?.tcb.pcesvn).toBe(5); // falls to the PCESVN-5 level
    expect(matchPlatformLevel(info.tcbLevels, comps([3, 3, 2, 2, 4, 1, 0, 5]), 4, svn("050003"))).toBeUndefined();
    // TDX 1.5 module (TEE_TCB_SVN[1] > 0): bytes 0 and 1 belong to the module identity and are skipped.
    expect(matchPlatformLevel(info.tcbLevels, comps([3, 3, 2, 2, 4, 1, 0, 5]), 13, svn("000103"))?.tcbStatus).toBe(
      "UpToDate",
    );
    expect(matchPlatformLevel(info.tcbLevels, comps([3, 3, 2, 2, 4, 1, 0, 5]), 13, svn("000003"))).toBeUndefined();
  });

  it("the v5 sample signed by an expired TCB Signing certificate is refused at its own date", async () => {
    const v = await verifyTdx(quote("trustee-tdx-quote-5"), {
      collateral: loadCollateralDir(colDir),
      now: new Date("2026-02-03T00:00:00Z"),
    });
    expect(v.checks.find((c) => c.id === "tdx.collateral.signer")?.detail).toMatch(/not valid at/);
    expect(v.accepted).toBe(false);
  });

  it("trustee collateral: no TCB info for this FMSPC is a failure, not a silent pass", async () => {
    const col = loadCollateralDir(
      sharedPath("evidence/tdx/trustee-collateral"),
      loadCollateralDir(colDir, emptyCollateral()),
    );
    col.tcbInfos = col.tcbInfos.filter((t) => t.includes("00A06D080000"));
    const v = await verifyTdx(quote("trustee-tdx-quote-5"), { collateral: col, now: new Date("2025-11-01T00:00:00Z") });
    expect(v.checks.find((c) => c.id === "tdx.collateral.tcb-info")?.detail).toMatch(
      /no TCB info for FMSPC 90c06f000000/,
    );
  });
});

describe.skipIf(!hasShared)("buckypaper verify tdx", () => {
  it("accepts a genuine quote (exit 0) and prints every check", async () => {
    const c = capture();
    expect(
      await verifyTdxCli(["--quote", sharedPath("evidence/tdx/trustee-tdx-quote-5/quote.bin"), "--offline"], c.io),
    ).toBe(0);
    const text = c.out.join("\n");
    expect(text).toContain("ACCEPTED");
    expect(text).toContain("[ok] tdx.quote-signature");
  });

  it("refuses the debug quote (exit 1) naming the reason", async () => {
    const c = capture();
    expect(
      await main(
        ["verify", "tdx", "--quote", sharedPath("evidence/tdx/trustee-tdx-quote-4/quote.bin"), "--offline"],
        c.io,
      ),
    ).toBe(1);
    expect(c.out.join("\n")).toMatch(/\[FAIL\] policy\.debug: TD_ATTRIBUTES\.DEBUG is set/);
  });

  it("--json prints parsed claims and checks; --mrtd constrains; --collateral with --at", async () => {
    const c = capture();
    const code = await verifyTdxCli(
      [
        "--quote",
        sharedPath("evidence/tdx/go-tdx-guest-spr-e4-v4/quote.bin"),
        "--collateral",
        sharedPath("evidence/tdx/go-tdx-guest-collateral"),
        "--at",
        "2023-06-20T00:00:00Z",
        "--mrtd",
        "0x" + "ab".repeat(48),
        "--json",
      ],
      c.io,
    );
    expect(code).toBe(1);
    const v = JSON.parse(c.out.join(""));
    expect(v.claims.measurement).toBe(
      "6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb",
    );
    expect(
      v.checks
        .filter((x: { ok: boolean }) => !x.ok)
        .map((x: { id: string }) => x.id)
        .sort(),
    ).toEqual(["policy.mrtd", "policy.tcb-status"]);
  });

  it("a policy file with a tdx section", async () => {
    const { mkdtempSync, writeFileSync } = await import("node:fs");
    const dir = mkdtempSync("/tmp/bk-tdx-policy-");
    writeFileSync(
      `${dir}/p.yaml`,
      "tdx:\n  allowDebug: true\n  mrTd:\n    - 705ee9381b8633a9fbe532b52345e8433343d2868959f57889d84ca377c395b689cac1599ccea1b7d420483a9ce5f031\n",
    );
    const c = capture();
    expect(
      await verifyTdxCli(
        ["--quote", sharedPath("evidence/tdx/trustee-tdx-quote-4/quote.bin"), "--offline", "--policy", `${dir}/p.yaml`],
        c.io,
      ),
    ).toBe(0);
    writeFileSync(`${dir}/bad.yaml`, "tdx:\n  mrTd: [abc]\n");
    await expect(
      verifyTdxCli(
        ["--quote", sharedPath("evidence/tdx/trustee-tdx-quote-4/quote.bin"), "--policy", `${dir}/bad.yaml`],
        c.io,
      ),
    ).rejects.toThrow(/mrTd\[0\]: expected 48-byte hex/);
  });

  it("runs as a real process (bin/buckypaper.js, compiled dist)", () => {
    const r = spawnSync(
      process.execPath,
      [
        path.join(repoRoot, "bin/buckypaper.js"),
        "verify",
        "tdx",
        "--quote",
        sharedPath("evidence/tdx/trustee-tdx-quote-4/quote.bin"),
        "--offline",
        "--json",
      ],
      { encoding: "utf8" },
    );
    expect(r.status).toBe(1);
    const v = JSON.parse(r.stdout);
    expect(v.checks.filter((c: { ok: boolean }) => !c.ok).map((c: { id: string }) => c.id)).toEqual(["policy.debug"]);
  });

  it("usage errors and unreadable files exit 2; a malformed quote is rejected (exit 1)", async () => {
    const c = capture();
    expect(await main(["verify", "tdx"], c.io)).toBe(2);
    expect(await main(["verify", "tdx", "--quote", "/nonexistent/quote.bin"], c.io)).toBe(2);
    expect(c.err.join("\n")).toMatch(/--quote \/nonexistent\/quote.bin: ENOENT/);
    expect(await main(["verify", "tdx", "--quote", sharedPath("evidence/manifest.json"), "--offline"], c.io)).toBe(1);
    expect(c.out.join("\n")).toMatch(/\[FAIL\] tdx\.parse: header\.version/);
  });
});
