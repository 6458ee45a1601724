// ACL policies as in Vault: HCL (or JSON) `path "<pattern>" { capabilities = [...] }` rules, where a
// pattern may end in `*` (prefix glob) and may use `+` for exactly one path segment. Rules for the
// same pattern merge across a token's policies (union, `deny` wins); a request is judged by the single
// most specific matching pattern, with Vault's precedence. No match → denied.
import { parseHcl, HclError } from "./hcl.js";

export const CAPABILITIES = [
  "create",
  "read",
  "update",
  "patch",
  "delete",
  "list",
  "sudo",
  "deny",
  "scan",
  "subscribe",
] as const;
export type Capability = (typeof CAPABILITIES)[number];

export interface PathRule {
  pattern: string;
  capabilities: Capability[];
}
export interface Policy {
  name: string;
  rules: PathRule[];
}

export class PolicyParseError extends Error {
  override name = "PolicyParseError";
}

export const DEFAULT_POLICY_TEXT = `# Allows a token to look up, renew and revoke itself and see its own capabilities.
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }
path "auth/token/revoke-self" { capabilities = ["update"] }
path "sys/capabilities-self" { capabilities = ["update"] }
path "sys/internal/ui/resultant-acl" { capabilities = ["read"] }
`;

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.@-]{0,127}$/;
export function validPolicyName(name: string): boolean {
  return NAME_RE.test(name);
}

function checkRule(pattern: string, caps: unknown, where: string): PathRule {
  if (!Array.isArray(caps) || caps.some((c) => typeof c !== "string"))
    throw new PolicyParseError(`${where}: capabilities must be a list of strings`);
  for (const c of caps)
    if (!(CAPABILITIES as readonly string[]).includes(c))
      throw new PolicyParseError(`${where}: unknown capability '${c}'`);
  const star = pattern.indexOf("*");
  if (star !== -1 && star !== pattern.length - 1)
    throw new PolicyParseError(`${where}: '*' is only allowed at the end of a path`);
  for (const seg of pattern.split("/"))
    if (seg.includes("+") && seg !== "+") throw new PolicyParseError(`${where}: '+' must be a whole path segment`);
  return { pattern: pattern.replace(/^\//, ""), capabilities: [...new Set(caps as Capability[])] };
}

/** Parses policy text (HCL, or JSON `{"path": {"p": {"capabilities": [...]}}}`). */
export function parsePolicy(name: string, text: string): Policy {
  const rules: PathRule[] = [];
  const trimmed = text.trim();
  if (trimmed.startsWith("{")) {
    let doc: { path?: Record<string, { capabilities?: unknown }> };
    try {
      doc = JSON.parse(trimmed);
    } catch (e) {
      throw new PolicyParseError(`policy is not valid JSON: ${(e as Error).message}`);
    }
    for (const [p, r] of Object.entries(doc.path ?? {})) rules.push(checkRule(p, r?.capabilities, `path "${p}"`));
    return { name, rules };
  }
  let body;
  try {
    body = parseHcl(text);
  } catch (e) {
    throw new PolicyParseError(e instanceof HclError ? `failed to parse policy: ${e.message}` : String(e));
  }
  for (const k of Object.keys(body.attrs)) throw new PolicyParseError(`unexpected attribute '${k}' at top level`);
  for (const b of body.blocks) {
    if (b.type !== "path" || b.labels.length !== 1)
      throw new PolicyParseError(`line ${b.line}: expected 'path "<pattern>" { ... }'`);
    const extra = Object.keys(b.body.attrs).filter(
      (k) =>
        ![
          "capabilities",
          "min_wrapping_ttl",
          "max_wrapping_ttl",
          "allowed_parameters",
          "denied_parameters",
          "required_parameters",
        ].includes(k),
    );
    if (extra.length) throw new PolicyParseError(`line ${b.line}: unknown key '${extra[0]}'`);
    rules.push(checkRule(b.labels[0], b.body.attrs.capabilities, `line ${b.line}`));
  }
  return { name, rules };
}

interface CompiledRule {
  pattern: string;
  caps: Set<Capability>;
  re: RegExp;
  firstWild: number;
  glob: boolean;
  plusCount: number;
}

function compile(pattern: string, caps: Set<Capability>): CompiledRule {
  const glob = pattern.endsWith("*");
  const base = glob ? pattern.slice(0, -1) : pattern;
  const re = new RegExp(
    "^" +
      base
        .split("/")
        .map((s) => (s === "+" ? "[^/]+" : s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
        .join("/") +
      (glob ? ".*" : "") +
      "$",
  );
  const plusIdx = pattern.split("/").findIndex((s) => s === "+");
  const plusPos =
    plusIdx === -1 ? Infinity : pattern.split("/").slice(0, plusIdx).join("/").length + (plusIdx > 0 ? 1 : 0);
  const firstWild = Math.min(plusPos, glob ? pattern.length - 1 : Infinity);
  return { pattern, caps, re, firstWild, glob, plusCount: pattern.split("/").filter((s) => s === "+").length };
}

/** Vault's precedence: true when a has higher priority than b. */
function higher(a: CompiledRule, b: CompiledRule): boolean {
  if (a.firstWild !== b.firstWild) return a.firstWild > b.firstWild;
  if (a.glob !== b.glob) return !a.glob;
  if (a.plusCount !== b.plusCount) return a.plusCount < b.plusCount;
  if (a.pattern.length !== b.pattern.length) return a.pattern.length > b.pattern.length;
  return a.pattern > b.pattern;
}

export class Acl {
  readonly root: boolean;
  private readonly rules: CompiledRule[];

  constructor(policies: Policy[], isRoot = false) {
    this.root = isRoot;
    const merged = new Map<string, Set<Capability>>();
    for (const p of policies)
      for (const r of p.rules) {
        const set = merged.get(r.pattern) ?? new Set<Capability>();
        for (const c of r.capabilities) set.add(c);
        merged.set(r.pattern, set);
      }
    this.rules = [...merged].map(([pattern, caps]) =>
      compile(pattern, caps.has("deny") ? new Set<Capability>(["deny"]) : caps),
    );
  }

  /** The capabilities granted on a path (empty = none). Root has all but deny. */
  capabilities(path: string): Set<Capability> {
    if (this.root) return new Set(CAPABILITIES.filter((c) => c !== "deny"));
    let best: CompiledRule | undefined;
    for (const r of this.rules) if (r.re.test(path) && (!best || higher(r, best))) best = r;
    if (!best || best.caps.has("deny")) return new Set();
    return best.caps;
  }

  allows(path: string, cap: Capability): boolean {
    return this.capabilities(path).has(cap);
  }

  /** True when any rule could grant something at or below this prefix (for sys/internal/ui/mounts). */
  anyUnder(prefix: string): boolean {
    if (this.root) return true;
    return this.rules.some(
      (r) =>
        !r.caps.has("deny") &&
        r.caps.size > 0 &&
        (r.pattern.startsWith(prefix) || r.re.test(prefix) || (r.glob && prefix.startsWith(r.pattern.slice(0, -1)))),
    );
  }
}
