// The secret_shares / secret_threshold rules shared by sys/init and sys/rekey/init (Vault's SealConfig.Validate),
// and the one Shamir convention both use: a single share is the key itself (as in Vault).
import { combine, split } from "shamir-secret-sharing";
import { LogicalError } from "./backend.js";

export function checkShareConfig(shares: number, threshold: number): void {
  if (!Number.isInteger(shares) || shares < 1 || shares > 255)
    throw new LogicalError(400, "secret_shares: must be between 1 and 255");
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > shares)
    throw new LogicalError(400, "secret_threshold: must be between 1 and secret_shares");
  if (shares > 1 && threshold < 2)
    throw new LogicalError(400, "secret_threshold: must be at least 2 when there is more than one share");
  if (shares === 1 && threshold !== 1) throw new LogicalError(400, "secret_threshold: must be 1 with a single share");
}

/** The key's operator shares (fresh buffers; the caller zeroes them once handed out). */
export async function splitKey(key: Buffer, shares: number, threshold: number): Promise<Buffer[]> {
  const parts = shares === 1 ? [new Uint8Array(key)] : await split(new Uint8Array(key), shares, threshold);
  const out = parts.map((p) => Buffer.from(p));
  for (const p of parts) p.fill(0);
  return out;
}

/** The key a quorum of shares reassembles, or undefined when they do not combine (mixed sizes, repeated x). */
export async function combineShares(parts: Buffer[]): Promise<Buffer | undefined> {
  try {
    if (parts.length === 1) return Buffer.from(parts[0]);
    const key = await combine(parts.map((p) => new Uint8Array(p)));
    const out = Buffer.from(key);
    key.fill(0);
    return out;
  } catch {
    return undefined;
  }
}
