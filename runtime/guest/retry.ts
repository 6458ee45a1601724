// Exponential backoff with full jitter for "the runtime is not reachable yet" (boot races, network
// still coming up). Only errors marked retryable are retried; a refusal is final at once.
import type { Logger } from "./log.js";

export interface BackoffOptions {
  attempts: number;
  initialDelayMs: number;
  maxDelayMs: number;
  /** Injected for tests; defaults to setTimeout. */
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

export function isRetryable(e: unknown): boolean {
  return typeof e === "object" && e !== null && (e as { retryable?: boolean }).retryable === true;
}

/** Delay before retry n (1-based): min(max, initial·2^(n-1)), with jitter in [50 %, 100 %]. */
export function backoffDelay(n: number, o: Pick<BackoffOptions, "initialDelayMs" | "maxDelayMs" | "random">): number {
  const base = Math.min(o.maxDelayMs, o.initialDelayMs * 2 ** (n - 1));
  return Math.round(base * (0.5 + 0.5 * (o.random ?? Math.random)()));
}

export class RetriesExhaustedError extends Error {
  override name = "RetriesExhaustedError";
  constructor(
    readonly attempts: number,
    readonly last: unknown,
  ) {
    super(`gave up after ${attempts} attempts: ${(last as Error)?.message ?? String(last)}`);
  }
}

export async function withBackoff<T>(
  what: string,
  fn: (attempt: number) => Promise<T>,
  o: BackoffOptions,
  log: Logger,
): Promise<T> {
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  let last: unknown;
  for (let attempt = 1; attempt <= o.attempts; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      if (!isRetryable(e)) throw e;
      last = e;
      if (attempt === o.attempts) break;
      const delayMs = backoffDelay(attempt, o);
      log({ level: "warn", event: "retry", what, attempt, of: o.attempts, delayMs, reason: (e as Error).message });
      await sleep(delayMs);
    }
  }
  throw new RetriesExhaustedError(o.attempts, last);
}
