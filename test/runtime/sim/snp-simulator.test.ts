// The SEV-SNP simulator and the verifier against each other: round trips for every product, version and
// signer, mutations of simulated evidence, every policy field, REPORT_DATA binding, CRLs, explain mode,
// and the KDS client over real HTTP with its disk cache and offline switch.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer, type Server } from "node:http";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { appraise, type AppraiseOptions } from "../../../runtime/attestation/appraise.js";
import { reportDataFor } from "../../../runtime/attestation/binding.js";
import type { Policy, TrustConfig } from "../../../runtime/attestation/policy.js";
import type { Verdict } from "../../../runtime/attestation/types.js";
import {
  CERT_GUID,
  SIGNED_LENGTH,
  REPORT_SIZE,
  buildCertTable,
  parseCertTable,
  parseReport,
  type SnpProduct,
} from "../../../runtime/attestation/snp/abi.js";
import { KdsClient, vcekPath } from "../../../runtime/attestation/snp/kds.js";
import { createSnpSimulator, type SnpSimulator } from "../../../runtime/sim/snp.js";
import { main } from "../../../cli/main.js";

const PRODUCTS: SnpProduct[] = ["Milan", "Genoa", "Turin"];
const sims = {} as Record<SnpProduct, SnpSimulator>;
const trustFor = (s: SnpSimulator, extra: object = {}): TrustConfig => ({
  snp: { simulated: [s.trustAnchor], ...extra },
});
const failed = (v: Verdict) => v.checks.filter((c) => !c.ok).map((c) => c.id);
const check = (v: Verdict, id: string) => v.checks.find((c) => c.id === id)!;
const M = "ab".repeat(48);

beforeAll(async () => {
  const all = await Promise.all(PRODUCTS.map((product) => createSnpSimulator({ product })));
  PRODUCTS.forEach((p, i) => (sims[p] = all[i]));
});

describe("SNP simulator round trips", () => {
  for (const product of PRODUCTS) {
    for (const version of [2, 3, 5] as const) {
      for (const signer of ["vcek", "vlek"] as const) {
        it(`${product} v${version} ${signer}: accepted only with the simulated anchor, and marked simulated`, async () => {
          const sim = sims[product];
          const reportData = randomBytes(64);
          const r = await sim.report({ measurement: M, reportData, version, signer });
          const parsed = parseReport(r.report);
          expect(parsed).toMatchObject({ version, signingKey: signer });
          expect(parsed.cpuid !== undefined).toBe(version >= 3);
          expect(parsed.launchMitVector !== undefined).toBe(version >= 5);
          const ev = { kind: "snp" as const, report: r.report, certTable: r.certTable };
          const v = await appraise(
            ev,
            { snp: { measurements: [M] } },
            { trust: trustFor(sim), expectedReportData: reportData },
          );
          expect(failed(v)).toEqual([]);
          expect(v).toMatchObject({ accepted: true, simulated: true });
          expect(v.claims).toMatchObject({
            platform: "snp",
            product,
            measurement: M,
            reportData: reportData.toString("hex"),
            extra: { simulated: true },
          });
          expect(check(v, "snp.simulated").detail).toMatch(/SIMULATED/);
          // Without the anchor the same evidence is refused: simulated roots are never trusted by default.
          const untrusted = await appraise(ev, {}, { trust: { snp: {} } });
          expect(untrusted.accepted).toBe(false);
          expect(untrusted.simulated).toBe(false);
          expect(check(untrusted, "snp.chain.ark").detail).toMatch(/ARK-\w+ .*is not the pinned root/);
          // Another simulator's anchor does not help either.
          const other = await appraise(ev, {}, { trust: trustFor(sims[product === "Milan" ? "Genoa" : "Milan"]) });
          expect(other.accepted).toBe(false);
        });
      }
    }
  }

  it("separate VEK + CA chain input works like the certificate table", async () => {
    const sim = sims.Genoa;
    const r = await sim.report({ measurement: M });
    const v = await appraise(
      { kind: "snp", report: r.report, vek: r.vek, caChain: [sim.caCerts.ark, sim.caCerts.ask] },
      {},
      { trust: trustFor(sim) },
    );
    expect(v.accepted).toBe(true);
  });

  it("product from CPUID; blank CPUID falls back to the VEK; unknown CPUID and contradictions are refused", async () => {
    const sim = sims.Genoa;
    const ok = async (o: object, opts: object = {}) =>
      appraise({ kind: "snp", ...(await sim.report(o)), vek: undefined }, {}, { trust: trustFor(sim), ...opts });
    expect(check(await ok({ version: 3 }), "snp.product").detail).toMatch(/Genoa, from CPUID family 0x19 model 0x11/);
    expect(check(await ok({ version: 3, cpuid: [0x19, 0xa0, 0] }), "snp.product")).toMatchObject({ ok: true });
    const blank = await ok({ version: 5, cpuid: [0, 0, 0] });
    expect(blank.accepted).toBe(true);
    expect(check(blank, "snp.product").detail).toMatch(/VEK productName 'Genoa' \(v5 report without CPUID/);
    const venice = await ok({ version: 3, cpuid: [0x1a, 0x50, 0] });
    expect(check(venice, "snp.product").detail).toMatch(/not a supported SEV-SNP product/);
    const milanCpuid = await ok({ version: 3, cpuid: [0x19, 0x01, 1] });
    expect(check(milanCpuid, "snp.product").detail).toMatch(/says Milan but the VEK is for 'Genoa'/);
    const told = await ok({ version: 3 }, { snpProduct: "Turin" });
    expect(check(told, "snp.product").detail).toMatch(/caller says Turin/);
  });

  it("Turin TCB carries fmc and the 8-byte hwID; a different TCB gets a different VCEK", async () => {
    const sim = sims.Turin;
    const tcb = { fmc: 3, bootloader: 4, tee: 1, snp: 9, microcode: 80 };
    const r = await sim.report({ tcb });
    const v = await appraise({ kind: "snp", report: r.report, certTable: r.certTable }, {}, { trust: trustFor(sim) });
    expect(v.accepted).toBe(true);
    expect(v.claims?.tcb).toEqual(tcb);
    const r2 = await sim.report({});
    expect(Buffer.from(r2.vek).equals(Buffer.from(r.vek))).toBe(false);
    // The VCEK of one TCB does not verify a report claiming another.
    const swapped = await appraise(
      { kind: "snp", report: r2.report, vek: r.vek, certTable: r2.certTable },
      {},
      { trust: trustFor(sim) },
    );
    expect(failed(swapped)).toEqual(expect.arrayContaining(["snp.signature", "snp.tcb"]));
  });
});

describe("SNP mutations of simulated evidence", () => {
  it("every single-byte change anywhere in the report is rejected", async () => {
    const sim = sims.Milan;
    const r = await sim.report({ measurement: M, version: 3 });
    const trust = trustFor(sim);
    let rejected = 0;
    // Every byte of the unsigned region, and a stride through the signed region (all fields covered).
    const offsets = [
      ...Array.from({ length: SIGNED_LENGTH / 3 }, (_, i) => i * 3),
      ...Array.from({ length: REPORT_SIZE - SIGNED_LENGTH }, (_, i) => SIGNED_LENGTH + i),
    ];
    for (const off of offsets) {
      const m = Uint8Array.from(r.report);
      m[off] ^= 0x01 << (off % 8);
      const v = await appraise(
        { kind: "snp", report: m, certTable: r.certTable },
        { snp: { allowDebug: true, allowMigrationAgent: true } },
        { trust },
      );
      if (!v.accepted) rejected++;
      else throw new Error(`accepted a report changed at 0x${off.toString(16)}`);
    }
    expect(rejected).toBe(offsets.length);
  });

  it("a correctly signed report the hypervisor requested (VMPL 0xffffffff) is refused", async () => {
    const sim = sims.Genoa;
    const r = await sim.report({ vmpl: 0xffffffff });
    const v = await appraise({ kind: "snp", report: r.report, certTable: r.certTable }, {}, { trust: trustFor(sim) });
    expect(v.accepted).toBe(false);
    expect(check(v, "snp.report").detail).toMatch(/requested by the hypervisor/);
  });

  it("a certificate table with a changed VCEK, ASK or ARK is rejected", async () => {
    const sim = sims.Milan;
    const r = await sim.report({});
    const entries = parseCertTable(r.certTable);
    expect(
      (
        await appraise(
          { kind: "snp", report: r.report, certTable: r.certTable },
          {},
          { trust: { snp: { simulated: [{ ...sim.trustAnchor, caCerts: [] }] } } },
        )
      ).accepted,
    ).toBe(true);
    for (let i = 0; i < entries.length; i++) {
      for (const where of [20, 200, entries[i].data.length - 10]) {
        const changed = entries.map((e, j) => ({ guid: e.guid, data: j === i ? Uint8Array.from(e.data) : e.data }));
        changed[i].data[where] ^= 0x40;
        // The anchor contributes only its fingerprint here, so the table's own certificates must carry the chain.
        const v = await appraise(
          { kind: "snp", report: r.report, certTable: buildCertTable(changed) },
          {},
          { trust: { snp: { simulated: [{ ...sim.trustAnchor, caCerts: [] }] } } },
        );
        expect(v.accepted, `${entries[i].guid}@${where}`).toBe(false);
      }
    }
  });

  it("a VCEK issued by an ASK of another (untrusted) hierarchy is rejected", async () => {
    const rogue = await createSnpSimulator({ product: "Milan", chipId: sims.Milan.chipId });
    const r = await rogue.report({});
    // Real (trusted) simulated ARK and ASK, rogue VCEK: the VCEK does not chain.
    const v = await appraise(
      { kind: "snp", report: r.report, vek: r.vek, caChain: [sims.Milan.caCerts.ask, sims.Milan.caCerts.ark] },
      {},
      { trust: trustFor(sims.Milan) },
    );
    expect(failed(v)).toContain("snp.chain.vek");
  });

  it("expired and not-yet-valid certificates are rejected at verification time", async () => {
    const sim = sims.Genoa;
    const r = await sim.report({});
    const ev = { kind: "snp" as const, report: r.report, certTable: r.certTable };
    for (const now of [
      new Date(Date.now() - 3 * 24 * 3600 * 1000),
      new Date(Date.now() + 8 * 365 * 24 * 3600 * 1000),
    ]) {
      const v = await appraise(ev, {}, { trust: trustFor(sim), now });
      expect(failed(v)).toEqual(["snp.chain.validity"]);
    }
  });
});

describe("SNP CRL", () => {
  it("rejects a revoked ASK/ASVK, accepts with a clean CRL, and can require a CRL", async () => {
    const sim = sims.Milan;
    const r = await sim.report({});
    const rv = await sim.report({ signer: "vlek" });
    const ev = { kind: "snp" as const, report: r.report, certTable: r.certTable };
    const evVlek = { kind: "snp" as const, report: rv.report, certTable: rv.certTable };
    const clean = await sim.crl();
    const revokedAsk = await sim.crl({ revoke: ["ask"] });
    expect((await appraise(ev, {}, { trust: trustFor(sim, { crls: [clean] }) })).accepted).toBe(true);
    const v = await appraise(ev, {}, { trust: trustFor(sim, { crls: [revokedAsk] }) });
    expect(failed(v)).toEqual(["snp.chain.crl"]);
    expect(check(v, "snp.chain.crl").detail).toMatch(/SEV-Milan .* is revoked/);
    // The ASVK is not on that CRL, so the VLEK chain stands; revoke it and it falls.
    expect((await appraise(evVlek, {}, { trust: trustFor(sim, { crls: [revokedAsk] }) })).accepted).toBe(true);
    expect(
      failed(await appraise(evVlek, {}, { trust: trustFor(sim, { crls: [await sim.crl({ revoke: ["asvk"] })] }) })),
    ).toEqual(["snp.chain.crl"]);
    // Stale CRL, CRL from another root, CRL required but absent.
    expect(
      check(
        await appraise(
          ev,
          {},
          { trust: trustFor(sim, { crls: [await sim.crl({ nextUpdate: new Date(Date.now() - 1000) })] }) },
        ),
        "snp.chain.crl",
      ).detail,
    ).toMatch(/stale/);
    expect(
      (await appraise(ev, {}, { trust: trustFor(sim, { crls: [await sims.Genoa.crl({ revoke: ["ask"] })] }) }))
        .accepted,
    ).toBe(true);
    expect(failed(await appraise(ev, {}, { trust: trustFor(sim, { crl: "require" }) }))).toEqual(["snp.chain.crl"]);
  });
});

describe("SNP policy", () => {
  const sim = () => sims.Milan;
  async function verdict(
    reportOpts: Parameters<SnpSimulator["report"]>[0],
    policy: Policy,
    opts: Partial<AppraiseOptions> = {},
  ) {
    const r = await sim().report(reportOpts);
    return appraise({ kind: "snp", report: r.report, certTable: r.certTable }, policy, {
      trust: trustFor(sim()),
      ...opts,
    });
  }

  it("lists every policy check in every verdict, constrained or not", async () => {
    const v = await verdict({}, {});
    const ids = v.checks.map((c) => c.id);
    for (const id of [
      "policy.debug",
      "policy.migration-agent",
      "policy.smt",
      "policy.single-socket",
      "policy.vmpl",
      "policy.measurement",
      "policy.min-tcb",
      "policy.min-launch-tcb",
      "policy.guest-svn",
      "policy.host-data",
      "policy.id-key",
      "policy.family-id",
      "policy.image-id",
      "policy.chip-id",
      "policy.abi",
      "policy.firmware",
      "policy.product",
      "policy.platform",
      "policy.committed-firmware",
      "policy.signer",
      "policy.report-data",
    ]) {
      expect(ids).toContain(id);
    }
    expect(v.checks.every((c) => c.detail.length > 5)).toBe(true);
  });

  const cases: Array<[string, Parameters<SnpSimulator["report"]>[0], Policy, Policy, string]> = [
    ["debug forbidden by default", { policy: { debug: true } }, {}, { snp: { allowDebug: true } }, "policy.debug"],
    [
      "migration agent forbidden by default",
      { policy: { migrateMa: true } },
      {},
      { snp: { allowMigrationAgent: true } },
      "policy.migration-agent",
    ],
    ["SMT", { policy: { smt: true } }, { snp: { allowSmt: false } }, { snp: { allowSmt: true } }, "policy.smt"],
    [
      "single socket",
      { policy: { singleSocket: false } },
      { snp: { requireSingleSocket: true } },
      {},
      "policy.single-socket",
    ],
    ["VMPL", { vmpl: 2 }, { snp: { vmpl: 0 } }, { snp: { vmpl: 2 } }, "policy.vmpl"],
    [
      "measurement",
      { measurement: M },
      { snp: { measurements: ["cd".repeat(48)] } },
      { snp: { measurements: ["cd".repeat(48), M] } },
      "policy.measurement",
    ],
    [
      "min TCB",
      { tcb: { bootloader: 3, tee: 0, snp: 8, microcode: 115 } },
      { snp: { minTcb: { microcode: 116 } } },
      { snp: { minTcb: { microcode: 115, snp: 8 } } },
      "policy.min-tcb",
    ],
    [
      "min launch TCB",
      { launchTcb: { bootloader: 3, tee: 0, snp: 7, microcode: 115 } },
      { snp: { minLaunchTcb: { snp: 8 } } },
      { snp: { minLaunchTcb: { snp: 7 } } },
      "policy.min-launch-tcb",
    ],
    ["guest SVN", { guestSvn: 4 }, { snp: { minGuestSvn: 5 } }, { snp: { minGuestSvn: 4 } }, "policy.guest-svn"],
    [
      "host data",
      { hostData: Buffer.alloc(32, 7) },
      { snp: { hostData: "08".repeat(32) } },
      { snp: { hostData: "07".repeat(32) } },
      "policy.host-data",
    ],
    [
      "ID key",
      { idKeyDigest: Buffer.alloc(48, 1) },
      { snp: { trustedIdKeyDigests: ["02".repeat(48)] } },
      { snp: { trustedIdKeyDigests: ["01".repeat(48)] } },
      "policy.id-key",
    ],
    [
      "author key",
      { authorKeyDigest: Buffer.alloc(48, 9) },
      { snp: { trustedAuthorKeyDigests: ["08".repeat(48)] } },
      { snp: { trustedIdKeyDigests: ["05".repeat(48)], trustedAuthorKeyDigests: ["09".repeat(48)] } },
      "policy.id-key",
    ],
    [
      "family id",
      { familyId: Buffer.alloc(16, 3) },
      { snp: { familyId: "04".repeat(16) } },
      { snp: { familyId: "03".repeat(16) } },
      "policy.family-id",
    ],
    [
      "image id",
      { imageId: Buffer.alloc(16, 3) },
      { snp: { imageId: "04".repeat(16) } },
      { snp: { imageId: "03".repeat(16) } },
      "policy.image-id",
    ],
    [
      "ABI",
      { policy: { abiMajor: 1, abiMinor: 2 } },
      { snp: { minAbi: { major: 1, minor: 3 } } },
      { snp: { minAbi: { major: 1, minor: 2 } } },
      "policy.abi",
    ],
    [
      "firmware",
      {},
      { snp: { minFirmware: { major: 1, minor: 56 } } },
      { snp: { minFirmware: { major: 1, minor: 55, build: 5 } } },
      "policy.firmware",
    ],
    ["product", {}, { snp: { products: ["Genoa", "Turin"] } }, { snp: { products: ["Milan"] } }, "policy.product"],
    ["VLEK", { signer: "vlek" }, { snp: { allowVlek: false } }, {}, "policy.signer"],
    [
      "platform features",
      { platformInfo: 0x23n },
      { snp: { requirePlatform: ["tsme", "ecc"] } },
      { snp: { requirePlatform: ["tsme", "alias-check-complete"] } },
      "policy.platform",
    ],
    [
      "host SMT",
      { platformInfo: 0x1n },
      { snp: { allowPlatformSmt: false } },
      { snp: { allowPlatformSmt: true } },
      "policy.platform",
    ],
    [
      "provisional firmware",
      { committedTcb: { bootloader: 3, tee: 0, snp: 7, microcode: 115 } },
      { snp: { requireCommittedFirmware: true } },
      {},
      "policy.committed-firmware",
    ],
  ];
  for (const [name, reportOpts, refuse, accept, id] of cases) {
    it(`${name}: refused with a reason naming ${id}, accepted when allowed`, async () => {
      const bad = await verdict(reportOpts, refuse);
      expect(failed(bad)).toEqual([id]);
      expect(check(bad, id).detail.length).toBeGreaterThan(10);
      const good = await verdict(reportOpts, accept);
      expect(failed(good)).toEqual([]);
    });
  }

  it("chip-id allow-list (and a masked CHIP_ID never matches)", async () => {
    const id = Buffer.from(sim().chipId).toString("hex");
    expect(failed(await verdict({}, { snp: { allowedChipIds: [id] } }))).toEqual([]);
    expect(failed(await verdict({}, { snp: { allowedChipIds: ["11".repeat(64)] } }))).toEqual(["policy.chip-id"]);
    const masked = await verdict({ signer: "vlek", maskChipId: true }, { snp: { allowedChipIds: [id] } });
    expect(failed(masked)).toEqual(["policy.chip-id"]);
  });

  it("REPORT_DATA binding: nonce + ephemeral key via binding.ts", async () => {
    const nonce = randomBytes(32);
    const spki = generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey.export({ type: "spki", format: "der" });
    const bound = { reportData: reportDataFor(nonce, spki) };
    expect((await verdict(bound, {}, { binding: { nonce, publicKeySpki: spki } })).accepted).toBe(true);
    const stale = await verdict(bound, {}, { binding: { nonce: randomBytes(32), publicKeySpki: spki } });
    expect(failed(stale)).toEqual(["policy.report-data"]);
    expect(failed(await verdict(bound, { requireReportDataBinding: true }))).toEqual(["policy.report-data"]);
    expect(failed(await verdict(bound, {}, { expectedReportData: new Uint8Array(65) }))).toEqual([
      "policy.report-data",
    ]);
  });

  it("explain mode: same checks, claims even when rejected, no network and no cache writes", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "bk-kds-"));
    try {
      let fetches = 0;
      const kds = {
        cacheDir: dir,
        fetch: (async () => {
          fetches++;
          return new Response("no", { status: 500 });
        }) as typeof fetch,
      };
      const r = await sim().report({ policy: { debug: true } });
      const ev = { kind: "snp" as const, report: r.report, vek: r.vek };
      const v = await appraise(ev, {}, { trust: trustFor(sim(), { kds }), explain: true });
      expect(v.accepted).toBe(false);
      expect(failed(v)).toEqual(["policy.debug"]);
      expect(v.claims?.debug).toBe(true);
      expect(fetches).toBe(0);
      expect(readdirSync(dir)).toEqual([]);
      // Outside explain mode a rejected verdict carries claims only when the evidence verified.
      const broken = Uint8Array.from(r.report);
      broken[0x90] ^= 1;
      const nv = await appraise({ ...ev, report: broken }, {}, { trust: trustFor(sim()) });
      expect(nv.claims).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("SNP KDS client over real HTTP", () => {
  let server: Server;
  let base = "";
  const hits: string[] = [];
  const pem = (der: Uint8Array) =>
    `-----BEGIN CERTIFICATE-----\n${Buffer.from(der).toString("base64")}\n-----END CERTIFICATE-----\n`;
  let vcekDer: Uint8Array;
  let report: Uint8Array;

  beforeAll(async () => {
    const sim = sims.Turin;
    const r = await sim.report({ measurement: M });
    vcekDer = r.vek;
    report = r.report;
    const tcbPath = vcekPath("Turin", sim.chipId, { fmc: 0, bootloader: 1, tee: 0, snp: 2, microcode: 71 });
    const crl = await sim.crl();
    server = createServer((req, res) => {
      hits.push(req.url!);
      if (req.url === tcbPath) return res.end(Buffer.from(vcekDer));
      if (req.url === "/vcek/v1/Turin/cert_chain") return res.end(pem(sim.caCerts.ask) + pem(sim.caCerts.ark));
      if (req.url === "/vcek/v1/Turin/crl") return res.end(Buffer.from(crl));
      res.statusCode = 404;
      res.end();
    });
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(() => new Promise<void>((ok) => server.close(() => ok())));

  it("fetches the VCEK by 8-byte hwID + fmcSPL, the chain and the CRL, caches them on disk, then works offline", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "bk-kds-"));
    try {
      const ev = { kind: "snp" as const, report };
      const online = await appraise(
        ev,
        {},
        {
          trust: trustFor(sims.Turin, {
            kds: new KdsClient({ baseUrl: base, cacheDir: dir }),
            simulated: [{ ...sims.Turin.trustAnchor, caCerts: [] }],
          }),
        },
      );
      expect(failed(online)).toEqual([]);
      expect(check(online, "snp.vek").detail).toMatch(/AMD KDS/);
      expect(check(online, "snp.chain.crl").detail).toMatch(/not on the ARK's CRL/);
      expect(
        hits.some((h) => /^\/vcek\/v1\/Turin\/[0-9a-f]{16}\?fmcSPL=0&blSPL=1&teeSPL=0&snpSPL=2&ucodeSPL=71$/.test(h)),
      ).toBe(true);
      const count = hits.length;
      // A new client over the same cache directory, network forbidden: same verdict, no requests.
      const offline = await appraise(
        ev,
        {},
        {
          trust: trustFor(sims.Turin, {
            kds: { baseUrl: base, cacheDir: dir, offline: true },
            simulated: [{ ...sims.Turin.trustAnchor, caCerts: [] }],
          }),
        },
      );
      expect(failed(offline)).toEqual([]);
      expect(hits.length).toBe(count);
      // Offline with an empty cache: refused, saying why.
      const empty = mkdtempSync(path.join(os.tmpdir(), "bk-kds-"));
      const none = await appraise(
        ev,
        {},
        { trust: trustFor(sims.Turin, { kds: { baseUrl: base, cacheDir: empty, offline: true } }) },
      );
      expect(check(none, "snp.vek").detail).toMatch(/network access is off/);
      expect(hits.length).toBe(count);
      rmSync(empty, { recursive: true, force: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("builds KDS paths: 64-byte hwID for Milan/Genoa, 8-byte hwID + fmcSPL for Turin", () => {
    const chip = Uint8Array.from({ length: 64 }, (_, i) => i);
    const tcb = { bootloader: 3, tee: 0, snp: 8, microcode: 115 };
    expect(vcekPath("Milan", chip, tcb)).toBe(
      `/vcek/v1/Milan/${Buffer.from(chip).toString("hex")}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115`,
    );
    expect(vcekPath("Turin", chip, { ...tcb, fmc: 1 })).toBe(
      "/vcek/v1/Turin/0001020304050607?fmcSPL=1&blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115",
    );
  });

  it("reports KDS HTTP errors as a failed check, never a crash", async () => {
    const sim = sims.Turin;
    const r = await sim.report({ tcb: { fmc: 9, bootloader: 9, tee: 9, snp: 9, microcode: 9 } });
    const v = await appraise(
      { kind: "snp", report: r.report },
      {},
      { trust: trustFor(sim, { kds: { baseUrl: base } }) },
    );
    expect(check(v, "snp.vek").detail).toMatch(/HTTP 404/);
  });
});

describe("buckypaper simulate snp → verify snp", () => {
  it("writes a report + certs that verify only with --simulated-ca", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "bk-sim-"));
    const io = () => {
      const out: string[] = [];
      return { out, io: { out: (t: string) => out.push(t), err: (t: string) => out.push(t) } };
    };
    try {
      const a = io();
      expect(
        await main(
          [
            "simulate",
            "snp",
            "--out",
            dir,
            "--product",
            "genoa",
            "--version",
            "5",
            "--measurement",
            M,
            "--report-data",
            "0102",
            "--json",
          ],
          a.io,
        ),
      ).toBe(0);
      expect(JSON.parse(a.out.join(""))).toMatchObject({ product: "Genoa", simulated: true });
      const args = [
        "verify",
        "snp",
        "--report",
        `${dir}/report.bin`,
        "--certs-from-table",
        `${dir}/certs.bin`,
        "--offline",
        "--kds-cache",
        dir,
      ];
      const b = io();
      expect(
        await main([...args, "--simulated-ca", `${dir}/ark.pem`, "--measurement", M, "--report-data", "0102"], b.io),
      ).toBe(0);
      expect(b.out.join("\n")).toMatch(/ACCEPTED \(SIMULATED evidence\)/);
      expect(await main(args, io().io)).toBe(1);
      expect(await main([...args, "--simulated-ca", `${dir}/ark.pem`, "--report-data", "0103"], io().io)).toBe(1);
      expect(await main(["simulate", "snp", "--out", dir, "--version", "4"], io().io)).toBe(2);
      expect(await main(["simulate", "snp"], io().io)).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("certificate table uses the GHCB GUIDs in RFC 4122 byte order", async () => {
    const r = await sims.Milan.report({});
    expect(Buffer.from(r.certTable.subarray(0, 16)).toString("hex")).toBe(CERT_GUID.vcek.replace(/-/g, ""));
    expect(parseCertTable(r.certTable).map((e) => e.guid)).toEqual([CERT_GUID.vcek, CERT_GUID.ask, CERT_GUID.ark]);
  });
});
