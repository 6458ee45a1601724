// Engines declare their paths as a table, as Vault's sdk/framework does: each entry has a pattern
// (a regular expression over the mount-relative path, with named captures that become fields), a
// field schema (type, default, required, description), the handler per operation, and optionally an
// existence check. One router matches the pattern, validates and coerces the fields by their schema,
// runs existence checks from the same table, and dispatches.
//
// Vault's behaviour, and where this router differs on purpose:
// - Fields not in the schema are ignored and the response carries Vault's warning
//   "Endpoint ignored these unrecognized parameters: [a b]" (paths with `takesArbitraryInput` take any).
// - Captures from the URL win over body fields of the same name (Vault warns; so do we).
// - An ill-typed field is a 400 {"errors": [...]} naming the field. Vault words it
//   "Field validation failed: error converting input …"; ours is "<field>: <what is allowed>"
//   (the project's convention, and what existing clients and tests match on).
// - Types are checked strictly where Vault decodes weakly: a string field refuses a number, a bool
//   accepts true/false or "true"/"false" only (Vault's weak decoding also takes 1/0).
// - `required` is enforced for create/update/patch (Vault uses it for OpenAPI only): "<field>: missing".
// - A path that exists without a handler for the operation answers like an unknown path (404
//   "unsupported path"), as this runtime always has; Vault answers 405 "unsupported operation".
// - For read, list and delete, query parameters are the fields (Vault's HTTP layer does the same).
import { LogicalError, type LogicalRequest, type LogicalResponse, type Operation } from "./backend.js";
import { parseDuration } from "./duration.js";

/** Vault's field types that this runtime's engines use (sdk/framework FieldType). */
export type FieldType =
  /** A string; null/absent → default. */
  | "string"
  /** An integer, as a JSON number or a numeric string. */
  | "int"
  /** true/false, as JSON or as the strings "true"/"false". */
  | "bool"
  /** Seconds, from an integer or Vault's duration strings ("90s", "1h30m"). */
  | "duration"
  /** A list of strings, as a JSON array or a comma-separated string. */
  | "comma-string-slice"
  /** A JSON object of any values. */
  | "map"
  /** A JSON object whose values are strings (Vault's TypeKVPairs in map form). */
  | "kv-pairs"
  /** Any JSON value, null included: the handler validates it (nested documents such as evidence or KV data). */
  | "any";

export interface FieldSchema {
  type: FieldType;
  description: string;
  /** Value the handler gets when the field is absent (after coercion rules of its type). */
  default?: unknown;
  /** Enforced for create/update/patch: "<field>: missing". */
  required?: boolean;
}

export type FieldSchemas = Record<string, FieldSchema>;

export type PathHandler = (req: LogicalRequest, fields: FieldData) => Promise<LogicalResponse | undefined>;

export interface PathSpec {
  /** Regular expression over the mount-relative path (no leading/trailing slash); anchored by the router. */
  pattern: string;
  /** Field schema: named captures of the pattern must be listed here too (type "string"). */
  fields?: FieldSchemas;
  /** Handlers by operation. `create` falls back to `update` and vice versa (Vault's writes share a handler). */
  operations: Partial<Record<Operation, PathHandler>>;
  /**
   * For POST/PUT: does the target exist? true → the ACL checks `update`, false → `create`. Without
   * one every POST/PUT is an `update`.
   */
  existenceCheck?: (req: LogicalRequest, fields: FieldData) => Promise<boolean>;
  /** Fields outside the schema are passed through without a warning (Vault's TakesArbitraryInput). */
  takesArbitraryInput?: boolean;
  /** One line for documentation and the provider drift test. */
  description?: string;
}

/** The validated, coerced fields of one request, as Vault's FieldData. */
export class FieldData {
  constructor(
    /** Coerced values of the fields that were supplied (schema fields only, plus arbitrary input). */
    readonly values: Record<string, unknown>,
    readonly schema: FieldSchemas,
  ) {}

  /** Was the field supplied (non-null)? */
  has(name: string): boolean {
    return this.values[name] !== undefined;
  }

  /** The coerced value, or the schema default, or undefined. */
  get(name: string): unknown {
    this.known(name);
    const v = this.values[name];
    return v !== undefined ? v : this.schema[name]?.default;
  }

  string(name: string): string | undefined {
    return this.get(name) as string | undefined;
  }
  int(name: string): number | undefined {
    return this.get(name) as number | undefined;
  }
  bool(name: string): boolean | undefined {
    return this.get(name) as boolean | undefined;
  }
  /** Seconds. */
  duration(name: string): number | undefined {
    return this.get(name) as number | undefined;
  }
  list(name: string): string[] | undefined {
    return this.get(name) as string[] | undefined;
  }
  map<T = unknown>(name: string): Record<string, T> | undefined {
    return this.get(name) as Record<string, T> | undefined;
  }

  private known(name: string): void {
    if (!(name in this.schema) && !(name in this.values))
      throw new Error(`field ${name} is not in the schema of this path`); // a coding error, not a client one
  }
}

/** Coerces one supplied value to its schema type; throws a 400 naming the field. */
export function coerceField(name: string, schema: FieldSchema, v: unknown): unknown {
  if (schema.type === "any") return v; // null included: for some fields (KV custom_metadata) null means "clear"
  if (v === undefined || v === null) return undefined;
  switch (schema.type) {
    case "string":
      if (typeof v !== "string") throw new LogicalError(400, `${name}: must be a string`);
      return v;
    case "int": {
      if (v === "") return undefined;
      const n = typeof v === "string" && /^-?\d+$/.test(v.trim()) ? Number(v) : v;
      if (typeof n !== "number" || !Number.isInteger(n)) throw new LogicalError(400, `${name}: must be an integer`);
      return n;
    }
    case "bool":
      if (typeof v === "boolean") return v;
      if (v === "true" || v === "false") return v === "true";
      throw new LogicalError(400, `${name}: must be a boolean`);
    case "duration":
      if (v === "") return undefined;
      return parseDuration(name, v);
    case "comma-string-slice":
      if (typeof v === "string")
        return v
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean);
      if (Array.isArray(v) && v.every((x) => typeof x === "string")) return v;
      throw new LogicalError(400, `${name}: must be a list of strings or a comma-separated string`);
    case "map":
      if (typeof v !== "object" || Array.isArray(v)) throw new LogicalError(400, `${name}: must be an object`);
      return v;
    case "kv-pairs": {
      if (typeof v !== "object" || Array.isArray(v)) throw new LogicalError(400, `${name}: must be an object`);
      for (const [k, x] of Object.entries(v))
        if (typeof x !== "string") throw new LogicalError(400, `${name}.${k}: must be a string`);
      return v;
    }
  }
}

interface CompiledPath {
  spec: PathSpec;
  re: RegExp;
}

export interface RouteMatch {
  spec: PathSpec;
  captures: Record<string, string>;
}

const WRITES: ReadonlySet<Operation> = new Set(["create", "update", "patch"]);

/** A backend whose paths are a table (the provider's drift test reads `router.paths`). */
export interface TableBackend {
  readonly router: PathRouter;
}

/** The one router of the Vault framework: a backend's path table, matched in order. */
export class PathRouter {
  private readonly compiled: CompiledPath[];

  constructor(readonly paths: readonly PathSpec[]) {
    this.compiled = paths.map((spec) => {
      const re = new RegExp(`^(?:${spec.pattern})$`);
      for (const name of Object.keys(captureNames(spec.pattern)))
        if (!spec.fields?.[name]) throw new Error(`path ${spec.pattern}: capture ${name} has no field schema`);
      return { spec, re };
    });
  }

  match(path: string): RouteMatch | undefined {
    for (const c of this.compiled) {
      const m = c.re.exec(path);
      if (m) return { spec: c.spec, captures: { ...(m.groups ?? {}) } };
    }
    return undefined;
  }

  /** Vault's existence check, computed from the table: the matched path's check, or "exists" without one. */
  async existenceCheck(req: LogicalRequest): Promise<boolean> {
    const route = this.match(req.path);
    if (!route?.spec.existenceCheck) return true;
    const { fields } = this.fieldsFor(route, req);
    return route.spec.existenceCheck(req, fields);
  }

  /** Matches, validates, dispatches; undefined for an unknown path or operation (→ 404). */
  async handle(req: LogicalRequest): Promise<LogicalResponse | undefined> {
    const route = this.match(req.path);
    if (!route) return undefined;
    const handler = handlerFor(route.spec, req.operation);
    if (!handler) return undefined;
    const { fields, ignored, replaced } = this.fieldsFor(route, req);
    if (WRITES.has(req.operation))
      for (const [name, s] of Object.entries(route.spec.fields ?? {}))
        if (s.required && (fields.values[name] === undefined || fields.values[name] === ""))
          throw new LogicalError(400, `${name}: missing`);
    const res = await handler(req, fields);
    if (!res) return res;
    const warnings = [...(res.warnings ?? [])];
    if (ignored.length) warnings.push(`Endpoint ignored these unrecognized parameters: [${ignored.join(" ")}]`);
    if (replaced.length)
      warnings.push(
        `Endpoint replaced the value of these parameters with the values captured from the endpoint's path: [${replaced.join(" ")}]`,
      );
    return warnings.length === (res.warnings?.length ?? 0) ? res : { ...res, warnings };
  }

  /** The request's fields (body for writes, query otherwise) and the URL captures, coerced by schema. */
  private fieldsFor(
    route: RouteMatch,
    req: LogicalRequest,
  ): { fields: FieldData; ignored: string[]; replaced: string[] } {
    const schema = route.spec.fields ?? {};
    const input: Record<string, unknown> = WRITES.has(req.operation) ? req.data : queryFields(req.query);
    const values: Record<string, unknown> = {};
    const ignored: string[] = [];
    const replaced: string[] = [];
    for (const [name, raw] of Object.entries(input)) {
      const s = schema[name];
      if (!s) {
        if (route.spec.takesArbitraryInput) values[name] = raw;
        else ignored.push(name);
        continue;
      }
      if (name in route.captures) {
        if (raw !== undefined && raw !== null) replaced.push(name);
        continue;
      }
      values[name] = coerceField(name, s, raw);
    }
    for (const [name, v] of Object.entries(route.captures)) values[name] = v;
    return { fields: new FieldData(values, schema), ignored: ignored.sort(), replaced: replaced.sort() };
  }
}

function handlerFor(spec: PathSpec, op: Operation): PathHandler | undefined {
  const ops = spec.operations;
  if (op === "create") return ops.create ?? ops.update;
  if (op === "update") return ops.update ?? ops.create;
  return ops[op];
}

/** Query parameters as fields: `list` is the HTTP layer's (LIST verb), not the path's. */
function queryFields(query: Record<string, string>): Record<string, unknown> {
  if (!("list" in query)) return query;
  const { list: _list, ...rest } = query;
  return rest;
}

function captureNames(pattern: string): Record<string, true> {
  const out: Record<string, true> = {};
  for (const m of pattern.matchAll(/\(\?<([A-Za-z_][A-Za-z0-9_]*)>/g)) out[m[1]] = true;
  return out;
}

/** Named capture matching one path segment, for patterns: `role/${segment("name")}`. */
export const segment = (name: string) => `(?<${name}>[^/]+)`;
/** Named capture matching the rest of the path (one or more segments). */
export const rest = (name: string) => `(?<${name}>.+)`;

/**
 * The request as a handler written against `req.data` sees it after routing: `data` holds only the
 * schema's fields, validated and coerced (URL captures included). Lets a handler keep its readers
 * while the table, not the handler, decides which fields exist and what type they have.
 */
export function withFields(req: LogicalRequest, fields: FieldData): LogicalRequest {
  return { ...req, data: fields.values };
}
