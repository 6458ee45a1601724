// The simulated Intel hierarchy: round trips for v4 and v5 (TD report 1.0 and 1.5), trust only when
// configured, signed collateral statuses, and mutation tests over every region of a simulated quote.
import { beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { TdxSimulator } from "../../../runtime/sim/tdx.js";
import { parseQuote, verifyTdx, type TdxCollateral } from "../../../runtime/attestation/tdx/index.js";
import { run as simulateTdx } from "../../../cli/simulate-tdx.js";
import { run as verifyTdxCli } from "../../../cli/verify-tdx.js";

let sim: TdxSimulator;
beforeAll(async () => {
  sim = await TdxSimulator.create();
});

const mrTd = Buffer.alloc(48, 0xa1);
const rtmrs = [Buffer.alloc(48, 1), Buffer.alloc(48, 2), Buffer.alloc(48, 3), Buffer.alloc(48, 4)];
const reportData = Buffer.alloc(64, 0x5c);
const failed = (v: { checks: { id: string; ok: boolean }[] }) => v.checks.filter((c) => !c.ok).map((c) => c.id);
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function capture() {
  const out: string[] = [];
  return { io: { out: (t: string) => out.push(t), err: (t: string) => out.push(t) }, out };
}

describe("TDX simulator round trips", () => {
  for (const [version, bodyType] of [
    [4, 2],
    [5, 2],
    [5, 3],
  ] as const) {
    it(`v${version} body type ${bodyType}: parses back, verifies only with the simulated root configured, says simulated`, async () => {
      const q = sim.quote({ version, bodyType, mrTd, rtmrs, reportData });
      const parsed = parseQuote(q);
      expect(parsed.header.version).toBe(version);
      expect(parsed.bodyType).toBe(bodyType);
      expect(hex(parsed.body.mrTd)).toBe(hex(mrTd));
      expect(parsed.body.rtmrs.map(hex)).toEqual(rtmrs.map(hex));
      expect(hex(parsed.body.reportData)).toBe(hex(reportData));
      expect(parsed.body.mrServiceTd === undefined).toBe(bodyType === 2);

      const untrusted = await verifyTdx(q);
      expect(untrusted.accepted).toBe(false);
      expect(untrusted.simulated).toBe(false);
      expect(failed(untrusted)).toEqual(["tdx.pck-chain"]);
      expect(untrusted.checks.find((c) => c.id === "tdx.pck-chain")?.detail).toMatch(
        /not the pinned Intel SGX Root CA/,
      );

      const v = await verifyTdx(q, {
        simulatedRoots: [sim.rootFingerprint],
        policy: { mrTd: [hex(mrTd)], rtmr3: [hex(rtmrs[3])], reportData: hex(reportData) },
      });
      expect(failed(v)).toEqual([]);
      expect(v.accepted).toBe(true);
      expect(v.simulated).toBe(true);
      expect(v.checks.find((c) => c.id === "tdx.simulated")?.detail).toMatch(/SIMULATED/);
      expect(v.claims).toMatchObject({
        platform: "tdx",
        measurement: hex(mrTd),
        reportData: hex(reportData),
        debug: false,
      });
    });
  }

  it("a PCK chain outside its validity fails tdx.pck-validity alone, naming the certificates", async () => {
    const q = sim.quote({ mrTd });
    const v = await verifyTdx(q, { simulatedRoots: [sim.rootFingerprint], now: new Date("2100-01-01T00:00:00Z") });
    expect(failed(v)).toContain("tdx.pck-validity");
    expect(failed(v)).not.toContain("tdx.pck-chain");
    expect(v.checks.find((c) => c.id === "tdx.pck-validity")?.detail).toMatch(/not valid at 2100-01-01.*Intel SGX PCK/);
  });

  it("another simulator's root is not trusted by this one's fingerprint", async () => {
    const other = await TdxSimulator.create();
    const v = await verifyTdx(other.quote({ mrTd }), { simulatedRoots: [sim.rootFingerprint] });
    expect(v.accepted).toBe(false);
    expect(v.simulated).toBe(false);
  });

  it("debug TDs are refused by default and allowed by policy", async () => {
    const q = sim.quote({ tdAttributes: Buffer.from("0100000000000000", "hex") });
    const v = await verifyTdx(q, { simulatedRoots: [sim.rootFingerprint] });
    expect(failed(v)).toEqual(["policy.debug"]);
    expect((await verifyTdx(q, { simulatedRoots: [sim.rootFingerprint], policy: { allowDebug: true } })).accepted).toBe(
      true,
    );
  });

  it("a QE report signed by the PCK key but from an enclave other than Intel's TD QE is refused", async () => {
    const v = await verifyTdx(sim.quote({ qeMrSigner: Buffer.alloc(32, 0x66) }), {
      simulatedRoots: [sim.rootFingerprint],
    });
    expect(failed(v)).toEqual(["tdx.qe-identity"]);
    expect(v.checks.find((c) => c.id === "tdx.qe-identity")?.detail).toMatch(/not Intel's TD QE signer/);
  });

  it("policy: TD_ATTRIBUTES under a mask, MRSERVICETD (TD 1.5 only), required REPORTDATA binding", async () => {
    const trust = { simulatedRoots: [sim.rootFingerprint] };
    const septVeDisable = { mask: "0000001000000000", value: "0000001000000000" };
    expect((await verifyTdx(sim.quote(), { ...trust, policy: { tdAttributes: septVeDisable } })).accepted).toBe(true);
    const noSept = await verifyTdx(sim.quote({ tdAttributes: Buffer.alloc(8) }), {
      ...trust,
      policy: { tdAttributes: septVeDisable },
    });
    expect(failed(noSept)).toEqual(["policy.td-attributes"]);
    const v15 = sim.quote({ version: 5, bodyType: 3, mrServiceTd: Buffer.alloc(48, 9) });
    expect((await verifyTdx(v15, { ...trust, policy: { mrServiceTd: "09".repeat(48) } })).accepted).toBe(true);
    expect(failed(await verifyTdx(sim.quote(), { ...trust, policy: { mrServiceTd: "09".repeat(48) } }))).toEqual([
      "policy.mrservicetd",
    ]);
    expect(failed(await verifyTdx(sim.quote(), { ...trust, policy: { requireReportData: true } }))).toEqual([
      "policy.report-data",
    ]);
  });

  it("unsigned trailing bytes after the signature data are ignored, as in genuine quotes", async () => {
    const q = Buffer.concat([sim.quote({ mrTd }), Buffer.from("trailing garbage")]);
    const v = await verifyTdx(q, { simulatedRoots: [sim.rootFingerprint] });
    expect(v.accepted).toBe(true);
    expect(v.claims?.extra.trailingBytes).toBe(16);
  });
});

describe("TDX collateral from the simulated TCB signing key", () => {
  const opts = (collateral: TdxCollateral, policy = {}) => ({
    simulatedRoots: [sim.rootFingerprint],
    collateral,
    policy,
  });

  it("UpToDate platform, module and QE are accepted", async () => {
    const v = await verifyTdx(
      sim.quote({ version: 5, teeTcbSvn: Buffer.from("03010000000000000000000000000000", "hex") }),
      opts(sim.collateral()),
    );
    expect(failed(v)).toEqual([]);
    expect(v.claims?.tcb.tcbStatus).toBe("UpToDate/UpToDate/UpToDate");
  });

  it("OutOfDate is refused by default and accepted when the policy allows it", async () => {
    const q = sim.quote();
    const v = await verifyTdx(q, opts(sim.collateral({ status: "OutOfDate" })));
    expect(failed(v)).toEqual(["policy.tcb-status"]);
    expect(v.checks.find((c) => c.id === "policy.tcb-status")?.detail).toMatch(/OutOfDate is not in the allowed set/);
    expect(
      (
        await verifyTdx(
          q,
          opts(sim.collateral({ status: "OutOfDate" }), { allowedTcbStatuses: ["UpToDate", "OutOfDate"] }),
        )
      ).accepted,
    ).toBe(true);
  });

  it("a QE identity with a revoked QE TCB is refused", async () => {
    const v = await verifyTdx(sim.quote(), opts(sim.collateral({ qeStatus: "Revoked" })));
    expect(failed(v)).toEqual(["policy.tcb-status"]);
  });

  it("collateral signed by another hierarchy is refused", async () => {
    const other = await TdxSimulator.create();
    const v = await verifyTdx(sim.quote(), opts(other.collateral()));
    expect(failed(v)).toEqual(
      expect.arrayContaining(["tdx.collateral.signer", "tdx.collateral.tcb-info", "tdx.collateral.qe-identity"]),
    );
  });

  it("expired collateral is refused", async () => {
    const old = sim.collateral({ now: new Date(Date.now() - 90 * 86_400_000) });
    const v = await verifyTdx(sim.quote(), opts(old));
    expect(v.checks.find((c) => c.id === "tdx.collateral.tcb-info")?.detail).toMatch(/stale/);
    expect(v.accepted).toBe(false);
  });

  it("CRLs: fresh and signed pass; a revoked PCK or PCK CA is refused as Revoked", async () => {
    const q = sim.quote();
    const clean = await verifyTdx(q, opts({ ...sim.collateral(), crls: await sim.crls() }));
    expect(failed(clean)).toEqual([]);
    expect(clean.checks.filter((c) => c.id.endsWith("-crl")).map((c) => c.id)).toEqual([
      "tdx.collateral.pck-crl",
      "tdx.collateral.root-crl",
    ]);
    const pck = await verifyTdx(q, opts({ ...sim.collateral(), crls: await sim.crls({ revokePck: true }) }));
    expect(failed(pck)).toEqual(["tdx.collateral.pck-crl", "policy.tcb-status"]);
    expect(pck.checks.find((c) => c.id === "tdx.collateral.pck-crl")?.detail).toMatch(/REVOKED/);
    const ca = await verifyTdx(q, opts({ ...sim.collateral(), crls: await sim.crls({ revokeCa: true }) }));
    expect(failed(ca)).toEqual(["tdx.collateral.root-crl", "policy.tcb-status"]);
    const other = await TdxSimulator.create();
    const forged = await verifyTdx(q, opts({ ...sim.collateral(), crls: await other.crls() }));
    expect(failed(forged)).toEqual(["tdx.collateral.pck-crl", "tdx.collateral.root-crl"]);
    expect(forged.checks.find((c) => c.id === "tdx.collateral.pck-crl")?.detail).toMatch(/not signed/);
  });

  it("fetches collateral from the Intel PCS API shape (injected fetch) and verifies it like local files", async () => {
    const col = sim.collateral();
    const crls = await sim.crls();
    const pemOf = (d: Uint8Array) =>
      `-----BEGIN CERTIFICATE-----\n${Buffer.from(d).toString("base64")}\n-----END CERTIFICATE-----\n`;
    const chainHeader = encodeURIComponent(col.certificates.map(pemOf).join(""));
    const urls: string[] = [];
    const fakePcs = (async (input: string | URL | Request) => {
      const url = String(input);
      urls.push(url);
      if (url.includes("/tdx/certification/v4/tcb?fmspc="))
        return new Response(col.tcbInfos[0], { headers: { "TCB-Info-Issuer-Chain": chainHeader } });
      if (url.includes("/tdx/certification/v4/qe/identity"))
        return new Response(col.qeIdentities[0], { headers: { "SGX-Enclave-Identity-Issuer-Chain": chainHeader } });
      if (url.includes("/pckcrl?ca=platform"))
        return new Response(Buffer.from(crls[0]), { headers: { "SGX-PCK-CRL-Issuer-Chain": chainHeader } });
      if (url.endsWith("IntelSGXRootCA.der")) return new Response(Buffer.from(crls[1]));
      return new Response("not found", { status: 404 });
    }) as typeof fetch;
    const v = await verifyTdx(sim.quote(), { simulatedRoots: [sim.rootFingerprint], fetchCollateral: fakePcs });
    expect(failed(v)).toEqual([]);
    expect(v.checks.map((c) => c.id)).toEqual(
      expect.arrayContaining([
        "tdx.collateral.fetch",
        "tdx.collateral.tcb-info",
        "tdx.collateral.pck-crl",
        "tdx.collateral.root-crl",
      ]),
    );
    expect(urls.some((u) => u.includes(`fmspc=${sim.fmspc}`))).toBe(true);

    const down = (async () => new Response("unavailable", { status: 503 })) as typeof fetch;
    const soft = await verifyTdx(sim.quote(), { simulatedRoots: [sim.rootFingerprint], fetchCollateral: down });
    expect(soft.accepted).toBe(true);
    expect(soft.checks.find((c) => c.id === "tdx.collateral.fetch")?.detail).toMatch(/HTTP 503/);
    const hard = await verifyTdx(sim.quote(), {
      simulatedRoots: [sim.rootFingerprint],
      fetchCollateral: down,
      policy: { requireCollateral: true },
    });
    expect(failed(hard)).toEqual(["tdx.collateral.fetch", "policy.tcb-status"]);
  });

  it("requireCollateral refuses a quote without collateral", async () => {
    const v = await verifyTdx(sim.quote(), {
      simulatedRoots: [sim.rootFingerprint],
      policy: { requireCollateral: true },
    });
    expect(failed(v)).toEqual(["policy.tcb-status"]);
  });
});

describe("mutation tests on simulated quotes", () => {
  /** Every flipped byte of the signed or certified regions must make the quote fail a cryptographic check. */
  for (const version of [4, 5] as const) {
    it(`v${version}: single-bit flips across header, body and signature data are all rejected`, async () => {
      const q = Buffer.from(sim.quote({ version, mrTd, rtmrs, reportData }));
      const parsed = parseQuote(q);
      const pemStart = q.indexOf("-----BEGIN");
      const sigDataEnd = q.length - parsed.trailingBytes;
      // All bytes before the PEM chain (header, body, lengths, signatures, key, QE report, auth data), strided to bound the run.
      const offsets: number[] = [];
      for (let i = 0; i < pemStart; i += i < 700 ? 3 : 5) offsets.push(i);
      let accepted = 0;
      for (const off of offsets) {
        const m = Buffer.from(q);
        m[off] ^= 1 << (off % 8);
        const v = await verifyTdx(m, { simulatedRoots: [sim.rootFingerprint], policy: { allowDebug: true } });
        if (v.accepted) accepted++;
        expect(v.checks.some((c) => !c.ok && (c.id.startsWith("tdx.") || c.id === "policy.debug"))).toBe(true);
      }
      expect(accepted).toBe(0);
      expect(offsets.length).toBeGreaterThan(300);
      expect(sigDataEnd).toBe(q.length);
    });
  }

  it("changing any base64 character of the PCK chain is rejected", async () => {
    const q = Buffer.from(sim.quote());
    const pemStart = q.indexOf("-----BEGIN");
    const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let tried = 0;
    for (let off = pemStart + 40; off < q.length - 40 && tried < 120; off += 29) {
      const c = String.fromCharCode(q[off]);
      if (!b64.includes(c) || q[off + 1] === 0x3d /* '=' : unused low bits */) continue;
      const m = Buffer.from(q);
      m[off] = b64.charCodeAt((b64.indexOf(c) + 17) % 64);
      const v = await verifyTdx(m, { simulatedRoots: [sim.rootFingerprint] });
      expect(v.accepted).toBe(false);
      expect(v.checks.some((x) => !x.ok && x.id.startsWith("tdx."))).toBe(true);
      tried++;
    }
    expect(tried).toBeGreaterThan(60);
  });

  it("truncating a quote anywhere is a parse failure, never an accept", async () => {
    const q = sim.quote({ version: 5 });
    for (let len = 0; len < q.length; len += 97) {
      const v = await verifyTdx(q.subarray(0, len), { simulatedRoots: [sim.rootFingerprint] });
      expect(v.accepted).toBe(false);
      expect(failed(v)[0]).toBe("tdx.parse");
    }
  });
});

describe("buckypaper simulate tdx → verify tdx", () => {
  it("writes a quote and collateral that verify only with the printed simulated root", async () => {
    const dir = mkdtempSync("/tmp/bk-sim-tdx-");
    const c = capture();
    expect(
      await simulateTdx(
        ["--out", dir, "--version", "5", "--mrtd", "ab".repeat(48), "--report-data", "cd".repeat(64), "--json"],
        c.io,
      ),
    ).toBe(0);
    const summary = JSON.parse(c.out.join(""));
    expect(summary.simulated).toBe(true);
    expect(readFileSync(path.join(dir, "quote.bin")).readUInt16LE(0)).toBe(5);

    const a = capture();
    expect(
      await verifyTdxCli(
        [
          "--quote",
          summary.quote,
          "--collateral",
          summary.collateral,
          "--offline",
          "--simulated-root",
          summary.rootSha256,
          "--mrtd",
          "ab".repeat(48),
        ],
        a.io,
      ),
    ).toBe(0);
    expect(a.out.join("\n")).toMatch(/ACCEPTED \(SIMULATED evidence\)/);
    expect(a.out.join("\n")).toMatch(/\[ok\] tdx\.collateral\.tcb-info/);

    const r = capture();
    expect(await verifyTdxCli(["--quote", summary.quote, "--offline"], r.io)).toBe(1);
    expect(r.out.join("\n")).toMatch(/\[FAIL\] tdx\.pck-chain/);
  });

  it("takes the tdx section and requireReportDataBinding from a whole policy document", async () => {
    const dir = mkdtempSync("/tmp/bk-sim-tdx-policy-");
    const c = capture();
    await simulateTdx(["--out", dir, "--report-data", "ef".repeat(64), "--json"], c.io);
    const { quote, rootSha256 } = JSON.parse(c.out.join(""));
    writeFileSync(
      `${dir}/policy.yaml`,
      "snp:\n  allowDebug: false\nrequireReportDataBinding: true\ntdx:\n  allowDebug: false\n",
    );
    const base = ["--quote", quote, "--offline", "--simulated-root", rootSha256, "--policy", `${dir}/policy.yaml`];
    const r = capture();
    expect(await verifyTdxCli(base, r.io)).toBe(1);
    expect(r.out.join("\n")).toMatch(/\[FAIL\] policy\.report-data: the policy requires/);
    expect(await verifyTdxCli([...base, "--report-data", "ef".repeat(64)], capture().io)).toBe(0);
  });

  it("rejects bad flags with a usage error", async () => {
    const c = capture();
    await expect(simulateTdx(["--out", "/tmp/x", "--version", "3"], c.io)).rejects.toThrow(/--version: 4 or 5/);
    await expect(simulateTdx(["--out", "/tmp/x", "--mrtd", "abc"], c.io)).rejects.toThrow(/--mrtd/);
  });
});
