import { describe, expect, it } from "vitest";
import { createDecipheriv } from "node:crypto";
import { TransitBackend } from "../../../../runtime/server/vault/engines/transit.js";
import { LogicalError } from "../../../../runtime/server/vault/backend.js";
import { Harness } from "../nitride/nitride-harness.js";

const b64 = (s: string) => Buffer.from(s).toString("base64");

async function setup() {
  const h = new Harness();
  const storage = await h.mount("transit/", new TransitBackend());
  return { h, storage };
}

describe("transit engine (unit)", () => {
  it("encrypts to vault:v1: AES-256-GCM (nonce ‖ ct ‖ tag) and decrypts back", async () => {
    const { h, storage } = await setup();
    await h.call("update", "transit/keys/app");
    const enc = await h.call("update", "transit/encrypt/app", { plaintext: b64("hello world") });
    const ct = enc!.data!.ciphertext as string;
    expect(ct).toMatch(/^vault:v1:[A-Za-z0-9+/]+=*$/);
    // Independent check of the wire format with the stored key.
    const stored = JSON.parse((await storage.get("policy/app"))!.toString());
    const body = Buffer.from(ct.slice("vault:v1:".length), "base64");
    const d = createDecipheriv("aes-256-gcm", Buffer.from(stored.keys["1"].key, "base64"), body.subarray(0, 12));
    d.setAuthTag(body.subarray(body.length - 16));
    expect(Buffer.concat([d.update(body.subarray(12, body.length - 16)), d.final()]).toString()).toBe("hello world");
    const dec = await h.call("update", "transit/decrypt/app", { ciphertext: ct });
    expect(Buffer.from(dec!.data!.plaintext as string, "base64").toString()).toBe("hello world");
    expect(dec!.secretKeys).toEqual(["plaintext"]);
  });

  it("rotates: new ciphertexts use v2, old still decrypt, rewrap upgrades, min_decryption_version retires v1", async () => {
    const { h } = await setup();
    const v1 = (await h.call("update", "transit/encrypt/k", { plaintext: b64("x") }))!.data!.ciphertext as string;
    const info = await h.call("update", "transit/keys/k/rotate");
    expect(info!.data!.latest_version).toBe(2);
    const v2 = (await h.call("update", "transit/encrypt/k", { plaintext: b64("y") }))!.data!.ciphertext as string;
    expect(v2.startsWith("vault:v2:")).toBe(true);
    expect((await h.call("update", "transit/decrypt/k", { ciphertext: v1 }))!.data!.plaintext).toBe(b64("x"));
    const re = (await h.call("update", "transit/rewrap/k", { ciphertext: v1 }))!.data!.ciphertext as string;
    expect(re.startsWith("vault:v2:")).toBe(true);
    await h.call("update", "transit/keys/k/config", { min_decryption_version: 2 });
    await expect(h.call("update", "transit/decrypt/k", { ciphertext: v1 })).rejects.toThrow(/min_decryption_version/);
    expect((await h.call("update", "transit/decrypt/k", { ciphertext: re }))!.data!.plaintext).toBe(b64("x"));
  });

  it("datakey: plaintext form matches what decrypt returns for the wrapped form; wrapped omits plaintext", async () => {
    const { h } = await setup();
    await h.call("update", "transit/keys/dk");
    const r = await h.call("update", "transit/datakey/plaintext/dk", { bits: 256 });
    expect(Buffer.from(r!.data!.plaintext as string, "base64").length).toBe(32);
    const dec = await h.call("update", "transit/decrypt/dk", { ciphertext: r!.data!.ciphertext });
    expect(dec!.data!.plaintext).toBe(r!.data!.plaintext);
    const w = await h.call("update", "transit/datakey/wrapped/dk", {});
    expect(w!.data!.plaintext).toBeUndefined();
    expect(w!.data!.ciphertext).toMatch(/^vault:v1:/);
  });

  it("refuses tampered ciphertext, unknown keys, bad fields and undeletable keys with 400", async () => {
    const { h } = await setup();
    const ct = (await h.call("update", "transit/encrypt/t", { plaintext: b64("secret") }))!.data!.ciphertext as string;
    const body = Buffer.from(ct.slice(9), "base64");
    body[14] ^= 1;
    const bad = `vault:v1:${body.toString("base64")}`;
    for (const [path, data, msg] of [
      ["transit/decrypt/t", { ciphertext: bad }, /authentication failed/],
      ["transit/decrypt/t", { ciphertext: "nope" }, /ciphertext: invalid format/],
      ["transit/decrypt/none", { ciphertext: ct }, /not found/],
      ["transit/encrypt/t", { plaintext: "%%%" }, /plaintext: not base64/],
      ["transit/datakey/plaintext/t", { bits: 100 }, /bits/],
      ["transit/keys/x", { type: "rsa-4096" }, /type: unsupported/],
    ] as const) {
      const err = await h.call("update", path, data as Record<string, unknown>).catch((e) => e);
      expect(err).toBeInstanceOf(LogicalError);
      expect((err as LogicalError).status).toBe(400);
      expect((err as Error).message).toMatch(msg);
      expect((err as Error).message).not.toContain("secret");
    }
    await expect(h.call("delete", "transit/keys/t")).rejects.toThrow(/deletion is not allowed/);
    await h.call("update", "transit/keys/t/config", { deletion_allowed: true });
    await h.call("delete", "transit/keys/t");
    await expect(h.call("read", "transit/keys/t")).rejects.toMatchObject({ status: 404 });
  });

  it("batch encrypt/decrypt keeps order and reports per-item errors", async () => {
    const { h } = await setup();
    const enc = await h.call("update", "transit/encrypt/b", {
      batch_input: [{ plaintext: b64("a") }, { plaintext: b64("b") }],
    });
    const results = enc!.data!.batch_results as Array<{ ciphertext: string }>;
    const dec = await h.call("update", "transit/decrypt/b", {
      batch_input: [...results.map((r) => ({ ciphertext: r.ciphertext })), { ciphertext: "bad" }],
    });
    const out = dec!.data!.batch_results as Array<{ plaintext?: string; error?: string }>;
    expect(out.map((o) => o.plaintext)).toEqual([b64("a"), b64("b"), undefined]);
    expect(out[2].error).toMatch(/invalid format/);
  });
});
