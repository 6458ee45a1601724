// Server configuration (HCL and JSON, Vault's layout) and the HCL subset parser: values, defaults,
// relative paths, and errors that name the field or line.
import { describe, it, expect } from "vitest";
import { parseConfig, ConfigError } from "../../../runtime/server/http/config.js";
import { parseHcl } from "../../../runtime/server/vault/hcl.js";
import { DEFAULT_RATE_LIMITS, RateLimiter } from "../../../runtime/server/http/rate-limit.js";
import { perWorkerRateLimits } from "../../../runtime/server/http/cluster.js";
import { availableParallelism } from "node:os";

describe("server config", () => {
  it("reads an HCL config with defaults and paths relative to the file", () => {
    const c = parseConfig(
      `
      storage "sqlite" { path = "data/rt.db" }
      listener "tcp" { address = "0.0.0.0:8443"  tls_hosts = ["rt.example"] }
      api_addr = "https://rt.example:8443"
      audit_file = "log/audit.log"
      max_lease_ttl = "24h"
      rate_limit "nitride/attest" { per_second = 5  burst = 10 }
    `,
      "/etc/bk",
    );
    expect(c.storage).toEqual({ type: "sqlite", path: "/etc/bk/data/rt.db" });
    expect(c.listener).toMatchObject({
      host: "0.0.0.0",
      port: 8443,
      tlsDisable: false,
      tlsDir: "/etc/bk/data/tls",
      tlsHosts: ["rt.example"],
      maxRequestSize: 1048576,
    });
    expect(c.auditFile).toBe("/etc/bk/log/audit.log");
    expect(c.maxTtl).toBe(86400);
    expect(c.defaultTtl).toBe(768 * 3600);
    expect(c.rateLimits.find((r) => r.path === "nitride/attest")).toEqual({
      path: "nitride/attest",
      perSecond: 5,
      burst: 10,
    });
    expect(c.rateLimits).toHaveLength(DEFAULT_RATE_LIMITS.length);
    expect(c.workers).toBe(1);
  });

  it('reads seal "snp-derived-key" (auto-unseal) and refuses unknown seal types and settings', () => {
    const base = `storage "sqlite" { path = "x" }\nlistener "tcp" {}\n`;
    expect(parseConfig(base).seal).toBeUndefined();
    expect(parseConfig(base + 'seal "snp-derived-key" {}').seal).toEqual({
      type: "snp-derived-key",
      device: "/dev/sev-guest",
    });
    const custom = parseConfig(base + 'seal "snp-derived-key" { device = "/dev/sev-guest0" }').seal;
    expect(custom && "device" in custom ? custom.device : undefined).toBe("/dev/sev-guest0");
    expect(() => parseConfig(base + 'seal "awskms" {}')).toThrow(/seal: unknown type 'awskms' \(snp-derived-key\)/);
    expect(() => parseConfig(base + 'seal "snp-derived-key" { key_id = "x" }')).toThrow(/unknown setting 'key_id'/);
    expect(() => parseConfig(base + 'seal "snp-derived-key" {}\nseal "snp-derived-key" {}')).toThrow(/at most one/);
  });

  it('reads workers (a count or "auto") and splits rate limits between them', () => {
    const base = `storage "sqlite" { path = "x" }\nlistener "tcp" {}\n`;
    expect(parseConfig(base + "workers = 4").workers).toBe(4);
    expect(parseConfig(base + 'workers = "auto"').workers).toBe(Math.min(64, availableParallelism()));
    expect(perWorkerRateLimits([{ path: "nitride/attest", perSecond: 20, burst: 100 }], 3)).toEqual([
      { path: "nitride/attest", perSecond: 20 / 3, burst: 34 },
    ]);
    expect(perWorkerRateLimits([{ path: "auth/*/login", perSecond: 1, burst: 1 }], 4)[0].burst).toBe(1);
  });

  it("reads the same structure from JSON, with PostgreSQL", () => {
    const c = parseConfig(
      JSON.stringify({
        storage: { postgresql: { connection_url: "postgres://u@db/rt" } },
        listener: { tcp: { address: "127.0.0.1:8200", tls_disable: true } },
      }),
    );
    expect(c.storage).toEqual({ type: "postgresql", connectionUrl: "postgres://u@db/rt" });
    expect(c.listener.tlsDisable).toBe(true);
  });

  it.each([
    [`listener "tcp" {}`, /storage: exactly one storage block/],
    [`storage "s3" {}\nlistener "tcp" {}`, /storage: unknown type 's3'/],
    [
      `storage "sqlite" { path = "x" }\nlistener "tcp" { address = "nohost" }`,
      /listener\.tcp\.address: expected HOST:PORT/,
    ],
    [`storage "postgresql" {}\nlistener "tcp" { tls_disable = true }`, /connection_url: required/],
    [`storage "postgresql" { connection_url = "postgres://x" }\nlistener "tcp" {}`, /tls_dir: required with TLS/],
    [
      `storage "sqlite" { path = "x" }\nlistener "tcp" { tls_cert_file = "c.pem" }`,
      /tls_cert_file and tls_key_file go together/,
    ],
    [
      `storage "sqlite" { path = "x" }\nlistener "tcp" {}\nmax_lease_ttl = "forever"`,
      /max_lease_ttl: invalid duration/,
    ],
    [`storage "sqlite" { path = "x" }\nlistener "tcp" {}\nbogus = 1`, /unknown setting 'bogus'/],
    [`storage "sqlite" { path = "x" \nlistener "tcp" {}`, /config: line \d+/],
    [
      `storage "sqlite" { path = "x" }\nlistener "tcp" {}\nworkers = 0`,
      /workers: must be an integer from 1 to 64, or "auto"/,
    ],
    [
      `storage "sqlite" { path = "x" }\nlistener "tcp" {}\nworkers = "many"`,
      /workers: must be an integer from 1 to 64/,
    ],
    [
      `storage "inmem" {}\nlistener "tcp" { tls_disable = true }\nworkers = 2`,
      /workers: inmem storage lives in one process/,
    ],
  ])("refuses %j naming the problem", (text, re) => {
    expect(() => parseConfig(text)).toThrow(ConfigError);
    expect(() => parseConfig(text)).toThrow(re);
  });
});

describe("HCL subset", () => {
  it("parses blocks, labels, lists, objects, numbers, booleans, escapes and comments", () => {
    const b = parseHcl(
      `# c\na = "x\\"y"\nn = -1.5e2 // c\nl = ["p", 2, true,]\no = { k = "v", nested { z = false } }\nblk "l1" "l2" { inner = 1 }`,
    );
    expect(b.attrs).toEqual({ a: 'x"y', n: -150, l: ["p", 2, true], o: { k: "v", nested: { z: false } } });
    expect(b.blocks).toEqual([
      { type: "blk", labels: ["l1", "l2"], body: { attrs: { inner: 1 }, blocks: [] }, line: 6 },
    ]);
  });
  it("reports errors with their line", () => {
    expect(() => parseHcl(`a = "x"\nb = "unterminated\n`)).toThrow(/line 2: newline in string/);
    expect(() => parseHcl(`a = <<EOT\nx\nEOT`)).toThrow(/heredoc/);
    expect(() => parseHcl(`a = b`)).toThrow(/unsupported expression 'b'/);
  });
});

describe("rate limiter", () => {
  it("allows a burst, then refills at the configured rate, per client", () => {
    const rl = new RateLimiter([{ path: "auth/*/login", perSecond: 2, burst: 2 }]);
    const t = 1_000_000;
    expect([
      rl.check("auth/jwt/login", "a", t),
      rl.check("auth/jwt/login", "a", t),
      rl.check("auth/jwt/login", "a", t),
    ]).toEqual([0, 0, 1]);
    expect(rl.check("auth/jwt/login", "b", t)).toBe(0);
    expect(rl.check("auth/jwt/login", "a", t + 500)).toBe(0);
    expect(rl.check("secret/data/x", "a", t)).toBe(0);
    expect(rl.check("auth/jwt/role/x", "a", t)).toBe(0);
  });
});
