// The provisioning bundle (runtime/protocol/bundle.ts) and the secret-reference grammar
// (runtime/protocol/secret-ref.ts): decoding, refusals naming the field, hostile references, and the
// enclaivelet's resolution of references against a bundle (exact, unique, never by loose suffix).
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { decodeBundle, type WireBundle } from "../../../runtime/protocol/bundle.js";
import { WireFormatError } from "../../../runtime/protocol/errors.js";
import { formatSecretRef, kvDataPath, matchSecretRef, parseSecretRef } from "../../../runtime/protocol/secret-ref.js";
import { SEAL_HEADER, SEAL_REQUEST_HEADERS } from "../../../runtime/protocol/seal.js";
import { parseBundle, resolveSecret, MissingSecretError } from "../../../runtime/guest/bundle.js";
import { ProtocolError } from "../../../runtime/guest/attest.js";

const wire: WireBundle = {
  workload_id: "web",
  version: 3,
  kv: { "secret/data/web/db": { password: "pw", user: "app" }, "team/kv/data/web/api": { key: "k" } },
  tls: {
    certificate: "CERT",
    private_key: "KEY",
    private_key_type: "ec",
    ca_chain: ["CA"],
    serial_number: "01",
    expiration: 1,
  },
  ssh: {
    host_certificates: [{ public_key: "ssh-ed25519 AAAA", signed_key: "cert" }],
    ca_public_key: "ca",
    principals: ["web"],
  },
  disk_key: Buffer.alloc(32, 1).toString("base64"),
};

function fieldOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(WireFormatError);
    return (e as WireFormatError).field;
  }
  throw new Error("accepted");
}

describe("provisioning bundle", () => {
  it("decodes the runtime's answer (bare or in Vault's {data} envelope)", () => {
    for (const body of [wire, { data: wire }]) {
      const b = decodeBundle(JSON.parse(JSON.stringify(body)));
      expect(b.workloadId).toBe("web");
      expect(b.version).toBe(3);
      expect(b.kv["secret/data/web/db"]).toEqual({ password: "pw", user: "app" });
      expect(b.tls?.certificate).toBe("CERT");
      expect(b.ssh?.host_certificates[0].signed_key).toBe("cert");
      expect(b.diskKey).toEqual(Buffer.alloc(32, 1));
    }
    const minimal = decodeBundle({ workload_id: "w", version: 1, kv: {} });
    expect(minimal).toEqual({ workloadId: "w", version: 1, kv: {} });
  });

  it("refuses malformed parts naming the field (no guessing: 'pki' is not 'tls')", () => {
    expect(fieldOf(() => decodeBundle(null))).toBe("bundle");
    expect(fieldOf(() => decodeBundle({ ...wire, pki: wire.tls }))).toBe("bundle.pki");
    expect(fieldOf(() => decodeBundle({ ...wire, workload_id: "" }))).toBe("bundle.workload_id");
    expect(fieldOf(() => decodeBundle({ ...wire, version: "3" }))).toBe("bundle.version");
    expect(fieldOf(() => decodeBundle({ ...wire, kv: [] }))).toBe("bundle.kv");
    expect(fieldOf(() => decodeBundle({ ...wire, kv: { "web/db": {} } }))).toBe("bundle.kv");
    expect(fieldOf(() => decodeBundle({ ...wire, kv: { "secret/data/../x": {} } }))).toBe("bundle.kv");
    expect(fieldOf(() => decodeBundle({ ...wire, kv: { "secret/data/x": "pw" } }))).toBe('bundle.kv["secret/data/x"]');
    expect(fieldOf(() => decodeBundle({ ...wire, tls: { certificate: "C" } }))).toBe("bundle.tls.private_key");
    expect(fieldOf(() => decodeBundle({ ...wire, tls: { ...wire.tls, ca_chain: "CA" } }))).toBe("bundle.tls.ca_chain");
    expect(fieldOf(() => decodeBundle({ ...wire, ssh: { host_certificates: [{}] } }))).toBe(
      "bundle.ssh.host_certificates[0].signed_key",
    );
    expect(fieldOf(() => decodeBundle({ ...wire, disk_key: "AAAA" }))).toBe("bundle.disk_key");
    expect(fieldOf(() => decodeBundle({ ...wire, disk_key: "not base64!" }))).toBe("bundle.disk_key");
  });

  it("the enclaivelet reports a malformed bundle as a protocol error, never echoing secret values", () => {
    const bad = { ...wire, tls: { certificate: "-----BEGIN SECRET-----", private_key: 5 } };
    try {
      parseBundle(bad);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ProtocolError);
      expect((e as Error).message).toBe("provision: bundle.tls.private_key: must be a non-empty string");
    }
  });

  it("fuzz: arbitrary JSON only ever raises WireFormatError", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.jsonValue(), fc.record({ workload_id: fc.string(), version: fc.integer(), kv: fc.jsonValue() })),
        (v) => {
          try {
            decodeBundle(v);
          } catch (e) {
            expect(e).toBeInstanceOf(WireFormatError);
          }
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe("secret references", () => {
  it("parses and formats the full and the short form", () => {
    const cases: [string, ReturnType<typeof parseSecretRef>][] = [
      ["secret/data/web/db", { mount: "secret", path: "web/db" }],
      ["secret/data/web/db#password", { mount: "secret", path: "web/db", field: "password" }],
      ["team/kv/data/a/b/c#k#x", { mount: "team/kv", path: "a/b/c", field: "k#x" }],
      ["web/db#password", { path: "web/db", field: "password" }],
      ["db", { path: "db" }],
    ];
    for (const [text, ref] of cases) {
      expect(parseSecretRef(text)).toEqual(ref);
      expect(formatSecretRef(ref)).toBe(text);
    }
    expect(kvDataPath("secret", "workloads/w/app")).toBe("secret/data/workloads/w/app");
  });

  it("refuses hostile references naming the field", () => {
    for (const bad of [
      "",
      "#",
      "web/db#",
      "../etc#x",
      "a/../b",
      "a//b",
      "/abs",
      "a/",
      "a b",
      "secret/data/",
      "a\nb",
      "ü",
    ])
      expect(fieldOf(() => parseSecretRef(bad, "files[0].secret"))).toBe("files[0].secret");
    expect(() => parseSecretRef("web/db", "kv", { requireMount: true })).toThrow(/KV v2 data path/);
    expect(() => parseSecretRef("secret/data/x#f", "kv", { noField: true })).toThrow(/no '#field'/);
  });

  it("matches exactly with a mount and uniquely without one", () => {
    const keys = ["secret/data/web/db", "other/data/web/db", "secret/data/web/api", "secret/data/x/web/db"];
    expect(matchSecretRef(parseSecretRef("secret/data/web/db"), keys)).toBe("secret/data/web/db");
    expect(matchSecretRef(parseSecretRef("web/api"), keys)).toBe("secret/data/web/api");
    // "web/db" is not a loose suffix of "secret/data/x/web/db", but two mounts hold it: ambiguous.
    expect(() => matchSecretRef(parseSecretRef("web/db"), keys)).toThrow(/ambiguous/);
    expect(matchSecretRef(parseSecretRef("db"), keys)).toBeUndefined();
    expect(matchSecretRef(parseSecretRef("secret/data/nope"), keys)).toBeUndefined();
  });

  it("the enclaivelet resolves references in a bundle", () => {
    const b = decodeBundle(wire);
    expect(resolveSecret(b, "web/db#password").toString()).toBe("pw");
    expect(resolveSecret(b, "secret/data/web/db", "user").toString()).toBe("app");
    expect(resolveSecret(b, "team/kv/data/web/api#key").toString()).toBe("k");
    expect(JSON.parse(resolveSecret(b, "web/api").toString())).toEqual({ key: "k" });
    expect(() => resolveSecret(b, "web/db#nope")).toThrow(MissingSecretError);
    expect(() => resolveSecret(b, "db#password")).toThrow(/not in this workload's bundle/);
    expect(() => resolveSecret(b, "../web/db")).toThrow(MissingSecretError);
  });

  it("fuzz: format(parse(x)) === x for every accepted reference", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (s) => {
        try {
          expect(formatSecretRef(parseSecretRef(s))).toBe(s);
        } catch (e) {
          expect(e).toBeInstanceOf(WireFormatError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe("seal header", () => {
  it("is one lower-case header with one mode", () => {
    expect(SEAL_HEADER).toBe("x-buckypaper-seal");
    expect(SEAL_REQUEST_HEADERS).toEqual({ "x-buckypaper-seal": "ephemeral" });
    expect(Object.isFrozen(SEAL_REQUEST_HEADERS)).toBe(true);
  });
});
