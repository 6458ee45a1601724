// Recovery with operator-encrypted shares where the SEV-SNP derived key cannot unseal: a runtime on a
// real SQLite file, initialised on simulated chip A with auto-unseal, its 3 Shamir shares encrypted to 3
// operators' X25519 JWKs (runtime/client/recovery-share.ts, what the Vhsm outputs). The disk copied to
// chip B, or started with a changed image, stays sealed; two operators open their own shares with their
// own private keys and unseal it; one share, or a share opened with another operator's key, does not.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { SqliteStorage } from "../../../runtime/server/storage/sqlite.js";
import { Core, type AutoUnsealProvider } from "../../../runtime/server/vault/core.js";
import { builtinRegistry } from "../../../runtime/server/engines.js";
import { newMount } from "../../../runtime/server/vault/mounts.js";
import { createSnpSimulator, type SimulatedGuestContext, type SnpSimulator } from "../../../runtime/sim/snp.js";
import { AUTO_UNSEAL_KEY_REQUEST, encodeKeyRequest } from "../../../runtime/attestation/snp/derived-key.js";
import {
  decryptShare,
  encryptShare,
  generateRecoveryKey,
  parseRecoveryPublicKey,
} from "../../../runtime/client/recovery-share.js";
import type { JWK } from "jose";

const MEASUREMENT = new Uint8Array(48).fill(0x5e);
const guest = (over: Partial<SimulatedGuestContext> = {}): SimulatedGuestContext => ({
  measurement: MEASUREMENT,
  policy: 0x30000n,
  ...over,
});
const provider = (sim: SnpSimulator, ctx: SimulatedGuestContext): AutoUnsealProvider => ({
  type: "snp-derived-key",
  deriveKey: async () => sim.deriveKey(encodeKeyRequest(AUTO_UNSEAL_KEY_REQUEST, sim.product), ctx),
});
const MARKER = "recovery-marker-91b2";

let dir: string;
let chipA: SnpSimulator;
let chipB: SnpSimulator;
let operators: { publicJwk: JWK; privateJwk: JWK }[];
let encrypted: string[];
let root: string;

const open = async (file: string, p: AutoUnsealProvider) => {
  const physical = new SqliteStorage(file);
  const core = new Core({ physical, registry: builtinRegistry(), autoUnseal: p });
  await core.start();
  return { core, physical };
};
const req = (method: string, p: string, body?: unknown) => ({
  method,
  path: p,
  query: {},
  body,
  headers: { "x-vault-token": root },
  clientIp: "127.0.0.1",
});

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "bk-recovery-"));
  [chipA, chipB] = await Promise.all([createSnpSimulator({ rsaBits: 1024 }), createSnpSimulator({ rsaBits: 1024 })]);
  operators = await Promise.all([0, 1, 2].map(() => generateRecoveryKey()));
  const { core, physical } = await open(path.join(dir, "a.db"), provider(chipA, guest()));
  const init = await core.initialize(3, 2);
  root = init.root_token;
  // What the provider does with the shares right after init: one JWE per operator, nothing else kept.
  encrypted = await Promise.all(
    init.keys_base64.map((key, n) =>
      encryptShare(
        { v: 1, index: n + 1, shares: 3, threshold: 2, key },
        parseRecoveryPublicKey(JSON.stringify(operators[n].publicJwk), `recoveryKeys[${n}]`),
      ),
    ),
  );
  await core.unsealWith(init.keys.slice(0, 2));
  await core.writeTable("secret", (t) => [...t, newMount("secret", "secret/", "kv", { options: { version: "2" } })]);
  expect((await core.handle(req("POST", "secret/data/x", { data: { v: MARKER } }))).status).toBe(200);
  await core.seal();
  await physical.close();
}, 60_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("recovery shares encrypted to operators", () => {
  it("the JWEs carry nothing readable: no share in clear, each names only its operator's key", () => {
    for (const jwe of encrypted) {
      expect(jwe.split(".")).toHaveLength(5);
      const header = JSON.parse(Buffer.from(jwe.split(".")[0], "base64url").toString("utf8"));
      expect(header).toMatchObject({ alg: "ECDH-ES+A256KW", enc: "A256GCM", cty: "buckypaper-recovery-share+json" });
    }
  });

  it("the same chip and launch unseal by themselves (no operator needed)", async () => {
    const copy = path.join(dir, "same.db");
    copyFileSync(path.join(dir, "a.db"), copy);
    const { core, physical } = await open(copy, provider(chipA, guest()));
    expect(core.sealed).toBe(false);
    await core.seal();
    await physical.close();
  });

  for (const [what, chip, ctx] of [
    ["the disk copied to another chip", () => chipB, guest()],
    ["a changed image (other measurement)", () => chipA, guest({ measurement: new Uint8Array(48).fill(0x5f) })],
  ] as const) {
    it(`${what} stays sealed; a quorum of operators unseals it with their own keys`, async () => {
      const copy = path.join(dir, `${what.length}.db`);
      copyFileSync(path.join(dir, "a.db"), copy);
      const { core, physical } = await open(copy, provider(chip(), ctx));
      expect(core.sealed).toBe(true);
      expect((await core.handle(req("GET", "secret/data/x"))).status).toBe(503);
      // Operator 2 cannot open operator 1's share.
      await expect(decryptShare(encrypted[0], operators[1].privateJwk)).rejects.toThrow(/does not open with that key/);
      // One share is below the threshold.
      const s1 = await decryptShare(encrypted[0], operators[0].privateJwk);
      expect(s1).toMatchObject({ index: 1, shares: 3, threshold: 2 });
      await core.submitUnsealKey(s1.key);
      expect(core.sealed).toBe(true);
      const s3 = await decryptShare(encrypted[2], operators[2].privateJwk);
      await core.submitUnsealKey(s3.key);
      expect(core.sealed).toBe(false);
      const r = await core.handle(req("GET", "secret/data/x"));
      expect(JSON.stringify(r.body)).toContain(MARKER);
      await core.seal();
      await physical.close();
    });
  }

  it("refuses operator keys that cannot receive a share, naming the field", () => {
    expect(() => parseRecoveryPublicKey(JSON.stringify(operators[0].privateJwk), "recoveryKeys[0]")).toThrow(
      /recoveryKeys\[0\] is a private key/,
    );
    expect(() => parseRecoveryPublicKey('{"kty":"RSA","n":"x","e":"AQAB"}', "recoveryKeys[1]")).toThrow(
      /recoveryKeys\[1\] has kty 'RSA'.*allowed: OKP X25519/,
    );
    expect(() => parseRecoveryPublicKey("not json", "recoveryKeys[2]")).toThrow(
      /recoveryKeys\[2\] is not a JSON Web Key/,
    );
  });
});
