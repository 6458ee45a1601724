// Property-based fuzzing of every TDX parser and of the whole verifier: random, truncated and mutated
// input yields a typed EvidenceFormatError (parsers) or a rejected verdict (verifier), never a crash and
// never an accept.
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { hasShared, sharedPath } from "../../support/shared.js";
import { EvidenceFormatError } from "../../../runtime/attestation/types.js";
import { parseHeader, parseQuote, parseTdReport, verifyTdx } from "../../../runtime/attestation/tdx/index.js";
import { children, decodeOid, readTlv } from "../../../runtime/attestation/tdx/der.js";
import { parsePckExtension, pemCertificates } from "../../../runtime/attestation/tdx/pck.js";
import {
  addCollateralFile,
  emptyCollateral,
  evaluateCollateral,
  rawJsonMember,
} from "../../../runtime/attestation/tdx/collateral.js";
import { checkTdxPolicy } from "../../../runtime/attestation/tdx/validate.js";
import { verifyQuote } from "../../../runtime/attestation/tdx/verify.js";
import { TdxSimulator } from "../../../runtime/sim/tdx.js";

const RUNS = 250;

/** Runs a parser; only EvidenceFormatError may escape. */
function typedOnly(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof EvidenceFormatError))
      throw new Error(`untyped ${(e as Error)?.name}: ${(e as Error)?.message}`, { cause: e });
    expect(e.message.length).toBeGreaterThan(0);
  }
}

let sim: TdxSimulator;
let simQuote: Uint8Array;
let seeds: Uint8Array[];
beforeAll(async () => {
  sim = await TdxSimulator.create();
  simQuote = sim.quote({ version: 5, mrTd: Buffer.alloc(48, 3) });
  seeds = [simQuote, sim.quote({ version: 4 })];
  if (hasShared)
    seeds.push(
      readFileSync(sharedPath("evidence/tdx/go-tdx-guest-spr-e4-v4/quote.bin")),
      readFileSync(sharedPath("evidence/tdx/trustee-tdx-quote-5/quote.bin")),
    );
});

/** A seed quote with 1..8 bytes XOR-ed by non-zero values. */
const mutated = () =>
  fc
    .tuple(fc.nat(), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 8 }))
    .map(([s, muts]) => {
      const q = Buffer.from(seeds[s % seeds.length]);
      for (const [pos, x] of muts) q[pos % q.length] ^= x;
      return q;
    });
const truncated = () =>
  fc.tuple(fc.nat(), fc.nat()).map(([s, n]) => seeds[s % seeds.length].subarray(0, n % seeds[s % seeds.length].length));
/** Valid headers with random remainder, so the fuzzer gets past the first checks. */
const headed = () =>
  fc.tuple(fc.constantFrom(4, 5), fc.uint8Array({ maxLength: 1400 })).map(([v, rest]) => {
    const h = Buffer.from(simQuote.subarray(0, 48));
    h.writeUInt16LE(v, 0);
    return Buffer.concat([h, rest]);
  });
const anyQuoteBytes = () => fc.oneof(fc.uint8Array({ maxLength: 6000 }), mutated(), truncated(), headed());

describe("TDX parsers under fuzzing", () => {
  it("parseQuote / parseHeader: typed errors only", () => {
    fc.assert(
      fc.property(anyQuoteBytes(), (b) => {
        typedOnly(() => parseQuote(b));
        typedOnly(() => parseHeader(b));
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it("parseTdReport: typed errors only", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1100 }), (b) => typedOnly(() => parseTdReport(b))),
      { numRuns: RUNS },
    );
  });

  it("DER reader and the PCK SGX extension: typed errors only", () => {
    const leaf = pemCertificates(parseQuote(simQuote).pckChainPem)[0];
    const derMut = fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 }), fc.nat()).map(([p, x, cut]) => {
      const d = Buffer.from(leaf);
      d[p % d.length] ^= x;
      return cut % 5 === 0 ? d.subarray(0, cut % d.length) : d;
    });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }), derMut), (b) => {
        typedOnly(() => parsePckExtension(b));
        typedOnly(() => children(b));
        typedOnly(() => readTlv(b, 0));
        typedOnly(() => (b.length ? decodeOid(b) : undefined));
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it("collateral files and raw JSON members: never throw", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string(), fc.json(), fc.constantFrom('{"tcbInfo":{"a":"}"},"signature":"00"}', '{"tcbInfo":')),
        (s) => {
          const col = emptyCollateral();
          addCollateralFile(Buffer.from(s), col);
          const raw = rawJsonMember(s, "tcbInfo");
          expect(raw === undefined || typeof raw === "string").toBe(true);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("policy documents: a clear Error naming the field, or a policy", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        try {
          checkTdxPolicy(v);
        } catch (e) {
          expect((e as Error).message).toMatch(/^tdx policy/);
        }
      }),
      { numRuns: RUNS },
    );
  });
});

describe("TDX verifier under fuzzing", () => {
  it("random, truncated and mutated quotes are never accepted and never crash (simulated root trusted)", async () => {
    await fc.assert(
      fc.asyncProperty(anyQuoteBytes(), async (b) => {
        const pemAt = Buffer.from(b).indexOf("-----BEGIN");
        const v = await verifyTdx(b, { simulatedRoots: [sim.rootFingerprint], policy: { allowDebug: true } });
        expect(v.checks.length).toBeGreaterThan(0);
        expect(v.checks.some((c) => c.id === "tdx.internal")).toBe(false);
        // A mutation that only touched PEM whitespace or the unsigned tail can leave the quote intact: compare bytes.
        if (v.accepted) {
          const q = parseQuote(b);
          const same = seeds.some((s) => {
            const o = parseQuote(s);
            return (
              Buffer.from(o.signedBytes).equals(Buffer.from(q.signedBytes)) &&
              Buffer.from(o.signature).equals(Buffer.from(q.signature)) &&
              Buffer.from(o.qeReport.raw).equals(Buffer.from(q.qeReport.raw)) &&
              Buffer.from(o.attestationKey).equals(Buffer.from(q.attestationKey)) &&
              Buffer.from(o.qeAuthData).equals(Buffer.from(q.qeAuthData)) &&
              pemCertificates(o.pckChainPem).every((d, i) =>
                Buffer.from(d).equals(Buffer.from(pemCertificates(q.pckChainPem)[i] ?? [])),
              )
            );
          });
          expect(same, `accepted a changed quote (PEM at ${pemAt})`).toBe(true);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("mutated collateral never crashes the evaluation", async () => {
    const q = parseQuote(simQuote);
    const chain = verifyQuote(q, { simulatedRoots: [sim.rootFingerprint] }).chain!;
    const good = sim.collateral();
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.nat(), fc.integer({ min: 1, max: 127 }), async (which, pos, x) => {
        const col = {
          ...good,
          tcbInfos: [...good.tcbInfos],
          qeIdentities: [...good.qeIdentities],
          certificates: [...good.certificates],
        };
        if (which % 3 === 0) {
          const t = Buffer.from(col.tcbInfos[0]);
          t[pos % t.length] ^= x;
          col.tcbInfos[0] = t.toString("latin1");
        } else if (which % 3 === 1) {
          const t = Buffer.from(col.qeIdentities[0]);
          t[pos % t.length] ^= x;
          col.qeIdentities[0] = t.toString("latin1");
        } else {
          const c = Buffer.from(col.certificates[0]);
          c[pos % c.length] ^= x;
          col.certificates[0] = c;
        }
        const r = await evaluateCollateral(q, chain, col, new Date());
        expect(Array.isArray(r.checks)).toBe(true);
        // A changed signed byte never leaves every collateral check passing with the same statuses.
        if (r.checks.every((c) => c.ok)) expect(r.statuses).toEqual(["UpToDate", "UpToDate"]);
      }),
      { numRuns: RUNS },
    );
  });
});
