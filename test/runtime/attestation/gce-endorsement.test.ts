// GCE launch endorsements: strict protobuf decoding, signature and signer chain to a configured root, and what
// the endorsement says about a report (vCPU count → measurement, SVN, launch policy). No real endorsement or
// GCE-cc-tcb-root could be obtained here (test/fixtures/gce/PROVENANCE.md), so a simulated Google signer
// (runtime/sim/gce-endorsement.ts) produces byte-exact VMLaunchEndorsements. One-bit negatives and fuzzing.
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { randomBytes } from "node:crypto";
import { EvidenceFormatError } from "../../../runtime/attestation/types.js";
import {
  parseLaunchEndorsement,
  validateGceEndorsement,
  verifyGceEndorsement,
} from "../../../runtime/attestation/gce/index.js";
import {
  createGceEndorsementSimulator,
  pb,
  type GceEndorsementSimulator,
} from "../../../runtime/sim/gce-endorsement.js";
import { flipBit } from "./gce-fixtures.js";

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const M = (n: number) => Buffer.alloc(48, n).toString("hex");
const MEASUREMENTS = { 2: M(2), 4: M(4), 8: M(8) };

let sim: GceEndorsementSimulator;
let other: GceEndorsementSimulator;
let good: Buffer;
beforeAll(async () => {
  [sim, other] = await Promise.all([createGceEndorsementSimulator(), createGceEndorsementSimulator()]);
  good = sim.sign({
    clSpec: 612345n,
    sevSnp: { svn: 3, measurements: MEASUREMENTS },
    tdx: {
      svn: 2,
      measurements: [
        { ramGib: 16, mrtd: M(0x16) },
        { ramGib: 32, earlyAccept: true, mrtd: M(0x32) },
      ],
    },
  });
});

const trust = () => ({ tcbRoots: [Buffer.from(sim.rootPem)] });
const failed = (checks: { id: string; ok: boolean }[]) => checks.filter((c) => !c.ok).map((c) => c.id);

describe("parse", () => {
  it("decodes every field of both TEE sections", () => {
    const e = parseLaunchEndorsement(good);
    expect(e.golden.clSpec).toBe(612345n);
    expect(e.golden.sevSnp!.svn).toBe(3);
    expect([...e.golden.sevSnp!.measurements.keys()]).toEqual([2, 4, 8]);
    expect(Buffer.from(e.golden.sevSnp!.measurements.get(4)!).toString("hex")).toBe(M(4));
    expect(e.golden.sevSnp!.policy).toBe(0x70000n);
    expect(e.golden.tdx!.measurements[1]).toMatchObject({ ramGib: 32, earlyAccept: true });
    expect(e.golden.caBundle).toContain("BEGIN CERTIFICATE");
    expect(e.golden.unknownFields).toEqual([]);
  });

  it("refuses what a conforming encoder never writes, naming the field", () => {
    const g = sim.golden({ sevSnp: { svn: 1, measurements: MEASUREMENTS } });
    const cases: [string, Buffer, RegExp][] = [
      ["a duplicated singular field", Buffer.concat([g, pb.uint(2, 7), pb.uint(2, 8)]), /cl_spec: appears twice/],
      ["a known field with the wrong wire type", Buffer.concat([g, pb.uint(4, 1)]), /cert: wire type 0/],
      ["a group", Buffer.concat([g, Buffer.from([0x1b])]), /wire type 3/],
      ["an over-long varint", Buffer.concat([g, Buffer.from([0x10, 0x80, 0x00])]), /over-long varint/],
      ["a truncated length", Buffer.concat([g, Buffer.from([0x2a, 0x05, 0x01])]), /length 5 exceeds/],
      [
        "a 47-byte measurement",
        sim.golden({ sevSnp: { svn: 1, measurements: { 2: Buffer.alloc(47) } } }),
        /measurements\[0\]\.value: 47 bytes/,
      ],
    ];
    for (const [what, bytes, re] of cases) {
      expect(() => parseLaunchEndorsement(sim.endorse(bytes)), what).toThrow(re);
    }
    // Field 2 map with the same key twice.
    const dup = Buffer.concat([
      pb.bytes(2, Buffer.concat([pb.uint(1, 2), pb.bytes(2, Buffer.alloc(48))])),
      pb.bytes(2, Buffer.concat([pb.uint(1, 2), pb.bytes(2, Buffer.alloc(48, 1))])),
    ]);
    const withDup = Buffer.concat([sim.golden({}), pb.bytes(7, dup)]);
    expect(() => parseLaunchEndorsement(sim.endorse(withDup))).toThrow(/2 vCPUs listed twice/);
    // Unknown fields outside the signature are refused; inside they are listed.
    expect(() => parseLaunchEndorsement(Buffer.concat([good, pb.uint(9, 1)]))).toThrow(/outside the signed payload/);
    const signedUnknown = parseLaunchEndorsement(sim.endorse(Buffer.concat([g, pb.uint(42, 1)])));
    expect(signedUnknown.golden.unknownFields).toEqual([42]);
  });

  it("fuzz: arbitrary bytes and one-bit mutations parse or fail with a typed error naming the field", () => {
    const typed = (b: Uint8Array) => {
      try {
        parseLaunchEndorsement(b);
      } catch (e) {
        if (!(e instanceof EvidenceFormatError)) throw e;
        expect(e.field).toBeTruthy();
      }
    };
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), typed), { numRuns: RUNS });
    fc.assert(
      fc.property(fc.nat(good.length * 8 - 1), (bit) => typed(flipBit(good, bit >> 3, bit & 7))),
      { numRuns: RUNS },
    );
    fc.assert(
      fc.property(fc.nat(good.length), fc.uint8Array({ minLength: 1, maxLength: 8 }), (at, junk) =>
        typed(Buffer.concat([good.subarray(0, at), junk, good.subarray(at)])),
      ),
      { numRuns: RUNS },
    );
  });
});

describe("verify", () => {
  it("accepts an endorsement signed under the configured root, every check listed", () => {
    const v = verifyGceEndorsement(good, trust());
    expect(v.ok).toBe(true);
    expect(v.checks.map((c) => c.id)).toEqual([
      "gce.endorsement-format",
      "gce.endorsement-provenance",
      "gce.endorsement-signer",
      "gce.endorsement-signature",
    ]);
    expect(failed(v.checks)).toEqual([]);
  });

  it("refuses without a configured root, under another root, and after the signer expired", () => {
    expect(failed(verifyGceEndorsement(good, {}).checks)).toEqual(["gce.endorsement-signer"]);
    expect(failed(verifyGceEndorsement(good, { tcbRoots: [other.rootDer] }).checks)).toEqual([
      "gce.endorsement-signer",
    ]);
    const later = new Date(Date.now() + 20 * 365 * 24 * 3600 * 1000);
    expect(failed(verifyGceEndorsement(good, trust(), later).checks)).toEqual(["gce.endorsement-signer"]);
  });

  it("a signature by another Google-shaped key over the same golden bytes → refused", () => {
    const e = parseLaunchEndorsement(good);
    const forged = other.endorse(e.serializedGolden);
    const v = verifyGceEndorsement(forged, trust());
    expect(v.ok).toBe(false);
    expect(failed(v.checks)).toContain("gce.endorsement-signature");
  });

  it("one-bit negatives: any flipped bit of the measurements or the signature is refused", () => {
    const e = parseLaunchEndorsement(good);
    const goldenAt = good.indexOf(Buffer.from(e.serializedGolden));
    const mAt = good.indexOf(Buffer.from(M(4), "hex"));
    for (const at of [mAt, mAt + 47, good.length - 1, good.length - 256, goldenAt + 3]) {
      const v = verifyGceEndorsement(flipBit(good, at), trust());
      expect(v.ok, `bit at ${at}`).toBe(false);
    }
  });

  it("provenance is required after 2024-08-02 and not before", () => {
    const noProv = sim.sign({ timestamp: new Date("2025-01-01Z"), sevSnp: { svn: 1, measurements: MEASUREMENTS } });
    expect(failed(verifyGceEndorsement(noProv, trust()).checks)).toEqual(["gce.endorsement-provenance"]);
    const old = sim.sign({ timestamp: new Date("2024-05-01Z"), sevSnp: { svn: 1, measurements: MEASUREMENTS } });
    expect(failed(verifyGceEndorsement(old, trust()).checks)).toEqual([]);
    const commit = sim.sign({
      timestamp: new Date("2025-01-01Z"),
      commit: randomBytes(20),
      sevSnp: { svn: 1, measurements: MEASUREMENTS },
    });
    expect(failed(verifyGceEndorsement(commit, trust()).checks)).toEqual([]);
  });

  it("fuzz: verification never throws", () => {
    fc.assert(
      fc.property(fc.nat(good.length * 8 - 1), (bit) => {
        const v = verifyGceEndorsement(flipBit(good, bit >> 3, bit & 7), trust());
        expect(typeof v.ok).toBe("boolean");
      }),
      { numRuns: Math.min(RUNS, 200) },
    );
  });
});

describe("validate", () => {
  const g = () => parseLaunchEndorsement(good).golden;

  it("SNP: the measurement for the VM's vCPU count, the SVN minimum, the launch policy", () => {
    expect(
      failed(
        validateGceEndorsement(g(), { tee: "snp", measurement: M(4), snpPolicy: 0x70000n }, { vcpus: 4, minSvn: 3 }),
      ),
    ).toEqual([]);
    // The 2-vCPU digest presented by a 4-vCPU workload: endorsed, but not for this shape.
    expect(failed(validateGceEndorsement(g(), { tee: "snp", measurement: M(2) }, { vcpus: 4 }))).toEqual([
      "gce.endorsed-measurement",
    ]);
    expect(failed(validateGceEndorsement(g(), { tee: "snp", measurement: M(4) }, { vcpus: 16 }))).toEqual([
      "gce.endorsed-measurement",
    ]);
    expect(failed(validateGceEndorsement(g(), { tee: "snp", measurement: M(4) }, { vcpus: 4, minSvn: 4 }))).toEqual([
      "gce.svn",
    ]);
    expect(
      failed(validateGceEndorsement(g(), { tee: "snp", measurement: M(4), snpPolicy: 0x30000n }, { vcpus: 4 })),
    ).toEqual(["gce.launch-policy"]);
    const oneBit = flipBit(Buffer.from(M(4), "hex"), 47);
    expect(
      failed(
        validateGceEndorsement(g(), { tee: "snp", measurement: Buffer.from(oneBit).toString("hex") }, { vcpus: 4 }),
      ),
    ).toEqual(["gce.endorsed-measurement"]);
    const any = validateGceEndorsement(g(), { tee: "snp", measurement: M(8) }, {});
    expect(any[0]).toMatchObject({ ok: true });
    expect(any[0].detail).toMatch(/not pinned/);
  });

  it("TDX: an endorsed MRTD, optionally for the machine's RAM", () => {
    expect(failed(validateGceEndorsement(g(), { tee: "tdx", measurement: M(0x32) }, {}))).toEqual([]);
    expect(failed(validateGceEndorsement(g(), { tee: "tdx", measurement: M(0x32) }, { ramGib: 16 }))).toEqual([
      "gce.endorsed-measurement",
    ]);
    expect(failed(validateGceEndorsement(g(), { tee: "tdx", measurement: M(0x33) }, {}))).toEqual([
      "gce.endorsed-measurement",
    ]);
  });

  it("a section the endorsement lacks is a failed check, not a pass", () => {
    const snpOnly = parseLaunchEndorsement(sim.sign({ sevSnp: { svn: 1, measurements: MEASUREMENTS } })).golden;
    expect(failed(validateGceEndorsement(snpOnly, { tee: "tdx", measurement: M(1) }, {}))).toEqual([
      "gce.endorsed-measurement",
    ]);
  });
});
