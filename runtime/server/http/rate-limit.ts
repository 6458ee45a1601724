// Per-client token buckets for the unauthenticated, expensive or guessable routes (Nitride challenge
// and attest, auth/*/login, sys/attestation). Rules match request paths after /v1/ with a `*` for one segment.
export interface RateLimitRule {
  /** e.g. "nitride/challenge", "auth/*\/login". */
  path: string;
  /** Sustained requests per second per client IP. */
  perSecond: number;
  /** Bucket size (burst). */
  burst: number;
}

export const DEFAULT_RATE_LIMITS: RateLimitRule[] = [
  { path: "nitride/challenge", perSecond: 20, burst: 100 },
  { path: "nitride/attest", perSecond: 20, burst: 100 },
  { path: "nitride/attest/credential", perSecond: 20, burst: 100 },
  { path: "auth/*/login", perSecond: 20, burst: 100 },
  { path: "auth/*/login/*", perSecond: 20, burst: 100 },
  // Each answer costs a security-processor request: fewer than the Nitride routes.
  { path: "sys/attestation", perSecond: 5, burst: 20 },
  // Unauthenticated; every challenge is a storage write and every share request an appraisal.
  { path: "sys/peer-unseal/*", perSecond: 5, burst: 20 },
  // Unauthenticated; starting a rekey asks the security processor for the derived key (auto-unseal wrapping check).
  { path: "sys/rekey/*", perSecond: 5, burst: 20 },
];

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly compiled: Array<{ rule: RateLimitRule; re: RegExp }>;
  private readonly buckets = new Map<string, Bucket>();

  constructor(rules: RateLimitRule[]) {
    this.compiled = rules.map((rule) => ({
      rule,
      re: new RegExp(
        "^" +
          rule.path
            .split("/")
            .map((s) => (s === "*" ? "[^/]+" : s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")))
            .join("/") +
          "/?$",
      ),
    }));
  }

  /** Seconds to wait when limited, 0 when allowed. */
  check(path: string, clientIp: string, now = Date.now()): number {
    const hit = this.compiled.find((c) => c.re.test(path));
    if (!hit) return 0;
    const key = `${hit.rule.path}\0${clientIp}`;
    const b = this.buckets.get(key) ?? { tokens: hit.rule.burst, at: now };
    b.tokens = Math.min(hit.rule.burst, b.tokens + ((now - b.at) / 1000) * hit.rule.perSecond);
    b.at = now;
    if (this.buckets.size > 100_000) this.buckets.clear(); // bounded memory under address spraying
    this.buckets.set(key, b);
    if (b.tokens < 1) return Math.ceil((1 - b.tokens) / hit.rule.perSecond);
    b.tokens -= 1;
    return 0;
  }
}
