// The JWT auth method's replay cache for roles with `single_use_jti` (a Buckypaper addition: Vault's JWT
// auth accepts a JWT as often as it is presented until it expires). A login records the JWT's (iss, jti) in the mount's storage until the
// moment the JWT stops being accepted anyway (its effective exp plus the clock-skew leeway); the same
// (iss, jti) is refused until then. Storage, not memory, so that every worker of a multi-worker runtime
// and every replica on shared storage sees the same cache; one transaction checks and records, so two
// concurrent logins with one JWT cannot both pass. Entries sit in one folder per minute of expiry and
// whole folders are dropped once that minute has passed; a counter bounds how many entries may live.
import { createHash } from "node:crypto";
import { LogicalError } from "./backend.js";
import type { Storage, StorageWriter } from "../storage/types.js";

const PREFIX = "jti/";
const COUNT_KEY = "jti-count";
/** Live entries per mount; more valid logins than this within their tokens' lifetimes are refused (fail closed). */
export const JTI_CACHE_MAX = 100_000;
const BUCKET_SECONDS = 60;

async function readCount(tx: StorageWriter): Promise<number> {
  const raw = await tx.get(COUNT_KEY);
  const n = raw ? Number(raw.toString("utf8")) : 0;
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/** Deletes the folders whose whole minute has passed; returns how many entries went. */
async function purge(tx: StorageWriter, now: number): Promise<number> {
  let gone = 0;
  for (const folder of await tx.list(PREFIX)) {
    const bucket = Number(folder.replace(/\/$/, ""));
    if (!Number.isInteger(bucket) || (bucket + 1) * BUCKET_SECONDS > now) continue;
    for (const k of await tx.list(`${PREFIX}${folder}`)) {
      await tx.delete(`${PREFIX}${folder}${k}`);
      gone++;
    }
  }
  return gone;
}

/**
 * Records (issuer, jti) as used until `until` (unix seconds), or refuses a replay with 403. Refuses with 503
 * when the cache holds JTI_CACHE_MAX live entries (a login that cannot be recorded is not accepted).
 */
export async function consumeJti(
  storage: Storage,
  issuer: string,
  jti: string,
  until: number,
  now = Math.floor(Date.now() / 1000),
): Promise<void> {
  const id = createHash("sha256").update(`${issuer}\u0000${jti}`).digest("hex");
  const key = `${PREFIX}${Math.floor(until / BUCKET_SECONDS)}/${id}`;
  await storage.transaction(async (tx) => {
    if (await tx.get(key))
      throw new LogicalError(403, "error validating token: jti claim already used (replayed token)");
    let count = Math.max(0, (await readCount(tx)) - (await purge(tx, now)));
    if (count >= JTI_CACHE_MAX)
      throw new LogicalError(503, "jti replay cache is full: too many logins within their tokens' lifetimes");
    await tx.put(key, Buffer.from(String(until)));
    count++;
    await tx.put(COUNT_KEY, Buffer.from(String(count)));
  });
}
