// Auto-unseal with the SEV-SNP derived key (MSG_KEY_REQ, simulated PSP), on a real SQLite file: the
// same chip and launch unseal by themselves after a restart; a changed measurement, a relaxed policy or
// another chip (a copied disk) stay sealed; the Shamir recovery shares still unseal; nothing of the
// unseal key is in the file in clear.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { SqliteStorage } from "../../../runtime/server/storage/sqlite.js";
import { Core, type AutoUnsealProvider } from "../../../runtime/server/vault/core.js";
import { builtinRegistry } from "../../../runtime/server/engines.js";
import { newMount } from "../../../runtime/server/vault/mounts.js";
import { createSnpSimulator, type SimulatedGuestContext, type SnpSimulator } from "../../../runtime/sim/snp.js";
import {
  AUTO_UNSEAL_KEY_REQUEST,
  decodeKeyRequest,
  encodeKeyRequest,
  DerivedKeyRequestError,
} from "../../../runtime/attestation/snp/derived-key.js";

const MEASUREMENT = new Uint8Array(48).fill(0xa1);
const POLICY = 0x30000n;
const guest = (over: Partial<SimulatedGuestContext> = {}): SimulatedGuestContext => ({
  measurement: MEASUREMENT,
  policy: POLICY,
  ...over,
});
const provider = (sim: SnpSimulator, ctx: SimulatedGuestContext): AutoUnsealProvider => ({
  type: "snp-derived-key",
  deriveKey: async () => sim.deriveKey(encodeKeyRequest(AUTO_UNSEAL_KEY_REQUEST, sim.product), ctx),
});

let dir: string;
let chipA: SnpSimulator;
let chipB: SnpSimulator;
beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "bk-auto-unseal-"));
  [chipA, chipB] = await Promise.all([createSnpSimulator({ rsaBits: 1024 }), createSnpSimulator({ rsaBits: 1024 })]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("MSG_KEY_REQ and the simulated derived key", () => {
  it("encodes the ABI layout and derives per chip, per selected field", async () => {
    const req = encodeKeyRequest(AUTO_UNSEAL_KEY_REQUEST, "Milan");
    expect(req.length).toBe(32);
    const d = decodeKeyRequest(req);
    expect(d.rootKey).toBe("vcek");
    expect(d.fieldSelect).toBe((1n << 3n) | 1n); // MEASUREMENT | GUEST_POLICY
    const k = chipA.deriveKey(req, guest());
    expect(k.length).toBe(32);
    expect(Buffer.from(chipA.deriveKey(req, guest())).equals(Buffer.from(k))).toBe(true);
    expect(Buffer.from(chipB.deriveKey(req, guest())).equals(Buffer.from(k))).toBe(false);
    const other = new Uint8Array(MEASUREMENT);
    other[47] ^= 1;
    expect(Buffer.from(chipA.deriveKey(req, guest({ measurement: other }))).equals(Buffer.from(k))).toBe(false);
    expect(Buffer.from(chipA.deriveKey(req, guest({ policy: POLICY | (1n << 19n) }))).equals(Buffer.from(k))).toBe(
      false,
    );
    // A field not selected does not change the key (image id is not part of the auto-unseal binding)...
    expect(
      Buffer.from(chipA.deriveKey(req, guest({ imageId: new Uint8Array(16).fill(7) }))).equals(Buffer.from(k)),
    ).toBe(true);
    // ...and the VMRK root is a different key.
    const vmrk = encodeKeyRequest({ ...AUTO_UNSEAL_KEY_REQUEST, rootKey: "vmrk" }, "Milan");
    expect(Buffer.from(chipA.deriveKey(vmrk, guest())).equals(Buffer.from(k))).toBe(false);
  });

  it("the same platform restored from exportState derives the same key", async () => {
    const again = await createSnpSimulator({ state: await chipA.exportState() });
    const req = encodeKeyRequest(AUTO_UNSEAL_KEY_REQUEST, "Milan");
    expect(Buffer.from(again.deriveKey(req, guest())).equals(Buffer.from(chipA.deriveKey(req, guest())))).toBe(true);
  });

  it("refuses malformed requests naming the field", () => {
    expect(() => encodeKeyRequest({ ...AUTO_UNSEAL_KEY_REQUEST, vmpl: 4 }, "Milan")).toThrow(/vmpl/);
    expect(() => encodeKeyRequest({ ...AUTO_UNSEAL_KEY_REQUEST, fields: ["nope" as never] }, "Milan")).toThrow(
      DerivedKeyRequestError,
    );
    const bad = Buffer.from(encodeKeyRequest(AUTO_UNSEAL_KEY_REQUEST, "Milan"));
    bad[4] = 1;
    expect(() => decodeKeyRequest(bad)).toThrow(/reserved/);
    // A guest may not ask for a more privileged VMPL's key nor a higher SVN than its own.
    const req = encodeKeyRequest(AUTO_UNSEAL_KEY_REQUEST, "Milan");
    expect(() => chipA.deriveKey(req, guest({ vmpl: 1 }))).toThrow(/VMPL/);
    const svn = encodeKeyRequest({ ...AUTO_UNSEAL_KEY_REQUEST, guestSvn: 2 }, "Milan");
    expect(() => chipA.deriveKey(svn, guest({ guestSvn: 1 }))).toThrow(/GUEST_SVN/);
  });
});

describe("runtime auto-unseal (seal snp-derived-key)", () => {
  const MARKER = "auto-unseal-marker-5c1e";
  let file: string;
  let recovery: string[];
  let root: string;

  const open = async (p: AutoUnsealProvider | undefined) => {
    const physical = new SqliteStorage(file);
    const core = new Core({ physical, registry: builtinRegistry(), autoUnseal: p });
    await core.start();
    return { core, physical };
  };
  const read = (core: Core) =>
    core.handle({
      method: "GET",
      path: "secret/data/x",
      query: {},
      body: undefined,
      headers: { "x-vault-token": root },
      clientIp: "127.0.0.1",
    });

  it("init wraps the unseal key; a restart on the same chip and launch unseals by itself", async () => {
    file = path.join(dir, "rt.db");
    const { core, physical } = await open(provider(chipA, guest()));
    const init = await core.initialize(3, 2);
    recovery = init.keys;
    root = init.root_token;
    await core.unsealWith(recovery.slice(0, 2));
    await core.writeTable("secret", (t) => [...t, newMount("secret", "secret/", "kv", { options: { version: "2" } })]);
    const w = await core.handle({
      method: "POST",
      path: "secret/data/x",
      query: {},
      body: { data: { v: MARKER } },
      headers: { "x-vault-token": root },
      clientIp: "127.0.0.1",
    });
    expect(w.status).toBe(200);
    await core.seal();
    await physical.close();

    const raw = readFileSync(file);
    expect(raw.includes(Buffer.from(MARKER))).toBe(false);

    const again = await open(provider(chipA, guest()));
    expect(again.core.sealed).toBe(false);
    const r = await read(again.core);
    expect(r.status).toBe(200);
    expect(JSON.stringify(r.body)).toContain(MARKER);
    await again.core.seal();
    await again.physical.close();
  });

  it("a changed measurement stays sealed", async () => {
    const m = new Uint8Array(MEASUREMENT);
    m[0] ^= 0xff;
    const { core, physical } = await open(provider(chipA, guest({ measurement: m })));
    expect(core.sealed).toBe(true);
    expect((await read(core)).status).toBe(503);
    await physical.close();
  });

  it("a relaxed policy (debug) stays sealed", async () => {
    const { core, physical } = await open(provider(chipA, guest({ policy: POLICY | (1n << 19n) })));
    expect(core.sealed).toBe(true);
    await physical.close();
  });

  it("the disk copied to another chip stays sealed; the recovery shares unseal it there", async () => {
    const { core, physical } = await open(provider(chipB, guest()));
    expect(core.sealed).toBe(true);
    await expect(core.unsealWith([recovery[0]])).resolves.toBeUndefined();
    expect(core.sealed).toBe(true); // below the threshold
    await core.unsealWith([recovery[2]]);
    expect(core.sealed).toBe(false);
    const r = await read(core);
    expect(JSON.stringify(r.body)).toContain(MARKER);
    await core.seal();
    await physical.close();
  });

  it("a provider that fails leaves the runtime sealed instead of stopping it", async () => {
    const { core, physical } = await open({
      type: "snp-derived-key",
      deriveKey: async () => {
        throw new Error("/dev/sev-guest: no such device");
      },
    });
    expect(core.sealed).toBe(true);
    await physical.close();
  });

  it("init with a provider that gives no key (an unbound launch) fails cleanly and stays retryable", async () => {
    const fresh = path.join(dir, "fresh.db");
    const physical = new SqliteStorage(fresh);
    const refusing = provider(chipA, guest({ kernelMeasured: false }));
    const core = new Core({ physical, registry: builtinRegistry(), autoUnseal: refusing });
    await core.start();
    await expect(core.initialize(3, 2)).rejects.toThrow(
      /no key from the provider .*not kernel-measured.*not initialized/,
    );
    expect(await core.initialized()).toBe(false);
    await physical.close();
    // The same storage with a provider that answers: init works (the failed attempt left nothing behind).
    const physical2 = new SqliteStorage(fresh);
    const again = new Core({ physical: physical2, registry: builtinRegistry(), autoUnseal: provider(chipA, guest()) });
    await again.start();
    const init = await again.initialize(3, 2);
    expect(init.keys).toHaveLength(3);
    await physical2.close();
  });

  it("without a provider configured it stays sealed (auto-unseal is opt-in per start)", async () => {
    const { core, physical } = await open(undefined);
    expect(core.sealed).toBe(true);
    await physical.close();
  });
});
