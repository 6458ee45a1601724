// Typed readers for request bodies: every bad value becomes a 400 that names the field.
import { LogicalError } from "./backend.js";

export function optString(data: Record<string, unknown>, field: string): string | undefined {
  const v = data[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new LogicalError(400, `${field}: must be a string`);
  return v;
}

export function reqString(data: Record<string, unknown>, field: string): string {
  const v = optString(data, field);
  if (v === undefined || v === "") throw new LogicalError(400, `${field}: missing`);
  return v;
}

export function optBool(data: Record<string, unknown>, field: string, dflt: boolean): boolean {
  const v = data[field];
  if (v === undefined || v === null) return dflt;
  if (typeof v === "boolean") return v;
  if (v === "true" || v === "false") return v === "true";
  throw new LogicalError(400, `${field}: must be a boolean`);
}

export function optInt(data: Record<string, unknown>, field: string, dflt: number): number {
  const v = data[field];
  if (v === undefined || v === null || v === "") return dflt;
  const n = typeof v === "string" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n)) throw new LogicalError(400, `${field}: must be an integer`);
  return n;
}

/** Vault accepts lists as JSON arrays or comma-separated strings. */
export function optList(data: Record<string, unknown>, field: string): string[] {
  const v = data[field];
  if (v === undefined || v === null || v === "") return [];
  if (typeof v === "string")
    return v
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
  if (Array.isArray(v) && v.every((x) => typeof x === "string")) return v as string[];
  throw new LogicalError(400, `${field}: must be a list of strings or a comma-separated string`);
}

export function optStringMap(data: Record<string, unknown>, field: string): Record<string, string> {
  const v = data[field];
  if (v === undefined || v === null || v === "") return {};
  if (typeof v !== "object" || Array.isArray(v)) throw new LogicalError(400, `${field}: must be an object`);
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== "string") throw new LogicalError(400, `${field}.${k}: must be a string`);
    out[k] = x;
  }
  return out;
}

/** Standard base64 (or base64url) → bytes; rejects anything else. */
export function b64Field(data: Record<string, unknown>, field: string, required = true): Buffer | undefined {
  const s = required ? reqString(data, field) : optString(data, field);
  if (s === undefined || s === "") return required ? undefined : Buffer.alloc(0);
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(s)) throw new LogicalError(400, `${field}: not base64`);
  return Buffer.from(s, s.includes("-") || s.includes("_") ? "base64url" : "base64");
}

export async function readJson<T>(
  storage: { get(k: string): Promise<Buffer | undefined> },
  key: string,
): Promise<T | undefined> {
  const b = await storage.get(key);
  return b ? (JSON.parse(b.toString("utf8")) as T) : undefined;
}

export function jsonBytes(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v), "utf8");
}
