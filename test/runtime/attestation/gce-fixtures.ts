// Real GCE vTPM test data (test/fixtures/gce/PROVENANCE.md) and a reader for go-tpm-tools' Attestation
// protobuf (proto/attest.proto), built on the strict wire reader the endorsement parser uses.
import { readFileSync } from "node:fs";
import path from "node:path";
import { repoRoot } from "../../support/shared.js";
import { WIRE, readMessage, uintOf } from "../../../runtime/attestation/gce/proto.js";
import type { HashName, PcrValues, TpmEvidence } from "../../../runtime/attestation/tpm/index.js";

export const gceFixture = (...p: string[]) =>
  new Uint8Array(readFileSync(path.join(repoRoot, "test/fixtures/gce", ...p)));

/** The instance the simulated Google AK CA (runtime/sim/gce-ak-ca.ts) certifies in the GCE AK tests. */
export const GCE_INSTANCE = {
  zone: "europe-west4-a",
  projectNumber: 123456789012n,
  projectId: "bk-prod",
  instanceId: 4242424242424242n,
  instanceName: "web",
};

const HASH_ENUM: Record<number, HashName> = { 4: "sha1", 11: "sha256", 12: "sha384", 13: "sha512" };

export interface GoTpmToolsAttestation {
  /** TPMT_PUBLIC (unsized) of the AK. */
  akPub: Uint8Array;
  quotes: { quote: Uint8Array; rawSig: Uint8Array; hash: HashName; pcrs: Record<number, Uint8Array> }[];
  eventLog: Uint8Array;
  akCert: Uint8Array;
  intermediates: Uint8Array[];
}

export function parseGoTpmToolsAttestation(b: Uint8Array): GoTpmToolsAttestation {
  const m = readMessage(
    b,
    {
      1: { name: "ak_pub", wire: WIRE.LEN },
      2: { name: "quotes", wire: WIRE.LEN, repeated: true },
      3: { name: "event_log", wire: WIRE.LEN },
      6: { name: "ak_cert", wire: WIRE.LEN },
      7: { name: "intermediate_certs", wire: WIRE.LEN, repeated: true },
    },
    "attestation",
  );
  return {
    akPub: m.one.ak_pub.bytes!,
    eventLog: m.one.event_log.bytes!,
    akCert: m.one.ak_cert?.bytes ?? new Uint8Array(0),
    intermediates: (m.many.intermediate_certs ?? []).map((f) => f.bytes!),
    quotes: (m.many.quotes ?? []).map((q, i) => {
      const qm = readMessage(
        q.bytes!,
        {
          1: { name: "quote", wire: WIRE.LEN },
          2: { name: "raw_sig", wire: WIRE.LEN },
          3: { name: "pcrs", wire: WIRE.LEN },
        },
        `quotes[${i}]`,
      );
      const pm = readMessage(
        qm.one.pcrs.bytes!,
        { 1: { name: "hash", wire: WIRE.VARINT }, 2: { name: "pcrs", wire: WIRE.LEN, repeated: true } },
        `quotes[${i}].pcrs`,
      );
      const pcrs: Record<number, Uint8Array> = {};
      for (const e of pm.many.pcrs ?? []) {
        const kv = readMessage(
          e.bytes!,
          { 1: { name: "k", wire: WIRE.VARINT }, 2: { name: "v", wire: WIRE.LEN } },
          "pcr",
        );
        pcrs[uintOf(kv.one.k, "k")] = kv.one.v.bytes!;
      }
      return {
        quote: qm.one.quote.bytes!,
        rawSig: qm.one.raw_sig.bytes!,
        hash: HASH_ENUM[uintOf(pm.one.hash, "hash")],
        pcrs,
      };
    }),
  };
}

/** TPM2B_PUBLIC from a bare TPMT_PUBLIC (what our evidence carries). */
export function sized(tpmt: Uint8Array): Uint8Array {
  const out = Buffer.alloc(tpmt.length + 2);
  out.writeUInt16BE(tpmt.length);
  Buffer.from(tpmt).copy(out, 2);
  return new Uint8Array(out);
}

/** One quote of a go-tpm-tools attestation as our vTPM evidence. */
export function asTpmEvidence(a: GoTpmToolsAttestation, q: GoTpmToolsAttestation["quotes"][number]): TpmEvidence {
  const pcrs: PcrValues = { [q.hash]: q.pcrs };
  return { akPublic: sized(a.akPub), quote: q.quote, signature: q.rawSig, pcrs, eventLog: a.eventLog };
}

export const flipBit = (b: Uint8Array, byte: number, bit = 0): Uint8Array => {
  const c = new Uint8Array(b);
  c[byte] ^= 1 << bit;
  return c;
};
