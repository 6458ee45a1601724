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

/** Parameter name (lower case) → allowed (or denied) values; an empty list means any value. */
export type ParameterRules = Record<string, unknown[]>;

export interface PathRule {
  pattern: string;
  capabilities: Capability[];
  /** Vault's allowed_parameters / denied_parameters / required_parameters (enforced on writes). */
  allowedParameters?: ParameterRules;
  deniedParameters?: ParameterRules;
  requiredParameters?: string[];
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

function parameterRules(v: unknown, where: string, field: string): ParameterRules | undefined {
  if (v === undefined) return undefined;
  // HCL's `{ ... }` may arrive as a one-element list of objects (Vault accepts both forms).
  const obj = Array.isArray(v) && v.length === 1 ? v[0] : v;
  if (typeof obj !== "object" || obj === null || Array.isArray(obj))
    throw new PolicyParseError(`${where}: ${field} must be a map of parameter names to lists of values`);
  const out: ParameterRules = {};
  for (const [k, vals] of Object.entries(obj as Record<string, unknown>)) {
    if (!Array.isArray(vals)) throw new PolicyParseError(`${where}: ${field}.${k} must be a list of values`);
    out[k.toLowerCase()] = vals as unknown[];
  }
  return out;
}

function checkRule(pattern: string, caps: unknown, where: string, attrs: Record<string, unknown> = {}): PathRule {
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
  const rule: PathRule = { pattern: pattern.replace(/^\//, ""), capabilities: [...new Set(caps as Capability[])] };
  const allowed = parameterRules(attrs.allowed_parameters, where, "allowed_parameters");
  const denied = parameterRules(attrs.denied_parameters, where, "denied_parameters");
  if (allowed) rule.allowedParameters = allowed;
  if (denied) rule.deniedParameters = denied;
  if (attrs.required_parameters !== undefined) {
    const req = attrs.required_parameters;
    if (!Array.isArray(req) || req.some((x) => typeof x !== "string"))
      throw new PolicyParseError(`${where}: required_parameters must be a list of parameter names`);
    rule.requiredParameters = (req as string[]).map((x) => x.toLowerCase());
  }
  return rule;
}

/** Parses policy text (HCL, or JSON `{"path": {"p": {"capabilities": [...]}}}`). */
export function parsePolicy(name: string, text: string): Policy {
  const rules: PathRule[] = [];
  const trimmed = text.trim();
  if (trimmed.startsWith("{")) {
    let doc: { path?: Record<string, { capabilities?: unknown } & Record<string, unknown>> };
    try {
      doc = JSON.parse(trimmed);
    } catch (e) {
      throw new PolicyParseError(`policy is not valid JSON: ${(e as Error).message}`);
    }
    for (const [p, r] of Object.entries(doc.path ?? {}))
      rules.push(checkRule(p, r?.capabilities, `path "${p}"`, r ?? {}));
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
    rules.push(checkRule(b.labels[0], b.body.attrs.capabilities, `line ${b.line}`, b.body.attrs));
  }
  return { name, rules };
}

interface CompiledRule {
  pattern: string;
  caps: Set<Capability>;
  params: MergedParameters;
  re: RegExp;
  firstWild: number;
  glob: boolean;
  plusCount: number;
}

interface MergedParameters {
  allowed?: ParameterRules;
  denied?: ParameterRules;
  required: Set<string>;
}

/** Vault's merge of one pattern's parameter rules across policies: keys unite; an empty list (any value) wins. */
function mergeParameters(into: MergedParameters, r: PathRule): void {
  const merge = (a: ParameterRules | undefined, b: ParameterRules | undefined): ParameterRules | undefined => {
    if (!b) return a;
    const out: ParameterRules = { ...(a ?? {}) };
    for (const [k, vals] of Object.entries(b))
      out[k] = k in out ? (out[k].length === 0 || vals.length === 0 ? [] : [...out[k], ...vals]) : [...vals];
    return out;
  };
  into.allowed = merge(into.allowed, r.allowedParameters);
  into.denied = merge(into.denied, r.deniedParameters);
  for (const k of r.requiredParameters ?? []) into.required.add(k);
}

/**
 * A value is in a list when equal to an element, or when a string matches an element's leading/trailing
 * `*`. A string with commas that equals no element exactly is judged part by part: list parameters
 * (token_policies, alt_names…) also accept "a,b", and "nitride-workload-x,admin" must not pass a
 * "nitride-workload-*" glob as one string.
 */
function valueInList(v: unknown, list: unknown[], parts: "every" | "some" = "every"): boolean {
  if (list.length === 0) return true;
  if (typeof v === "string" && v.includes(",") && !list.includes(v))
    return v.split(",")[parts]((part) => valueInOne(part.trim(), list));
  return valueInOne(v, list);
}

function valueInOne(v: unknown, list: unknown[]): boolean {
  return list.some((el) => {
    if (typeof el === "string" && typeof v === "string") {
      if (el === "*") return true;
      if (el.length > 1 && el.endsWith("*") && v.startsWith(el.slice(0, -1))) return true;
      if (el.length > 1 && el.startsWith("*") && v.endsWith(el.slice(1))) return true;
      return el === v;
    }
    return JSON.stringify(el) === JSON.stringify(v);
  });
}

/** Every element of a list value (or the value itself) must be in the list. */
function allIn(v: unknown, list: unknown[]): boolean {
  return Array.isArray(v) ? v.every((x) => valueInList(x, list)) : valueInList(v, list);
}

function anyIn(v: unknown, list: unknown[]): boolean {
  if (list.length === 0) return true; // denied with an empty list: every value is denied
  return Array.isArray(v) ? v.some((x) => valueInList(x, list, "some")) : valueInList(v, list, "some");
}

function parametersPermit(p: MergedParameters, data: Record<string, unknown>): boolean {
  const keys = Object.keys(data).map((k) => [k, k.toLowerCase()] as const);
  for (const req of p.required) if (!keys.some(([, lk]) => lk === req)) return false;
  if (p.denied) {
    if ("*" in p.denied && keys.length) return false;
    for (const [k, lk] of keys) if (lk in p.denied && anyIn(data[k], p.denied[lk])) return false;
  }
  if (p.allowed && Object.keys(p.allowed).length) {
    for (const [k, lk] of keys) {
      const list = p.allowed[lk];
      if (list === undefined) {
        if ("*" in p.allowed && allIn(data[k], p.allowed["*"])) continue;
        return false;
      }
      if (!allIn(data[k], list)) return false;
    }
  }
  return true;
}

function compile(pattern: string, caps: Set<Capability>, params: MergedParameters): CompiledRule {
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
  return {
    pattern,
    caps,
    params,
    re,
    firstWild,
    glob,
    plusCount: pattern.split("/").filter((s) => s === "+").length,
  };
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
    const merged = new Map<string, { caps: Set<Capability>; params: MergedParameters }>();
    for (const p of policies)
      for (const r of p.rules) {
        const m = merged.get(r.pattern) ?? { caps: new Set<Capability>(), params: { required: new Set<string>() } };
        for (const c of r.capabilities) m.caps.add(c);
        mergeParameters(m.params, r);
        merged.set(r.pattern, m);
      }
    this.rules = [...merged].map(([pattern, m]) =>
      compile(pattern, m.caps.has("deny") ? new Set<Capability>(["deny"]) : m.caps, m.params),
    );
  }

  private best(path: string): CompiledRule | undefined {
    let best: CompiledRule | undefined;
    for (const r of this.rules) if (r.re.test(path) && (!best || higher(r, best))) best = r;
    return best;
  }

  /**
   * Vault's allowed_parameters / denied_parameters / required_parameters of the rule that decides
   * this path, against a write's body. Root, and rules without parameter constraints, permit any.
   */
  parametersAllowed(path: string, data: Record<string, unknown>): boolean {
    if (this.root) return true;
    const best = this.best(path);
    return !best || parametersPermit(best.params, data);
  }

  /** The capabilities granted on a path (empty = none). Root has all but deny. */
  capabilities(path: string): Set<Capability> {
    if (this.root) return new Set(CAPABILITIES.filter((c) => c !== "deny"));
    const best = this.best(path);
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
