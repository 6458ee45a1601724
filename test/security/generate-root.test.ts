// sys/generate-root (runtime/server/vault/generate-root.ts): after the default bootstrap no root token
// exists; a quorum of unseal share holders mints one, returned only as base64(token XOR otp). Attacked
// over real HTTP against `runtime server` on SQLite with workers = 2 and 3 shares / threshold 2, each
// request on a fresh connection (so an attempt's shares land on different workers): wrong shares, a
// repeated share, a nonce from another attempt, a cancelled attempt, a non-root token, a sealed runtime,
// an OTP of the wrong length. The real vault CLI drives the same endpoints in test/compat/.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { startRuntimeServer, type ServerUnderAttack } from "./support.js";
import { decodeRootToken, ROOT_TOKEN_LENGTH } from "../../runtime/server/vault/generate-root.js";

let srv: ServerUnderAttack;
/** A token with an ordinary policy, made before root was revoked. */
let low: string;

beforeAll(async () => {
  srv = await startRuntimeServer({ workers: 2, shares: 3, threshold: 2 });
  await srv.call("PUT", "sys/policies/acl/app", { policy: 'path "secret/*" { capabilities = ["read"] }' }, srv.root);
  const t = await srv.call("POST", "auth/token/create-orphan", { policies: ["app"] }, srv.root);
  low = t.body.auth.client_token;
  // The state after the default bootstrap: no root token anywhere.
  expect((await srv.call("POST", "auth/token/revoke-self", {}, srv.root)).status).toBe(204);
  expect((await srv.call("GET", "auth/token/lookup-self", undefined, srv.root)).status).toBe(403);
}, 120_000);

afterAll(async () => {
  await srv?.close();
});

const attempt = () => srv.call("GET", "sys/generate-root/attempt");
const start = (body: unknown = {}) => srv.call("PUT", "sys/generate-root/attempt", body);
const cancel = () => srv.call("DELETE", "sys/generate-root/attempt");
const update = (key: string, nonce: string) => srv.call("PUT", "sys/generate-root/update", { key, nonce });

describe("sys/generate-root: an operator quorum mints a root token", () => {
  it("no attempt at first; Vault's status shape with this runtime's otp_length", async () => {
    const s = await attempt();
    expect(s.status).toBe(200);
    expect(s.body).toMatchObject({ started: false, progress: 0, required: 2, complete: false, nonce: "" });
    expect(s.body.otp_length).toBe(ROOT_TOKEN_LENGTH);
  });

  it("two genuine shares on different workers: the encoded token decodes with the OTP to a working root token", async () => {
    const st = await start();
    expect(st.status).toBe(200);
    expect(st.body.started).toBe(true);
    const { nonce, otp } = st.body;
    expect(otp).toMatch(new RegExp(`^[0-9A-Za-z]{${ROOT_TOKEN_LENGTH}}$`));
    // a second attempt while one is in progress is refused, and does not replace it
    expect((await start()).status).toBe(400);
    expect((await attempt()).body.otp).toBe(""); // the OTP is shown once, at the start
    const one = await update(srv.keys[0], nonce);
    expect(one.body).toMatchObject({ progress: 1, complete: false, encoded_token: "" });
    const two = await update(srv.keys[2], nonce);
    expect(two.status).toBe(200);
    expect(two.body.complete).toBe(true);
    expect(two.body.encoded_token).toBe(two.body.encoded_root_token);
    const token = decodeRootToken(two.body.encoded_token, otp);
    expect(token).toMatch(/^hvs\./);
    const me = await srv.call("GET", "auth/token/lookup-self", undefined, token);
    expect(me.status).toBe(200);
    expect(me.body.data.policies).toEqual(["root"]);
    // the operator path: with it, narrow or write policies (what no token could do after bootstrap)
    expect(
      (await srv.call("PUT", "sys/policies/acl/ops", { policy: 'path "x" { capabilities = ["read"] }' }, token)).status,
    ).toBe(204);
    expect((await attempt()).body.started).toBe(false); // finished attempts are gone
    expect((await srv.call("POST", "auth/token/revoke-self", {}, token)).status).toBe(204);
  });

  it("wrong shares: refused, no token, the progress is reset (the attempt stays)", async () => {
    const { nonce } = (await start()).body;
    const fake = () => randomBytes(33).toString("base64");
    expect((await update(fake(), nonce)).status).toBe(200);
    const r = await update(fake(), nonce);
    expect(r.status).toBe(400);
    expect(JSON.stringify(r.body)).toMatch(/do not reconstruct the unseal key/);
    expect(r.body.encoded_token).toBeUndefined();
    const s = (await attempt()).body;
    expect(s).toMatchObject({ started: true, nonce, progress: 0 });
    // one genuine share and one forged one: refused too
    await update(srv.keys[1], nonce);
    expect((await update(fake(), nonce)).status).toBe(400);
    // a share of the wrong size is a 400 naming the field
    const bad = await update(randomBytes(10).toString("base64"), nonce);
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toMatch(/key: expected a 33-byte key share/);
    expect((await cancel()).status).toBe(204);
  });

  it("a repeated share does not count twice", async () => {
    const { nonce } = (await start()).body;
    expect((await update(srv.keys[0], nonce)).body.progress).toBe(1);
    const again = await update(srv.keys[0], nonce);
    expect(again.status).toBe(400);
    expect((await attempt()).body.progress).toBe(1);
    expect((await cancel()).status).toBe(204);
  });

  it("a nonce from another attempt is refused and changes nothing", async () => {
    const { nonce } = (await start()).body;
    await update(srv.keys[0], nonce);
    const r = await update(srv.keys[1], "00000000-0000-4000-8000-000000000000");
    expect(r.status).toBe(400);
    expect(JSON.stringify(r.body)).toMatch(/nonce: does not match/);
    expect((await attempt()).body).toMatchObject({ progress: 1, complete: false });
    expect((await cancel()).status).toBe(204);
  });

  it("cancel drops the attempt and its shares: the old nonce is dead, a new attempt starts at 0", async () => {
    const first = (await start()).body;
    await update(srv.keys[0], first.nonce);
    expect((await cancel()).status).toBe(204);
    expect((await attempt()).body).toMatchObject({ started: false, progress: 0 });
    const late = await update(srv.keys[1], first.nonce);
    expect(late.status).toBe(400);
    expect(JSON.stringify(late.body)).toMatch(/no root generation in progress/);
    const second = (await start()).body;
    expect(second.nonce).not.toBe(first.nonce);
    const one = await update(srv.keys[1], second.nonce);
    expect(one.body.progress).toBe(1); // the share given to the cancelled attempt does not count
    expect((await cancel()).status).toBe(204);
  });

  it("a non-root token gains nothing: it may see the status, but without a quorum there is no token", async () => {
    const withToken = (m: string, p: string, b?: unknown) => srv.call(m, p, b, low);
    const st = await withToken("PUT", "sys/generate-root/attempt", {});
    expect(st.status).toBe(200);
    const one = await withToken("PUT", "sys/generate-root/update", { key: srv.keys[0], nonce: st.body.nonce });
    expect(one.body).toMatchObject({ progress: 1, complete: false, encoded_token: "" });
    // and its own rights stay its own
    expect((await withToken("POST", "auth/token/create", { policies: ["root"] })).status).toBe(403);
    expect((await withToken("GET", "sys/policies/acl/app")).status).toBe(403);
    expect((await cancel()).status).toBe(204);
  });

  it("an OTP of the wrong length and PGP keys are refused, naming the field", async () => {
    const short = await start({ otp: "abc" });
    expect(short.status).toBe(400);
    expect(JSON.stringify(short.body)).toMatch(new RegExp(`otp: must be ${ROOT_TOKEN_LENGTH} characters`));
    const pgp = await start({ pgp_key: "mQENBF..." });
    expect(pgp.status).toBe(400);
    expect(JSON.stringify(pgp.body)).toMatch(/pgp_key/);
    expect((await attempt()).body.started).toBe(false);
    // the caller's own OTP: not echoed back
    const own = "x".repeat(ROOT_TOKEN_LENGTH);
    const st = await start({ otp: own });
    expect(st.status).toBe(200);
    expect(st.body.otp).toBe("");
    expect((await cancel()).status).toBe(204);
  });

  it("a sealed runtime answers 503 (as Vault): no attempt can start or progress", async () => {
    // seal needs a token allowed to: mint one the operator way first
    const st = (await start()).body;
    await update(srv.keys[0], st.nonce);
    const done = await update(srv.keys[1], st.nonce);
    const token = decodeRootToken(done.body.encoded_token, st.otp);
    expect((await srv.call("PUT", "sys/seal", {}, token)).status).toBe(204);
    expect((await attempt()).status).toBe(503);
    expect((await start()).status).toBe(503);
    expect((await update(srv.keys[0], st.nonce)).status).toBe(503);
  });
});
