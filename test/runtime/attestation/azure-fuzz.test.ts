// Azure CVM evidence built around the TDX simulator (runs without ../shared): round trip, mutation tests,
// and property-based fuzzing of every Azure parser and of verifyAzure.
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { hasShared, sharedPath } from "../../support/shared.js";
import { EvidenceFormatError } from "../../../runtime/attestation/types.js";
import { TdxSimulator } from "../../../runtime/sim/tdx.js";
import {
  attestationKey,
  bytesField,
  parseAzureEvidence,
  parseAzurePolicy,
  parseBincodeTpmQuote,
  parseHclReport,
  parseTpmQuoteFile,
  parseTpmsAttest,
  verifyAzure,
  type AzureEvidence,
} from "../../../runtime/attestation/azure/index.js";
import { buildAzureSnpEvidence, buildAzureTdxEvidence, type AzureTdxFixture } from "./azure-fixtures.js";
import { createSnpSimulator } from "../../../runtime/sim/snp.js";
import { appraise } from "../../../runtime/attestation/appraise.js";
import { azureQuoteExtraData, reportDataFor } from "../../../runtime/attestation/binding.js";
import { createHash, generateKeyPairSync } from "node:crypto";

const RUNS = 200;
let sim: TdxSimulator;
let fx: AzureTdxFixture;
const opts = () => ({ trust: { tdx: { simulatedRoots: [sim.rootFingerprint] } }, tpmNonce: fx.nonce });
const failed = (v: { checks: { id: string; ok: boolean }[] }) => v.checks.filter((c) => !c.ok).map((c) => c.id);

function typedOnly(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof EvidenceFormatError))
      throw new Error(`untyped ${(e as Error)?.name}: ${(e as Error)?.message}`, { cause: e });
  }
}

beforeAll(async () => {
  sim = await TdxSimulator.create();
  fx = buildAzureTdxEvidence(sim);
});

describe("simulated Azure TDX evidence", () => {
  it("verifies end to end only with the simulated Intel root configured, and says simulated", async () => {
    const v = await verifyAzure(fx.evidence, {}, opts());
    expect(failed(v)).toEqual([]);
    expect(v.accepted).toBe(true);
    expect(v.simulated).toBe(true);
    expect(v.claims?.platform).toBe("azure-tdx");
    const untrusted = await verifyAzure(fx.evidence, {}, { tpmNonce: fx.nonce });
    expect(untrusted.accepted).toBe(false);
    expect(failed(untrusted)).toEqual(["tdx.pck-chain"]);
  });

  it("a TD quote bound to other runtime claims is refused", async () => {
    const other = buildAzureTdxEvidence(sim, { userData: "11".repeat(64) });
    const v = await verifyAzure({ ...fx.evidence, tdQuote: other.evidence.tdQuote }, {}, opts());
    expect(failed(v)).toEqual(expect.arrayContaining(["azure.runtime-binding", "azure.td-report-match"]));
  });

  it("mutation: every flipped byte of the runtime claims, TPM quote and TD quote's signed part is rejected", async () => {
    const hcl = fx.evidence.hclReport;
    const regions: Array<[keyof Extract<AzureEvidence, { kind: "azure-tdx" }> | "msg", number, number]> = [
      ["hclReport", 0x4d4, hcl.length], // runtime JSON (bound by the TD quote's REPORTDATA)
      ["msg", 0, fx.evidence.tpmQuote.message.length],
      ["tdQuote", 0, 632], // header + TD report body
    ];
    let n = 0;
    for (const [field, from, to] of regions) {
      for (let off = from; off < to; off += 7) {
        const ev = { ...fx.evidence, tpmQuote: { ...fx.evidence.tpmQuote } } as Extract<
          AzureEvidence,
          { kind: "azure-tdx" }
        >;
        if (field === "msg") {
          const m = Buffer.from(ev.tpmQuote.message);
          m[off] ^= 0x04;
          ev.tpmQuote.message = m;
        } else {
          const b = Buffer.from(ev[field as "hclReport" | "tdQuote"]);
          b[off] ^= 0x04;
          ev[field as "hclReport" | "tdQuote"] = b;
        }
        const v = await verifyAzure(ev, { tdx: { allowDebug: true } }, opts());
        expect(v.accepted, `${field}@${off}`).toBe(false);
        n++;
      }
    }
    expect(n).toBeGreaterThan(150);
  });

  it("an attestation key swapped in the claims no longer verifies the TPM quote or the binding", async () => {
    const hcl = Buffer.from(fx.evidence.hclReport);
    const at = hcl.indexOf('"n":"') + 10;
    hcl[at] = hcl[at] === 0x41 ? 0x42 : 0x41;
    const v = await verifyAzure({ ...fx.evidence, hclReport: hcl }, {}, opts());
    expect(failed(v)).toEqual(expect.arrayContaining(["azure.runtime-binding", "vtpm.quote-signature"]));
  });

  it("TPMT_SIGNATURE-wrapped RSASSA signatures are accepted like raw ones", async () => {
    const sig = fx.evidence.tpmQuote.signature;
    const wrapped = Buffer.concat([Buffer.from([0x00, 0x14, 0x00, 0x0b, sig.length >> 8, sig.length & 0xff]), sig]);
    const v = await verifyAzure(
      { ...fx.evidence, tpmQuote: { ...fx.evidence.tpmQuote, signature: wrapped } },
      {},
      opts(),
    );
    expect(v.accepted).toBe(true);
  });
});

describe("simulated Azure SNP evidence (SEV-SNP simulator behind the HCL)", () => {
  it("verifies end to end with the simulated AMD root configured; hash types SHA-256/384/512 all bind", async () => {
    const snp = await createSnpSimulator({ product: "Genoa" });
    for (const hashType of [1, 2, 3] as const) {
      const ev = await buildAzureSnpEvidence(snp, { hashType });
      const v = await verifyAzure(
        ev,
        {},
        { trust: { snp: { simulated: [snp.trustAnchor] } }, tpmNonce: Buffer.from("fixture-nonce") },
      );
      expect(failed(v)).toEqual([]);
      expect(v.simulated).toBe(true);
      expect(v.claims?.product).toBe("Genoa");
    }
    const ev = await buildAzureSnpEvidence(snp);
    const untrusted = await verifyAzure(ev, {}, {});
    expect(untrusted.accepted).toBe(false);
    expect(failed(untrusted).some((id) => id.startsWith("snp."))).toBe(true);
    // Mutations of the SNP report's signed part and of the runtime claims are all refused.
    const signed = [0x20 + 0x50, 0x20 + 0x90, 0x20 + 0x1a0, 0x4d4 + 10, ev.hclReport.length - 3];
    for (const off of signed) {
      const hcl = Buffer.from(ev.hclReport);
      hcl[off] ^= 0x01;
      const m = await verifyAzure({ ...ev, hclReport: hcl }, {}, { trust: { snp: { simulated: [snp.trustAnchor] } } });
      expect(m.accepted, `offset ${off}`).toBe(false);
    }
  });
});

describe("Nitride's binding on Azure (as the enclaivelet produces it)", () => {
  it("user-data = reportDataFor(nonce, key) and TPM extraData = SHA-256(user-data): accepted through appraise()", async () => {
    const nonce = Buffer.from("nitride-nonce-0001");
    const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const spki = publicKey.export({ format: "der", type: "spki" });
    const rd = reportDataFor(nonce, spki);
    const snp = await createSnpSimulator();
    const ev = await buildAzureSnpEvidence(snp, {
      userData: rd.toString("hex"),
      nonce: createHash("sha256").update(rd).digest(),
    });
    const trustCfg = { snp: { simulated: [snp.trustAnchor] } };
    const v = await appraise(
      ev,
      { requireReportDataBinding: true },
      { trust: trustCfg, binding: { nonce, publicKeySpki: spki } },
    );
    expect(failed(v)).toEqual([]);
    expect(v.claims?.reportData).toBe(rd.toString("hex"));
    // A replay under another nonce fails both the user-data binding and the TPM quote freshness.
    const replay = await appraise(
      ev,
      {},
      { trust: trustCfg, binding: { nonce: Buffer.from("other"), publicKeySpki: spki } },
    );
    expect(failed(replay).sort()).toEqual(["policy.report-data", "vtpm.nonce"]);
  });

  it("with the registered user-data hash: bound v2 accepted; another hash, no hash, or an explicit nonce beside the binding refused", async () => {
    const nonce = Buffer.from("nitride-nonce-0002");
    const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const spki = publicKey.export({ format: "der", type: "spki" });
    const registered = createHash("sha256").update("#cloud-config\n").digest();
    const snp = await createSnpSimulator();
    const trustCfg = { snp: { simulated: [snp.trustAnchor] } };
    const evidenceBinding = async (ud?: Buffer) => {
      const rd = reportDataFor(nonce, spki, ud);
      return buildAzureSnpEvidence(snp, { userData: rd.toString("hex"), nonce: azureQuoteExtraData(rd) });
    };
    const binding = { nonce, publicKeySpki: spki, userDataSha256: registered };
    const ok = await appraise(
      await evidenceBinding(registered),
      { requireReportDataBinding: true },
      { trust: trustCfg, binding },
    );
    expect(failed(ok)).toEqual([]);
    expect(ok.checks.find((c) => c.id === "vtpm.nonce")?.detail).toMatch(/REGISTERED user-data hash/);
    const other = await appraise(
      await evidenceBinding(createHash("sha256").update("#cloud-config\nruncmd: [[id]]\n").digest()),
      {},
      { trust: trustCfg, binding },
    );
    expect(failed(other).sort()).toEqual(["policy.report-data", "vtpm.nonce"]);
    // The agent that binds no user-data (binding v1) is not accepted as "unbound" when a hash is registered.
    const v1 = await appraise(await evidenceBinding(undefined), {}, { trust: trustCfg, binding });
    expect(failed(v1).sort()).toEqual(["policy.report-data", "vtpm.nonce"]);
    // An explicit TPM nonce never replaces the binding (it would drop the key and user-data from the quote).
    const ev = await evidenceBinding(registered);
    for (const explicit of [
      { tpmNonce: azureQuoteExtraData(reportDataFor(nonce, spki, registered)) },
      { trust: { ...trustCfg, azure: { tpmNonce: Buffer.from("fixture-nonce") } } },
    ]) {
      const v = await verifyAzure(ev, {}, { trust: trustCfg, binding, ...explicit });
      expect(failed(v)).toEqual(["vtpm.nonce"]);
      expect(v.checks.find((c) => c.id === "vtpm.nonce")?.detail).toMatch(/both a nonce\/key binding and an explicit/);
    }
  });
});

/** Seeds for mutation: the simulated HCL report and TPM quote, plus the genuine ones when ../shared exists. */
function seeds(): { hcl: Uint8Array[]; msg: Uint8Array[]; bincode: Uint8Array[]; json: string[] } {
  const s = {
    hcl: [fx.evidence.hclReport],
    msg: [fx.evidence.tpmQuote.message],
    bincode: [] as Uint8Array[],
    json: [] as string[],
  };
  if (hasShared) {
    const d = sharedPath("evidence/cloud");
    s.hcl.push(
      readFileSync(`${d}/azure-snp-vtpm-trustee/hcl-report.bin`),
      readFileSync(`${d}/azure-tdx-vtpm-trustee/hcl-report.bin`),
    );
    s.bincode.push(readFileSync(`${d}/azure-snp-vtpm-trustee/quote.bin`));
    s.msg.push(readFileSync(`${d}/azure-snp-vtpm-trustee/tpm-quote.msg`));
    s.json.push(
      readFileSync(`${d}/azure-snp-vtpm-trustee/evidence-v1.json`, "utf8"),
      readFileSync(`${d}/azure-tdx-vtpm-trustee/evidence-v1.json`, "utf8"),
    );
  }
  return s;
}

const mutate = (pool: Uint8Array[]) =>
  fc
    .tuple(
      fc.nat(),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 6 }),
      fc.option(fc.nat()),
    )
    .map(([i, muts, cut]) => {
      const b = Buffer.from(pool[i % pool.length]);
      for (const [p, x] of muts) b[p % b.length] ^= x;
      return cut === null ? b : b.subarray(0, cut % (b.length + 1));
    });

describe("Azure parsers under fuzzing", () => {
  it("parseHclReport and the AK from its claims: typed errors only", () => {
    const s = seeds();
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 3000 }), mutate(s.hcl)), (b) => {
        typedOnly(() => attestationKey(parseHclReport(b).runtimeClaims));
      }),
      { numRuns: RUNS },
    );
  });

  it("parseTpmsAttest, bincode and JSON TPM quote files: typed errors only", () => {
    const s = seeds();
    const pool = [...s.msg, ...s.bincode];
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 400 }),
          mutate(pool),
          fc.json().map((j) => Buffer.from(j)),
        ),
        (b) => {
          typedOnly(() => parseTpmsAttest(b));
          typedOnly(() => parseBincodeTpmQuote(b));
          typedOnly(() => parseTpmQuoteFile(b));
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("parseAzureEvidence and bytesField: typed errors only", () => {
    const s = seeds();
    const jsonMut = s.json.length
      ? fc.tuple(fc.nat(), fc.nat(), fc.constantFrom('"', "{", "]", "0", "x", ",")).map(([i, p, ch]) => {
          const t = s.json[i % s.json.length];
          const at = p % t.length;
          return t.slice(0, at) + ch + t.slice(at + 1);
        })
      : fc.json();
    fc.assert(
      fc.property(fc.oneof(fc.json(), fc.string(), jsonMut), (t) => {
        typedOnly(() => parseAzureEvidence(t));
        typedOnly(() => bytesField(JSON.parse(JSON.stringify(t)), "f"));
      }),
      { numRuns: RUNS },
    );
  });

  it("parseAzurePolicy: an Error naming the policy field, or a policy", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        try {
          parseAzurePolicy(v);
        } catch (e) {
          expect((e as Error).message).toMatch(/^policy azure/);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("verifyAzure on mutated evidence never throws and never accepts a changed bound region", async () => {
    const pool = seeds();
    await fc.assert(
      fc.asyncProperty(
        mutate([fx.evidence.hclReport]),
        mutate([fx.evidence.tpmQuote.message]),
        fc.boolean(),
        async (hcl, msg, which) => {
          const ev = which
            ? { ...fx.evidence, hclReport: hcl }
            : { ...fx.evidence, tpmQuote: { ...fx.evidence.tpmQuote, message: msg } };
          const v = await verifyAzure(ev, {}, opts());
          const changedBound = which
            ? !Buffer.from(hcl.subarray(0x20)).equals(Buffer.from(fx.evidence.hclReport.subarray(0x20)))
            : !Buffer.from(msg).equals(Buffer.from(fx.evidence.tpmQuote.message));
          // The HCL header (first 0x20 bytes) and the TDREPORT's non-compared bytes are unsigned and unused; anything else must fail.
          if (v.accepted && changedBound && which) {
            const a = parseHclReport(hcl);
            const b = parseHclReport(fx.evidence.hclReport);
            expect(Buffer.from(a.runtimeData).equals(Buffer.from(b.runtimeData))).toBe(true);
          } else if (changedBound && !which) {
            expect(v.accepted).toBe(false);
          }
        },
      ),
      { numRuns: 120 },
    );
    expect(pool.hcl.length).toBeGreaterThan(0);
  });
});
