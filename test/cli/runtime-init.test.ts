// `buckypaper runtime init` and the unseal key shares (docs/security.md): each share encrypted to one
// operator's public JWK (--recovery-keys, Vault's -pgp-keys semantics with JWE/X25519) and the root token to
// another (--root-token-key); what would stay in clear goes only to a terminal, once, with a warning — a
// file, pipe or CI log is refused before anything is initialized. Real `runtime server` processes on
// SQLite; the CLI runs as a process (stdout a pipe) and, for the terminal case, in-process with a terminal io.
// `runtime generate-root` and `runtime rekey` with JWE shares: the same rule for the new shares a rekey returns.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { cli, startServerProc, type ServerProc } from "../runtime/server/core-procs.js";
import { main } from "../../cli/main.js";

const tmp = mkdtempSync(path.join(tmpdir(), "bk-init-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function server(name: string): Promise<ServerProc> {
  const dir = path.join(tmp, name);
  const cfg = path.join(tmp, `${name}.hcl`);
  writeFileSync(
    cfg,
    `storage "sqlite" { path = "${dir}/runtime.db" }\nlistener "tcp" {\n address = "127.0.0.1:0"\n tls_disable = true\n}\n`,
  );
  return startServerProc(cfg);
}

/** An operator key pair made with `runtime recovery-key`: private JWK file, public JWK file. */
async function operator(name: string): Promise<{ priv: string; pub: string }> {
  const priv = path.join(tmp, `${name}.jwk`);
  const r = await cli(["runtime", "recovery-key", "--out", priv]);
  expect(r.code, r.stderr).toBe(0);
  const pub = path.join(tmp, `${name}.pub.jwk`);
  writeFileSync(pub, r.stdout);
  return { priv, pub };
}

let srv: ServerProc;
let ops: Array<{ priv: string; pub: string }>;
beforeAll(async () => {
  srv = await server("a");
  ops = [await operator("op1"), await operator("op2"), await operator("op3")];
}, 120_000);
afterAll(async () => {
  await srv?.kill();
});

const addr = () => ["--address", srv.url];
const initialized = async () => /Initialized\s+true/.test((await cli(["runtime", "status", ...addr()])).stdout);
/** `runtime init` at `address` with `shares` key shares of which `threshold` unseal, then `more` flags. */
const init = (address: string[], shares: number, threshold: number, ...more: string[]) =>
  cli(["runtime", "init", ...address, "--key-shares", `${shares}`, "--key-threshold", `${threshold}`, ...more]);
/** `runtime unseal` at `address` with one JWE share, opened with an operator's private key file. */
const unseal = (address: string[], share: string, key: string) =>
  cli(["runtime", "unseal", ...address, "--share", share, "--recovery-key", key]);
/** Every operator's public key, one per share. */
const allOperators = () => ops.map((o) => o.pub).join(",");

describe("runtime init: shares never in clear outside a terminal", () => {
  it("to a pipe without encryption: refused before sys/init (nothing initialized, nothing lost)", async () => {
    const r = await init(addr(), 3, 2);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/standard output is not a terminal/);
    expect(r.stderr).toMatch(/--recovery-keys/);
    expect(r.stdout).toBe("");
    // shares encrypted but the root token not: still refused
    const half = await init(addr(), 3, 2, "--recovery-keys", allOperators());
    expect(half.code).toBe(2);
    expect(half.stderr).toMatch(/the root token would be written there in clear/);
    expect(await initialized()).toBe(false);
  });

  it("a key count that does not match the shares, or a private key given as public: refused, naming the flag", async () => {
    const few = await init(
      addr(),
      3,
      2,
      "--recovery-keys",
      `${ops[0].pub},${ops[1].pub}`,
      "--root-token-key",
      ops[0].pub,
    );
    expect(few.code).toBe(2);
    expect(few.stderr).toMatch(/--recovery-keys: 2 keys for 3 key shares/);
    const priv = await init(addr(), 1, 1, "--recovery-keys", ops[0].priv, "--root-token-key", ops[0].pub);
    expect(priv.code).toBe(2);
    expect(priv.stderr).toMatch(/private key/);
    expect(await initialized()).toBe(false);
  });

  it("encrypted to operator keys: each operator opens only its own share; a quorum unseals; the root token opens", async () => {
    const r = await init(
      addr(),
      3,
      2,
      "--recovery-keys",
      allOperators(),
      "--root-token-key",
      ops[2].pub,
      "--format",
      "json",
    );
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.unseal_keys_b64).toBeUndefined();
    expect(out.unseal_keys_hex).toBeUndefined();
    expect(out.root_token).toBeUndefined();
    expect(r.stdout).not.toMatch(/hvs\./);
    expect(out.unseal_keys_jwe).toHaveLength(3);
    expect(r.stderr).not.toMatch(/WARNING/);
    // op2 cannot open op1's share
    const wrong = await unseal(addr(), out.unseal_keys_jwe[0], ops[1].priv);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/does not open with that key/);
    const u1 = await unseal(addr(), out.unseal_keys_jwe[0], ops[0].priv);
    expect(u1.code, u1.stderr).toBe(0);
    expect(u1.stdout).toMatch(/Unseal Progress\s+1\/2/);
    const u2 = await unseal(addr(), out.unseal_keys_jwe[2], ops[2].priv);
    expect(u2.stdout).toMatch(/Sealed\s+false/);
    // the root token: only the holder of its key opens it
    expect(
      (await cli(["runtime", "root-token", "--jwe", out.root_token_jwe, "--recovery-key", ops[0].priv])).code,
    ).toBe(2);
    const t = await cli(["runtime", "root-token", "--jwe", out.root_token_jwe, "--recovery-key", ops[2].priv]);
    expect(t.code, t.stderr).toBe(0);
    const token = t.stdout.trim();
    const me = await fetch(`${srv.url}/v1/auth/token/lookup-self`, { headers: { "x-vault-token": token } });
    expect(me.status).toBe(200);
    expect(((await me.json()) as { data: { policies: string[] } }).data.policies).toEqual(["root"]);
  });

  it("in a terminal: printed in clear once, with a warning on stderr", async () => {
    const b = await server("b");
    try {
      let out = "",
        err = "";
      const io = {
        out: (t: string) => void (out += t + "\n"),
        err: (t: string) => void (err += t + "\n"),
        isTerminal: () => true,
      };
      const code = await main(["runtime", "init", "--address", b.url, "--key-shares", "2", "--key-threshold", "2"], io);
      expect(code, err).toBe(0);
      expect(out).toMatch(/^Unseal Key 1: \S+$/m);
      expect(out).toMatch(/^Initial Root Token: hvs\.\S+$/m);
      expect(err).toMatch(/WARNING! the unseal key shares and the root token are printed below in clear, this once/);
    } finally {
      await b.kill();
    }
  });
});

/**
 * `runtime init` with 3 shares / threshold 2, each share encrypted to one operator (the root token to the first),
 * then unsealed by the first two operators; returns the JWE shares.
 */
async function initForOperators(a: string[]): Promise<string[]> {
  const r = await init(a, 3, 2, "--format", "json", "--recovery-keys", allOperators(), "--root-token-key", ops[0].pub);
  expect(r.code, r.stderr).toBe(0);
  const jwe = JSON.parse(r.stdout).unseal_keys_jwe as string[];
  for (const i of [0, 1]) expect((await unseal(a, jwe[i], ops[i].priv)).code).toBe(0);
  return jwe;
}

describe("runtime generate-root: operators holding encrypted shares mint a root token", () => {
  it("init, two operators each give their JWE share, decode with the OTP; a wrong key or nonce is refused", async () => {
    const c = await server("c");
    try {
      const a = ["--address", c.url];
      const jwe = await initForOperators(a);
      // no root token is used from here on (the state after Vhsm's default bootstrap)
      const st = await cli(["runtime", "generate-root", ...a, "--init", "--format", "json"]);
      expect(st.code, st.stderr).toBe(0);
      const { nonce, otp } = JSON.parse(st.stdout) as { nonce: string; otp: string };
      const give = (i: number, n = nonce, key = ops[i].priv) =>
        cli(["runtime", "generate-root", ...a, "--nonce", n, "--share", jwe[i], "--recovery-key", key]);
      expect((await give(1, nonce, ops[2].priv)).stderr).toMatch(/does not open with that key/);
      const badNonce = await give(1, "00000000-0000-4000-8000-000000000000");
      expect(badNonce.code).toBe(1);
      expect(badNonce.stderr).toMatch(/nonce: does not match/);
      const one = await give(1);
      expect(one.code, one.stderr).toBe(0);
      expect(one.stdout).toMatch(/Progress\s+1\/2/);
      const two = await give(2);
      expect(two.code, two.stderr).toBe(0);
      const enc = /Encoded Token\s+(\S+)/.exec(two.stdout)?.[1];
      expect(enc).toBeDefined();
      const dec = await cli(["runtime", "generate-root", "--decode", enc!, "--otp", otp]);
      expect(dec.code, dec.stderr).toBe(0);
      const me = await fetch(`${c.url}/v1/auth/token/lookup-self`, { headers: { "x-vault-token": dec.stdout.trim() } });
      expect(((await me.json()) as { data: { policies: string[] } }).data.policies).toEqual(["root"]);
    } finally {
      await c.kill();
    }
  });
});

describe("runtime rekey: operators holding encrypted shares hand the runtime to new holders", () => {
  it("the old holders' JWE shares rekey it; the new shares are encrypted to the new holders; the old ones no longer unseal", async () => {
    const d = await server("d");
    let again: ServerProc | undefined;
    try {
      const a = ["--address", d.url];
      const jwe = await initForOperators(a);
      const next = [await operator("op4"), await operator("op5")];
      const st = await cli([
        "runtime",
        "rekey",
        ...a,
        "--init",
        "--key-shares",
        "2",
        "--key-threshold",
        "2",
        "--format",
        "json",
      ]);
      expect(st.code, st.stderr).toBe(0);
      const { nonce } = JSON.parse(st.stdout) as { nonce: string };
      const give = (i: number, ...more: string[]) =>
        cli(["runtime", "rekey", ...a, "--nonce", nonce, "--share", jwe[i], "--recovery-key", ops[i].priv, ...more]);
      const one = await give(0);
      expect(one.code, one.stderr).toBe(0);
      expect(one.stdout).toMatch(/Rekey Progress\s+1\/2/);
      expect(one.stdout).toMatch(/New Shares\s+2/);
      // the last share, to a pipe, without keys to encrypt to: refused before it is sent
      const clear = await give(2);
      expect(clear.code).toBe(2);
      expect(clear.stderr).toMatch(/completes the quorum.*Your share was not sent/s);
      const many = await give(2, "--recovery-keys", allOperators());
      expect(many.code).toBe(2);
      expect(many.stderr).toMatch(/--recovery-keys: 3 keys for 2 new key shares/);
      const st2 = await cli(["runtime", "rekey", ...a, "--status", "--format", "json"]);
      expect(JSON.parse(st2.stdout)).toMatchObject({ started: true, progress: 1, n: 2, t: 2 });
      const done = await give(2, "--recovery-keys", next.map((o) => o.pub).join(","), "--format", "json");
      expect(done.code, done.stderr).toBe(0);
      const out = JSON.parse(done.stdout) as { unseal_keys_jwe: string[]; unseal_threshold: number };
      expect(out.unseal_keys_jwe).toHaveLength(2);
      expect(out.unseal_threshold).toBe(2);
      expect(done.stdout).not.toMatch(/unseal_keys_b64/);
      // restarted: the old holders' shares are refused, the new holders unseal it
      await d.kill();
      again = await startServerProc(path.join(tmp, "d.hcl"));
      const b = ["--address", again.url];
      expect((await unseal(b, jwe[0], ops[0].priv)).code).toBe(0);
      const old = await unseal(b, jwe[1], ops[1].priv);
      expect(old.code).toBe(1);
      expect(old.stderr).toMatch(/invalid key shares/);
      expect((await unseal(b, out.unseal_keys_jwe[0], next[1].priv)).stderr).toMatch(/does not open with that key/);
      for (const i of [0, 1]) expect((await unseal(b, out.unseal_keys_jwe[i], next[i].priv)).code).toBe(0);
      expect((await cli(["runtime", "status", ...b])).stdout).toMatch(/Sealed\s+false/);
    } finally {
      await again?.kill();
      await d.kill();
    }
  });

  it("--init --verify: the new holders confirm their JWE shares with --verify before the old ones stop working", async () => {
    const e = await server("e");
    let again: ServerProc | undefined;
    try {
      const a = ["--address", e.url];
      const jwe = await initForOperators(a);
      const next = [await operator("op6"), await operator("op7")];
      const st = await cli([
        "runtime",
        "rekey",
        ...a,
        "--init",
        "--verify",
        "--key-shares",
        "2",
        "--key-threshold",
        "2",
      ]);
      expect(st.code, st.stderr).toBe(0);
      expect(st.stdout).toMatch(/Verification Required\s+true/);
      const nonce = /^Nonce\s+(\S+)/m.exec(st.stdout)![1];
      const give = (i: number, ...more: string[]) =>
        cli(["runtime", "rekey", ...a, "--nonce", nonce, "--share", jwe[i], "--recovery-key", ops[i].priv, ...more]);
      expect((await give(0)).code).toBe(0);
      const done = await give(2, "--recovery-keys", next.map((o) => o.pub).join(","), "--format", "json");
      expect(done.code, done.stderr).toBe(0);
      const out = JSON.parse(done.stdout) as {
        unseal_keys_jwe: string[];
        verification_required: boolean;
        verification_nonce: string;
      };
      expect(out.unseal_keys_jwe).toHaveLength(2);
      expect(out).toMatchObject({ verification_required: true });
      const vnonce = out.verification_nonce;
      // the old quorum is spent: another old share is refused before it is sent, naming the verification
      const more = await give(1, "--recovery-keys", next.map((o) => o.pub).join(","));
      expect(more.code).toBe(2);
      expect(more.stderr).toContain(
        `awaits verification: the new shares' holders give them with --verify --nonce ${vnonce}`,
      );
      const vs = await cli(["runtime", "rekey", ...a, "--verify", "--status", "--format", "json"]);
      expect(JSON.parse(vs.stdout)).toEqual({ nonce: vnonce, started: true, t: 2, n: 2, progress: 0 });
      const confirm = (i: number) =>
        cli([
          "runtime",
          "rekey",
          ...a,
          "--verify",
          "--nonce",
          vnonce,
          "--share",
          out.unseal_keys_jwe[i],
          "--recovery-key",
          next[i].priv,
        ]);
      const first = await confirm(0);
      expect(first.code, first.stderr).toBe(0);
      expect(first.stdout).toMatch(/Verification Progress\s+1\/2/);
      const last = await confirm(1);
      expect(last.code, last.stderr).toBe(0);
      expect(last.stdout).toMatch(/Rekey verification successful/);
      // restarted: the old holders' shares are refused, the new holders unseal it
      await e.kill();
      again = await startServerProc(path.join(tmp, "e.hcl"));
      const b = ["--address", again.url];
      expect((await unseal(b, jwe[0], ops[0].priv)).code).toBe(0);
      expect((await unseal(b, jwe[1], ops[1].priv)).stderr).toMatch(/invalid key shares/);
      for (const i of [0, 1]) expect((await unseal(b, out.unseal_keys_jwe[i], next[i].priv)).code).toBe(0);
      expect((await cli(["runtime", "status", ...b])).stdout).toMatch(/Sealed\s+false/);
    } finally {
      await again?.kill();
      await e.kill();
    }
  });
});
