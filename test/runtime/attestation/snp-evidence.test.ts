// SEV-SNP verification against real evidence from ../shared/evidence: every manifest case gives its
// expected verdict, every one-bit negative is rejected for the right reason, certificate profiles parse.
import { describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { hasShared, noteIfSharedMissing, sharedPath } from "../../support/shared.js";
import { appraise } from "../../../runtime/attestation/appraise.js";
import { DEFAULT_POLICY, type TrustConfig } from "../../../runtime/attestation/policy.js";
import type { Evidence, Verdict } from "../../../runtime/attestation/types.js";
import {
  PINNED_ARK_SHA256,
  asCaCert,
  issuedBy,
  parseCert,
  parseVek,
  splitCertificates,
} from "../../../runtime/attestation/snp/certs.js";
import { parseReport, decodeTcb } from "../../../runtime/attestation/snp/abi.js";
import { createSnpSimulator } from "../../../runtime/sim/snp.js";
import { main } from "../../../cli/main.js";
import { spawnSync } from "node:child_process";
import { repoRoot } from "../../support/shared.js";

const run = noteIfSharedMissing("SNP real-evidence tests") ? describe : describe.skip;
const SNP = (...p: string[]) => sharedPath("evidence", "snp", ...p);
const TRUST_DIR = sharedPath("evidence", "trust", "amd");
const trust: TrustConfig = { snp: { certDir: TRUST_DIR, crl: "if-available" } };

interface Case {
  kind: string;
  case: string;
  product: string;
  version: number;
  signer: string;
  verifies: boolean;
}
const manifest: Case[] = hasShared ? JSON.parse(readFileSync(sharedPath("evidence", "manifest.json"), "utf8")) : [];
const snpCases = manifest.filter((c) => c.kind === "snp");

const CRYPTO_CHECKS = [
  "snp.report",
  "snp.product",
  "snp.vek",
  "snp.chain.ark",
  "snp.chain.intermediate",
  "snp.chain.vek",
  "snp.signature",
  "snp.tcb",
  "snp.chip-id",
];

function vekFile(dir: string): string {
  const f = ["vcek.der", "vlek.der", "vcek.pem", "vlek.pem"].find((n) => existsSync(SNP(dir, n)));
  if (!f) throw new Error(`no VEK in ${dir}`);
  return SNP(dir, f);
}

function evidenceOf(dir: string, report?: Uint8Array, withChain = false): Extract<Evidence, { kind: "snp" }> {
  const chain = ["ask_ark.pem", "asvk_ark.pem"]
    .filter((n) => existsSync(SNP(dir, n)))
    .map((n) => readFileSync(SNP(dir, n)));
  return {
    kind: "snp",
    report: report ?? readFileSync(SNP(dir, "report.bin")),
    vek: readFileSync(vekFile(dir)),
    caChain: withChain ? chain : undefined,
  };
}

const failed = (v: Verdict) => v.checks.filter((c) => !c.ok).map((c) => c.id);
const check = (v: Verdict, id: string) => v.checks.find((c) => c.id === id)!;

/** A time inside the VEK's validity (the VEK of some fixtures has expired since they were made). */
function validTime(dir: string): Date {
  const vek = parseVek(readFileSync(vekFile(dir)));
  return vek.notAfter.getTime() > Date.now() ? new Date() : new Date(vek.notAfter.getTime() - 24 * 3600 * 1000);
}

function capture() {
  const out: string[] = [],
    err: string[] = [];
  return {
    io: { out: (t: string) => out.push(t), err: (t: string) => err.push(t) },
    out,
    err,
    text: () => out.join("\n") + err.join("\n"),
  };
}

run("SEV-SNP real evidence (manifest)", () => {
  it("covers the manifest's SNP cases", () => {
    expect(snpCases.length).toBeGreaterThanOrEqual(8);
    expect(
      snpCases
        .filter((c) => !c.verifies)
        .map((c) => c.case)
        .sort(),
    ).toEqual(["azure-kinvolk-hcl", "constellation-milan-vlek"]);
  });

  for (const c of snpCases) {
    it(`${c.case}: ${c.verifies ? "authentic" : "must FAIL"} (${c.product} v${c.version} ${c.signer})`, async () => {
      const v = await appraise(evidenceOf(c.case), DEFAULT_POLICY, { trust });
      expect(v.evidenceDigest).toBe(
        createHash("sha384")
          .update(readFileSync(SNP(c.case, "report.bin")))
          .digest("hex"),
      );
      expect(v.simulated).toBe(false);
      const r = parseReport(readFileSync(SNP(c.case, "report.bin")));
      expect(r.version).toBe(c.version);
      expect(check(v, "snp.vek").detail).toContain(c.signer);
      if (!c.verifies) {
        expect(v.accepted).toBe(false);
        expect(check(v, "snp.signature").ok).toBe(false);
        if (c.signer === "VCEK") expect(check(v, "snp.chip-id").detail).toMatch(/another chip/);
        return;
      }
      for (const id of CRYPTO_CHECKS) expect(check(v, id), id).toMatchObject({ ok: true });
      expect(check(v, "snp.product").detail).toContain(c.product);
      const now = validTime(c.case);
      if (now.getTime() < Date.now() - 60_000) {
        // The VEK has expired since the fixture was made: refused today for exactly that reason ...
        expect(failed(v)).toEqual(["snp.chain.validity"]);
        expect(check(v, "snp.chain.validity").detail).toMatch(/valid only .* not at/);
      }
      // ... and judged on its own merits at a time inside the VEK's validity.
      const atValid = await appraise(evidenceOf(c.case), DEFAULT_POLICY, { trust, now });
      if (c.case === "go-sev-guest-milan-v2") {
        // Authentic, launched with DEBUG=1: the default policy refuses it and says why.
        expect(atValid.accepted).toBe(false);
        expect(failed(atValid)).toEqual(["policy.debug"]);
        expect(check(atValid, "policy.debug").detail).toMatch(/DEBUG=1/);
        expect(atValid.claims?.debug).toBe(true);
        const allowed = await appraise(evidenceOf(c.case), { snp: { allowDebug: true } }, { trust, now });
        expect(allowed.accepted).toBe(true);
      } else {
        expect(failed(atValid)).toEqual([]);
        expect(atValid.accepted).toBe(true);
        expect(atValid.claims?.product).toBe(c.product);
        expect(atValid.claims?.measurement).toBe(Buffer.from(r.measurement).toString("hex"));
      }
    });
  }

  it("parses every field as the independent reference decoder did (verify-result.json)", () => {
    const h = (b: Uint8Array) => Buffer.from(b).toString("hex");
    for (const c of snpCases) {
      const f = JSON.parse(readFileSync(SNP(c.case, "verify-result.json"), "utf8")).fields;
      const r = parseReport(readFileSync(SNP(c.case, "report.bin")));
      const fw = (v: { major: number; minor: number; build: number }) => `${v.major}.${v.minor}.${v.build}`;
      expect(
        {
          version: r.version,
          guest_svn: r.guestSvn,
          policy: "0x" + r.policy.toString(16),
          vmpl: r.vmpl,
          signature_algo: r.signatureAlgo,
          platform_info: "0x" + r.platformInfo.toString(16),
          family_id: h(r.familyId),
          image_id: h(r.imageId),
          report_data: h(r.reportData),
          measurement: h(r.measurement),
          host_data: h(r.hostData),
          id_key_digest: h(r.idKeyDigest),
          author_key_digest: h(r.authorKeyDigest),
          report_id: h(r.reportId),
          report_id_ma: h(r.reportIdMa),
          chip_id: h(r.chipId),
          current_tcb: h(r.currentTcb),
          reported_tcb: h(r.reportedTcb),
          committed_tcb: h(r.committedTcb),
          launch_tcb: h(r.launchTcb),
          current_fw: fw(r.currentVersion),
          committed_fw: fw(r.committedVersion),
          signing_key: r.signingKey.toUpperCase(),
          debug: r.policyBits.debug,
          smt: r.policyBits.smt,
        },
        c.case,
      ).toEqual({
        version: f.version,
        guest_svn: f.guest_svn,
        policy: f.policy,
        vmpl: f.vmpl,
        signature_algo: f.signature_algo,
        platform_info: f.platform_info,
        family_id: f.family_id,
        image_id: f.image_id,
        report_data: f.report_data,
        measurement: f.measurement,
        host_data: f.host_data,
        id_key_digest: f.id_key_digest,
        author_key_digest: f.author_key_digest,
        report_id: f.report_id,
        report_id_ma: f.report_id_ma,
        chip_id: f.chip_id,
        current_tcb: f.current_tcb,
        reported_tcb: f.reported_tcb,
        committed_tcb: f.committed_tcb,
        launch_tcb: f.launch_tcb,
        current_fw: f.current_fw,
        committed_fw: f.committed_fw,
        signing_key: f.signer.signing_key,
        debug: f.policy_bits.debug,
        smt: f.policy_bits.smt,
      });
      const t = decodeTcb(r.reportedTcb, c.product as "Milan" | "Genoa" | "Turin");
      expect({ bl: t.bootloader, tee: t.tee, snp: t.snp, ucode: t.microcode }).toEqual(f.reported_tcb_decoded);
      if (r.cpuid)
        expect([r.cpuid.family, r.cpuid.model, r.cpuid.stepping]).toEqual([f.cpuid_fam, f.cpuid_mod, f.cpuid_step]);
      if (r.launchMitVector !== undefined)
        expect(["0x" + r.launchMitVector.toString(16), "0x" + r.currentMitVector!.toString(16)]).toEqual([
          f.launch_mit_vector,
          f.current_mit_vector,
        ]);
    }
  });

  it("verifies with the chain the evidence itself carries (no operator directory)", async () => {
    for (const c of snpCases.filter(
      (x) => x.verifies && ["ask_ark.pem", "asvk_ark.pem"].some((n) => existsSync(SNP(x.case, n))),
    )) {
      const v = await appraise(
        evidenceOf(c.case, undefined, true),
        { snp: { allowDebug: true } },
        { trust: { snp: {} }, now: validTime(c.case) },
      );
      expect(failed(v), c.case).toEqual([]);
    }
  });

  it("takes a VCEK+ASK+ARK bundle as the VEK, or the whole chain among the CA certificates (Azure THIM format)", async () => {
    const dir = "azure-aci-sidecar-milan";
    const report = readFileSync(SNP(dir, "report.bin"));
    const bundle = readFileSync(SNP(dir, "vcek_chain.pem"));
    for (const ev of [
      { kind: "snp" as const, report, vek: bundle },
      { kind: "snp" as const, report, caChain: [bundle] },
    ]) {
      const v = await appraise(ev, DEFAULT_POLICY, { trust: { snp: {} } });
      expect(failed(v)).toEqual([]);
    }
  });

  it("without any CA source and offline, refuses: no pinned ARK available", async () => {
    const v = await appraise(evidenceOf("oak-genoa-v5"), DEFAULT_POLICY, {
      trust: { snp: { kds: { offline: true } } },
    });
    expect(v.accepted).toBe(false);
    expect(check(v, "snp.chain.ark").detail).toMatch(/no ARK-Genoa with a pinned fingerprint/);
  });

  it("refuses an evidence-supplied ARK that is not the pinned one, even when a pinned ARK is also available", async () => {
    const sim = await createSnpSimulator({ product: "Milan" });
    const ev = { ...evidenceOf("virtee-sev-milan-v2"), caChain: [sim.caCerts.ark] };
    const v = await appraise(ev, DEFAULT_POLICY, { trust });
    expect(v.accepted).toBe(false);
    expect(check(v, "snp.chain.ark").detail).toMatch(/not the pinned root/);
  });

  it("refuses genuine evidence paired with the VCEK of another report (wrong chip, wrong TCB)", async () => {
    const ev = { ...evidenceOf("virtee-sev-milan-v2"), vek: readFileSync(SNP("go-sev-guest-milan-v2", "vcek.der")) };
    const v = await appraise(ev, DEFAULT_POLICY, { trust });
    expect(v.accepted).toBe(false);
    expect(failed(v)).toEqual(expect.arrayContaining(["snp.signature", "snp.tcb", "snp.chip-id"]));
  });

  it("refuses a VLEK report presented with a VCEK (signer kind mismatch)", async () => {
    const ev = { ...evidenceOf("trustee-milan-vlek"), vek: readFileSync(SNP("trustee-milan-vcek", "vcek.der")) };
    const v = await appraise(ev, DEFAULT_POLICY, { trust });
    expect(check(v, "snp.vek")).toMatchObject({ ok: false });
    expect(check(v, "snp.vek").detail).toMatch(/signed by the VLEK but the supplied key is a VCEK/);
  });

  it("trustee's VLEK report (VMPL 1) is refused by a VMPL-0 policy, with the reason", async () => {
    const v = await appraise(
      evidenceOf("trustee-milan-vlek"),
      { snp: { vmpl: 0 } },
      { trust, now: validTime("trustee-milan-vlek") },
    );
    expect(failed(v)).toEqual(["policy.vmpl"]);
    expect(check(v, "policy.vmpl").detail).toMatch(/VMPL 1.*requires VMPL 0/);
    const noVlek = await appraise(
      evidenceOf("trustee-milan-vlek"),
      { snp: { allowVlek: false } },
      { trust, now: validTime("trustee-milan-vlek") },
    );
    expect(failed(noVlek)).toEqual(["policy.signer"]);
  });

  it("binds REPORT_DATA exactly (go-sev-guest nonce 01 02 03 04 05 00…)", async () => {
    const now = validTime("go-sev-guest-milan-v2");
    const ok = await appraise(
      evidenceOf("go-sev-guest-milan-v2"),
      { snp: { allowDebug: true } },
      { trust, now, expectedReportData: Uint8Array.from([1, 2, 3, 4, 5]) },
    );
    expect(ok.accepted).toBe(true);
    const bad = await appraise(
      evidenceOf("go-sev-guest-milan-v2"),
      { snp: { allowDebug: true } },
      { trust, now, expectedReportData: Uint8Array.from([1, 2, 3, 4, 6]) },
    );
    expect(failed(bad)).toEqual(["policy.report-data"]);
  });
});

run("SEV-SNP real negatives (one-bit mutations)", () => {
  const files = hasShared ? readdirSync(SNP("negatives")).filter((f) => f.endsWith(".bin")) : [];
  const expectedFailure: Record<string, { id: string; match?: RegExp }[]> = {
    "measurement-0x90": [{ id: "snp.signature" }],
    "policy-0x08": [{ id: "snp.signature" }],
    "report_data-0x50": [{ id: "snp.signature" }],
    "vmpl-0x30": [{ id: "snp.signature" }],
    "sig_r-0x2a0": [{ id: "snp.signature" }],
    "sig_s-0x2e8": [{ id: "snp.signature" }],
    "reported_tcb-0x180": [{ id: "snp.signature" }, { id: "snp.tcb" }],
    "sig_r_pad-0x2e0": [{ id: "snp.report", match: /signature_r_high/ }],
    "reserved-0x4a0m1": [{ id: "snp.report", match: /signature_reserved \(offset 0x49f\)/ }],
  };
  it("has all 27 negatives", () => expect(files.length).toBe(27));
  for (const f of files) {
    it(`rejects ${f} for the right reason`, async () => {
      const [base, field] = f.replace(/\.bin$/, "").split("__");
      const want = expectedFailure[field];
      expect(want, `unexpected negative ${field}`).toBeDefined();
      const v = await appraise(
        evidenceOf(base, readFileSync(SNP("negatives", f))),
        { snp: { allowDebug: true } },
        { trust, now: validTime(base) },
      );
      expect(v.accepted).toBe(false);
      for (const w of want) {
        expect(check(v, w.id), `${f}: ${w.id}`).toMatchObject({ ok: false });
        if (w.match) expect(check(v, w.id).detail).toMatch(w.match);
      }
      // The genuine base report passes those same checks, so the mutation is the reason.
      const genuine = await appraise(evidenceOf(base), { snp: { allowDebug: true } }, { trust, now: validTime(base) });
      expect(genuine.accepted).toBe(true);
    });
  }
});

run("SEV-SNP certificates (real)", () => {
  it("pins exactly the fingerprints of the genuine ARKs", () => {
    for (const p of ["Milan", "Genoa", "Turin"] as const) {
      const [der] = splitCertificates(readFileSync(`${TRUST_DIR}/${p.toLowerCase()}_ark.pem`));
      const ca = asCaCert(parseCert(der))!;
      expect(ca).toMatchObject({ role: "ark", product: p });
      expect(ca.sha256).toBe(PINNED_ARK_SHA256[p]);
      expect(issuedBy(ca, ca)).toBe(true);
      for (const role of ["ask", "asvk"]) {
        const [d] = splitCertificates(readFileSync(`${TRUST_DIR}/${p.toLowerCase()}_${role}.pem`));
        const inter = asCaCert(parseCert(d))!;
        expect(inter).toMatchObject({ role, product: p });
        expect(issuedBy(inter, ca)).toBe(true);
      }
    }
  });

  it("parses the Turin VCEK profile (structVersion 1, fmcSPL, no spl4, 8-byte hwID) and chains it", () => {
    const v = parseVek(readFileSync(SNP("virtee-sev-turin-vcek-only", "vcek.der")));
    expect(v).toMatchObject({ kind: "vcek", product: "Turin", productName: "Turin", structVersion: 1 });
    expect(v.spl).toMatchObject({ fmc: 0, bl: 0, tee: 0, snp: 0, ucode: 9, spl4: undefined });
    expect(Buffer.from(v.hwId!).toString("hex")).toBe("1e550a8ee5cf9f4d");
    const cas = splitCertificates(readFileSync(SNP("virtee-sev-turin-vcek-only", "ask_ark.pem"))).map((d) =>
      asCaCert(parseCert(d))!,
    );
    const ask = cas.find((c) => c.role === "ask")!;
    const ark = cas.find((c) => c.role === "ark")!;
    expect(ark.sha256).toBe(PINNED_ARK_SHA256.Turin);
    expect(issuedBy(v, ask) && issuedBy(ask, ark)).toBe(true);
    // Turin TCB layout: byte 0 fmc, 1 bl, 2 tee, 3 snp, 7 ucode.
    expect(decodeTcb(Uint8Array.from([0, 1, 0, 2, 0, 0, 0, 0x47]), "Turin")).toEqual({
      fmc: 0,
      bootloader: 1,
      tee: 0,
      snp: 2,
      microcode: 71,
    });
  });

  it("parses VLEK (cspID, multi-byte ucodeSPL) and Genoa (productName without stepping)", () => {
    const vlek = parseVek(readFileSync(SNP("trustee-milan-vlek", "vlek.der")));
    expect(vlek).toMatchObject({
      kind: "vlek",
      product: "Milan",
      cspId: "CN=cc-us-east-2.amazonaws.com",
      hwId: undefined,
    });
    expect(vlek.spl.ucode).toBe(217);
    expect(parseVek(readFileSync(SNP("oak-genoa-v5", "vcek.der")))).toMatchObject({
      product: "Genoa",
      productName: "Genoa",
    });
  });

  it("altered trustee VCEKs parse (raw and OCTET STRING hwID) but do not chain", async () => {
    for (const f of ["vcek-invalid-legacy.der", "vcek-invalid-new.der"]) {
      const v = parseVek(readFileSync(SNP("trustee-milan-vcek", f)));
      expect(v.hwId!.length).toBe(64);
      const ev = { ...evidenceOf("trustee-milan-vcek"), vek: readFileSync(SNP("trustee-milan-vcek", f)) };
      const verdict = await appraise(ev, DEFAULT_POLICY, { trust });
      expect(verdict.accepted).toBe(false);
      expect(check(verdict, "snp.chain.vek")).toMatchObject({ ok: false });
    }
  });
});

run("buckypaper verify snp on real evidence", () => {
  const cli = async (...args: string[]) => {
    const c = capture();
    const code = await main(["verify", "snp", ...args], c.io);
    return { code, text: c.text(), out: c.out.join("\n") };
  };
  const base = (dir: string) => [
    "--report",
    SNP(dir, "report.bin"),
    "--vek",
    vekFile(dir),
    "--cert-dir",
    TRUST_DIR,
    "--offline",
  ];

  it("accepts a genuine Genoa v5 report (exit 0) and prints --json fields and every check", async () => {
    const r = await cli(...base("oak-genoa-v5"), "--json");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j).toMatchObject({ kind: "snp", accepted: true, simulated: false });
    expect(j.fields).toMatchObject({
      version: 5,
      vmpl: 0,
      reportedTcb: { bootloader: 10, snp: 25, microcode: 84 },
      cpuid: { family: 0x19, model: 0x11 },
    });
    expect(j.checks.length).toBeGreaterThan(20);
    expect(j.checks.every((c: { ok: boolean }) => c.ok)).toBe(true);
  });

  it("refuses the debug report (exit 1) naming policy.debug", async () => {
    const r = await cli(...base("go-sev-guest-milan-v2"), "--at", validTime("go-sev-guest-milan-v2").toISOString());
    expect(r.code).toBe(1);
    expect(r.text).toMatch(/\[FAIL\] policy\.debug: .*DEBUG=1/);
  });

  it("refuses the wrong-chip VCEK (exit 1) and an unlisted measurement (exit 1)", async () => {
    expect((await cli(...base("azure-kinvolk-hcl"))).code).toBe(1);
    const r = await cli(...base("oak-genoa-v5"), "--measurement", "00".repeat(48));
    expect(r.code).toBe(1);
    expect(r.text).toMatch(/\[FAIL\] policy\.measurement/);
    expect(
      (
        await cli(
          ...base("oak-genoa-v5"),
          "--measurement",
          "c57729018b0a6fb90dc17bb138b0aa35e4401004283ff4a2c24d3739ff3750f52384370e77b7032862a08c440a9bc4dc",
        )
      ).code,
    ).toBe(0);
  });

  it("runs as a real process through bin/buckypaper.js", () => {
    const r = spawnSync(
      process.execPath,
      [`${repoRoot}/bin/buckypaper.js`, "verify", "snp", ...base("trustee-milan-vcek")],
      { encoding: "utf8" },
    );
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/SEV-SNP report: ACCEPTED\n {2}product {5}Milan/);
  });

  it("takes --ca bundles in any order and exits 2 on usage errors or unreadable input", async () => {
    const dir = "virtee-sev-milan-v2";
    expect(
      (
        await cli(
          "--report",
          SNP(dir, "report.bin"),
          "--vek",
          vekFile(dir),
          "--ca",
          SNP(dir, "ask_ark.pem"),
          "--offline",
        )
      ).code,
    ).toBe(0);
    expect((await cli("--report", "/nonexistent/report.bin")).code).toBe(2);
    expect((await cli(...base(dir), "--measurement", "zz")).code).toBe(2);
    expect((await cli(...base(dir), "--product", "naples")).code).toBe(2);
    expect((await cli()).code).toBe(2);
    const c = capture();
    expect(await main(["verify", "sgx"], c.io)).toBe(2);
  });
});
