// Validates Proxmox VE API parameters against the official schema (pve-docs apidata.js as JSON).
// Inline property-string formats are checked key by key; named formats (pve-qemu-sev-fmt …) by their
// `typetext`, which is what the PVE docs publish for them.
import { readFileSync } from "node:fs";

interface PveProp {
  type?: string;
  enum?: string[];
  minimum?: number;
  maximum?: number;
  pattern?: string;
  format?: string | Record<string, PveProp & { default_key?: number; alias?: string }>;
  typetext?: string;
  optional?: number;
}
interface PveNode {
  path: string;
  info?: Record<string, { parameters?: { properties?: Record<string, PveProp> } }>;
  children?: PveNode[];
}

export function loadPveMethodParams(schemaFile: string, path: string, method: string): Record<string, PveProp> {
  const roots = JSON.parse(readFileSync(schemaFile, "utf8")) as PveNode[];
  const find = (nodes: PveNode[]): PveNode | undefined => {
    for (const n of nodes) {
      if (n.path === path) return n;
      const r = find(n.children ?? []);
      if (r) return r;
    }
  };
  const node = find(roots);
  const props = node?.info?.[method]?.parameters?.properties;
  if (!props) throw new Error(`schema has no ${method} ${path}`);
  return props;
}

function propFor(props: Record<string, PveProp>, key: string): PveProp | undefined {
  if (props[key]) return props[key];
  const m = /^([a-z]+)(\d+)$/.exec(key);
  return m ? props[`${m[1]}[n]`] : undefined;
}

function checkScalar(name: string, p: PveProp, v: string | number, errors: string[]): void {
  const t = p.type ?? "string";
  if (t === "integer" || t === "number") {
    const n = typeof v === "number" ? v : Number(v);
    if (!Number.isFinite(n) || (t === "integer" && !Number.isInteger(n))) errors.push(`${name}: '${v}' is not ${t}`);
    if (p.minimum !== undefined && n < p.minimum) errors.push(`${name}: ${n} < minimum ${p.minimum}`);
    if (p.maximum !== undefined && n > p.maximum) errors.push(`${name}: ${n} > maximum ${p.maximum}`);
  } else if (t === "boolean") {
    if (![0, 1, "0", "1", true, false].includes(v as never)) errors.push(`${name}: '${v}' is not boolean`);
  }
  if (p.enum && !p.enum.includes(String(v))) errors.push(`${name}: '${v}' not in ${p.enum.join("|")}`);
  if (p.pattern && !new RegExp(`^(?:${p.pattern})$`).test(String(v)))
    errors.push(`${name}: '${v}' does not match ${p.pattern}`);
}

/** Keys of a named format, read from typetext: "[type=]<x> [,allow-smt=<1|0>] ,attestation=<1|0>". */
function typetextKeys(typetext: string): { defaultKey?: string; keys: Map<string, string> } {
  const keys = new Map<string, string>();
  let defaultKey: string | undefined;
  const dk = /^\[?\[?(\w[\w-]*)=\]/.exec(typetext);
  if (dk) defaultKey = dk[1];
  for (const m of typetext.matchAll(/([\w-]+)=(?:\]?)<([^>]+)>/g)) keys.set(m[1], m[2]);
  return { defaultKey, keys };
}

function checkPropertyString(name: string, p: PveProp, v: string, errors: string[]): void {
  const parts = v.split(",");
  if (typeof p.format === "object") {
    const fmt = p.format;
    const defaultKey = Object.entries(fmt).find(([, f]) => f.default_key)?.[0];
    for (const [idx, part] of parts.entries()) {
      const eq = part.indexOf("=");
      let key = eq === -1 ? undefined : part.slice(0, eq);
      let val = eq === -1 ? part : part.slice(eq + 1);
      if (key === undefined || (!fmt[key] && idx === 0 && defaultKey)) {
        if (idx !== 0 || !defaultKey) {
          errors.push(`${name}: '${part}' has no key`);
          continue;
        }
        key = defaultKey;
        val = part;
      }
      let f = fmt[key];
      if (f?.alias) f = fmt[f.alias];
      // net[n] uses the model name as key (virtio=MAC); accept model keys with empty value.
      if (!f && name.startsWith("net") && fmt.model?.enum?.includes(key)) continue;
      if (!f) {
        errors.push(`${name}: unknown key '${key}'`);
        continue;
      }
      checkScalar(`${name}.${key}`, f, val, errors);
    }
    return;
  }
  if (typeof p.format === "string" && p.typetext && p.typetext.includes("=")) {
    const { defaultKey, keys } = typetextKeys(p.typetext);
    for (const [idx, part] of parts.entries()) {
      const eq = part.indexOf("=");
      const key = eq === -1 ? (idx === 0 ? defaultKey : undefined) : part.slice(0, eq);
      const val = eq === -1 ? part : part.slice(eq + 1);
      if (!key || !keys.has(key)) {
        errors.push(`${name}: unknown key in '${part}' (known: ${[...keys.keys()].join(", ")})`);
        continue;
      }
      const tt = keys.get(key)!;
      if (tt === "1|0" && val !== "1" && val !== "0") errors.push(`${name}.${key}: '${val}' is not 1|0`);
      if (tt === "integer" && !/^\d+$/.test(val)) errors.push(`${name}.${key}: '${val}' is not an integer`);
    }
  }
}

/** Returns a list of violations (empty when every parameter is valid). */
export function validatePveParams(props: Record<string, PveProp>, params: Record<string, string | number>): string[] {
  const errors: string[] = [];
  for (const [k, v] of Object.entries(params)) {
    const p = propFor(props, k);
    if (!p) {
      errors.push(`${k}: not a parameter of this API method`);
      continue;
    }
    if (typeof v === "string" && (p.format || p.typetext?.includes("="))) checkPropertyString(k, p, v, errors);
    else checkScalar(k, p, v, errors);
  }
  for (const [k, p] of Object.entries(props)) {
    if (!p.optional && !k.includes("[n]") && k !== "node" && params[k] === undefined) errors.push(`${k}: required`);
  }
  return errors;
}
