// sys/generate-root: an operator quorum mints a new root token with its unseal key shares, as Vault does
// (`vault operator generate-root -init`, one `vault operator generate-root` per share holder, `-decode`).
// The attempt carries a nonce (every share must name it) and a one-time pad; at the threshold the shares
// are combined, checked against the barrier's keyring, and the new root token is returned only as
// base64(token XOR otp) — whoever reads the answer learns nothing without the OTP the initiator kept.
// Like Vault the endpoints need no token (the shares are the authority) and work only while unsealed.
// The attempt lives in the barrier (one key), not in memory, so every worker of a multi-worker runtime
// and every replica sees one attempt; each change is one transaction.
import { randomInt, randomUUID } from "node:crypto";
import { combine } from "shamir-secret-sharing";
import { LogicalError } from "./backend.js";
import type { CoreView } from "./core-view.js";

const ATTEMPT_KEY = "core/generate-root";
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/** Length of this runtime's root tokens ("hvs." + 32 base64url characters): the OTP must match it byte for byte. */
export const ROOT_TOKEN_LENGTH = 36;

interface Attempt {
  nonce: string;
  otp: string;
  /** Shares submitted so far (base64), each once. */
  shares: string[];
}

/** Vault's GenerateRootStatusResponse. */
export interface GenerateRootStatus {
  nonce: string;
  started: boolean;
  progress: number;
  required: number;
  complete: boolean;
  encoded_token: string;
  encoded_root_token: string;
  pgp_fingerprint: string;
  otp: string;
  otp_length: number;
}

/** base64 without padding (Go's RawStdEncoding, what `vault operator generate-root -decode` reads) of token XOR otp. */
export function encodeRootToken(token: string, otp: string): string {
  const t = Buffer.from(token, "utf8");
  const o = Buffer.from(otp, "utf8");
  if (t.length !== o.length) throw new Error(`the OTP has ${o.length} bytes, the token ${t.length}`);
  return Buffer.from(t.map((b, i) => b ^ o[i]))
    .toString("base64")
    .replace(/=+$/, "");
}

/** The inverse, for clients (the CLI's decode). */
export function decodeRootToken(encoded: string, otp: string): string {
  const e = Buffer.from(encoded, "base64");
  const o = Buffer.from(otp, "utf8");
  if (e.length !== o.length) throw new Error(`the OTP has ${o.length} bytes, the encoded token ${e.length}`);
  return Buffer.from(e.map((b, i) => b ^ o[i])).toString("utf8");
}

function randomBase62(n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += BASE62[randomInt(BASE62.length)];
  return s;
}

/** A key share as `sys/unseal` takes it: hex or base64 (`single`: the runtime has one share, the whole key). */
export function parseShare(text: string, single: boolean): Buffer {
  const share =
    /^[0-9a-fA-F]+$/.test(text) && text.length % 2 === 0 ? Buffer.from(text, "hex") : Buffer.from(text, "base64");
  const expected = single ? 32 : 33;
  if (share.length !== expected)
    throw new LogicalError(400, `key: expected a ${expected}-byte key share (hex or base64)`);
  return share;
}

export class GenerateRoot {
  constructor(private readonly core: CoreView) {}

  private required(): number {
    return this.core.sealStatus().t;
  }

  private async read(): Promise<Attempt | undefined> {
    const raw = await this.core.barrier.get(ATTEMPT_KEY);
    return raw ? (JSON.parse(raw.toString("utf8")) as Attempt) : undefined;
  }

  private view(a: Attempt | undefined, extra: Partial<GenerateRootStatus> = {}): GenerateRootStatus {
    return {
      nonce: a?.nonce ?? "",
      started: a !== undefined,
      progress: a?.shares.length ?? 0,
      required: this.required(),
      complete: false,
      encoded_token: "",
      encoded_root_token: "",
      pgp_fingerprint: "",
      otp: "",
      otp_length: ROOT_TOKEN_LENGTH,
      ...extra,
    };
  }

  async status(): Promise<GenerateRootStatus> {
    return this.view(await this.read());
  }

  /** attempt (PUT): starts an attempt with the caller's OTP, or generates one and returns it this once. */
  async start(data: Record<string, unknown>): Promise<GenerateRootStatus> {
    if (data.pgp_key !== undefined && data.pgp_key !== "")
      throw new LogicalError(400, "pgp_key: PGP-encrypted root tokens are not supported; use an OTP (otp, or none)");
    if (data.otp !== undefined && typeof data.otp !== "string") throw new LogicalError(400, "otp: must be a string");
    const given = (data.otp as string | undefined) ?? "";
    if (given !== "" && Buffer.byteLength(given, "utf8") !== ROOT_TOKEN_LENGTH)
      throw new LogicalError(400, `otp: must be ${ROOT_TOKEN_LENGTH} characters (otp_length)`);
    const attempt: Attempt = { nonce: randomUUID(), otp: given || randomBase62(ROOT_TOKEN_LENGTH), shares: [] };
    await this.core.barrier.transaction(async (tx) => {
      if (await tx.get(ATTEMPT_KEY)) throw new LogicalError(400, "root generation already in progress");
      await tx.put(ATTEMPT_KEY, Buffer.from(JSON.stringify(attempt)));
    });
    return this.view(attempt, given ? {} : { otp: attempt.otp });
  }

  /** attempt (DELETE): drops the attempt and every share submitted to it. */
  async cancel(): Promise<void> {
    await this.core.barrier.delete(ATTEMPT_KEY);
  }

  /** update: one share with the attempt's nonce; at the threshold, the encoded new root token. */
  async update(data: Record<string, unknown>): Promise<GenerateRootStatus> {
    const key = data.key;
    const nonce = data.nonce;
    if (typeof key !== "string" || key.trim() === "") throw new LogicalError(400, "key: required");
    if (typeof nonce !== "string" || nonce === "") throw new LogicalError(400, "nonce: required");
    const single = this.core.sealStatus().n === 1;
    const share = parseShare(key.trim(), single);
    const required = this.required();
    const outcome = await this.core.barrier.transaction(async (tx) => {
      const raw = await tx.get(ATTEMPT_KEY);
      if (!raw) throw new LogicalError(400, "no root generation in progress");
      const a = JSON.parse(raw.toString("utf8")) as Attempt;
      if (a.nonce !== nonce) throw new LogicalError(400, "nonce: does not match the root generation in progress");
      const b64 = share.toString("base64");
      if (a.shares.includes(b64))
        throw new LogicalError(400, "key: this share has already been provided during this generation operation");
      a.shares.push(b64);
      if (a.shares.length < required) {
        await tx.put(ATTEMPT_KEY, Buffer.from(JSON.stringify(a)));
        return { attempt: a, done: false as const };
      }
      // The shares are used (whatever the result): Vault drops the progress, the attempt (nonce, OTP) stays
      // until it succeeds or is cancelled.
      await tx.put(ATTEMPT_KEY, Buffer.from(JSON.stringify({ ...a, shares: [] })));
      return { attempt: a, done: true as const };
    });
    if (!outcome.done) return this.view(outcome.attempt);
    const a = outcome.attempt;
    const parts = a.shares.map((s) => Buffer.from(s, "base64"));
    let combined: Buffer | undefined;
    try {
      combined = parts.length === 1 ? parts[0] : Buffer.from(await combine(parts.map((p) => new Uint8Array(p))));
    } catch {
      combined = undefined;
    }
    const ok = combined !== undefined && (await this.core.barrier.verifyUnsealKey(combined));
    combined?.fill(0);
    if (!ok)
      throw new LogicalError(
        400,
        "root generation aborted: the key shares do not reconstruct the unseal key (progress reset)",
      );
    // Exactly one caller finishes an attempt: the one that removes it.
    const finished = await this.core.barrier.transaction(async (tx) => {
      const raw = await tx.get(ATTEMPT_KEY);
      if (!raw || (JSON.parse(raw.toString("utf8")) as Attempt).nonce !== a.nonce) return false;
      await tx.delete(ATTEMPT_KEY);
      return true;
    });
    if (!finished) throw new LogicalError(400, "no root generation in progress");
    const tokens = this.core.tokens;
    if (!tokens) throw new LogicalError(503, "Vault is sealed");
    const { token } = await tokens.createRoot();
    const encoded = encodeRootToken(token, a.otp);
    return this.view(undefined, {
      nonce: a.nonce,
      started: true,
      progress: required,
      complete: true,
      encoded_token: encoded,
      encoded_root_token: encoded,
    });
  }
}
