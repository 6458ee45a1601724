// Nesting cap for request bodies, checked on the raw text before JSON.parse (as Vault's
// max_json_depth, default 300): deeply nested values would otherwise be accepted, stored, and later
// overflow the stack of every recursive walk over them (audit HMAC, serialisation) with a 500.
export const MAX_JSON_DEPTH = 300;

/** The deepest nesting of objects/arrays in JSON text (strings skipped); stops counting past `limit`. */
export function jsonDepthExceeds(text: string, limit = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > limit) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}
