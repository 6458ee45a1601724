// Property-based fuzzing of the strict CBOR decoder and the NitroTPM document parser: arbitrary bytes and
// mutations of a real document either parse or fail with a typed EvidenceFormatError naming the field, and
// verification never throws and never accepts a mutated document.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { decodeCbor, parseNitroDocument, verifyNitroDocument } from "../../../runtime/attestation/aws/index.js";
import { EvidenceFormatError } from "../../../runtime/attestation/types.js";

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const here = path.dirname(fileURLToPath(import.meta.url));
const realDoc = Buffer.from(
  JSON.parse(readFileSync(path.join(here, "aws-nitro/vaportpm-nitro-fixture.json"), "utf8")).attestation.nitro.document,
  "hex",
);
const when = new Date(parseNitroDocument(realDoc).timestamp + 1000);

function typedOnly(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof EvidenceFormatError))
      throw new Error(`untyped ${(e as Error)?.name}: ${(e as Error)?.message}`, { cause: e });
    expect((e as EvidenceFormatError).field).toBeTruthy();
  }
}

describe("CBOR subset decoder fuzzing", () => {
  it("arbitrary bytes: a value or a typed error", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (b) => typedOnly(() => decodeCbor(b, "fuzz", 18))),
      { numRuns: RUNS * 3 },
    );
  });

  it("adversarial heads (huge lengths, deep nesting, breaks, tags) stay typed and bounded", () => {
    const heads = fc.constantFrom(0x9f, 0xbf, 0xff, 0x5b, 0x7b, 0x9b, 0xbb, 0xd2, 0xc0, 0xf7, 0xf9, 0x1b, 0x3b, 0x5f);
    fc.assert(
      fc.property(fc.array(fc.oneof(heads, fc.integer({ min: 0, max: 255 })), { maxLength: 64 }), (xs) =>
        typedOnly(() => decodeCbor(Uint8Array.from(xs), "fuzz", 18)),
      ),
      { numRuns: RUNS * 3 },
    );
  });
});

describe("NitroTPM document fuzzing", () => {
  it("arbitrary bytes: parse throws only typed errors; verify never throws and never accepts", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1024 }), (b) => {
        typedOnly(() => parseNitroDocument(b));
        const v = verifyNitroDocument(b, { now: when });
        expect(v.checks.every((c) => c.ok)).toBe(false);
      }),
      { numRuns: RUNS },
    );
  });

  it("mutations of the real document (bytes set, spliced, truncated) are never accepted", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(realDoc.length - 1), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.option(fc.nat(realDoc.length - 1)),
        (edits, cut) => {
          const b = Buffer.from(realDoc);
          let changed = false;
          for (const [i, x] of edits) {
            changed ||= b[i] !== x;
            b[i] = x;
          }
          const m = cut === null ? b : b.subarray(0, cut);
          if (!changed && cut === null) return;
          typedOnly(() => parseNitroDocument(m));
          const v = verifyNitroDocument(m, { now: when });
          expect(v.checks.every((c) => c.ok)).toBe(false);
        },
      ),
      { numRuns: RUNS },
    );
  });
});
