// Key-range bounds for prefix listing, so SQLite and PostgreSQL (COLLATE "C") walk the primary-key
// index instead of scanning the table: every key starting with `prefix` lies in [prefix, upper).
// Callers still filter with startsWith (childrenOf does), so a bound only has to be a superset.

/** Exclusive upper bound, or undefined when there is none to give (empty prefix, surrogate end). */
export function prefixUpperBound(prefix: string): string | undefined {
  if (prefix === "") return undefined;
  const last = prefix.charCodeAt(prefix.length - 1);
  if (last >= 0xd800 && last <= 0xdfff) return undefined; // incrementing would break a surrogate pair
  return prefix.slice(0, -1) + String.fromCharCode(last + 1);
}
