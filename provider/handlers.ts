// Create/read/update/delete/diff/check for every runtime object kind (provider/kinds.ts), shaped like
// Pulumi's dynamic ResourceProvider results but without importing Pulumi: the dynamic provider's
// serialized closure only does `await import(<this module>)` and forwards, so nothing heavy is captured.
import { runtimeExpectation, type RuntimeAttestationError } from "../runtime/client/attested-tls.js";
import { dataOf, runtimeRequest, RuntimeApiError, type RuntimeConnection } from "./client.js";
import { isDuration, parseDurationSeconds } from "../runtime/protocol/duration.js";
import { kinds, namePattern, pathPattern, workloadIdPattern, type FieldSpec, type KindSpec } from "./kinds.js";

/** Pulumi passes this string for values unknown during preview. */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

type Props = Record<string, unknown>;

export interface CheckFailure {
  property: string;
  reason: string;
}

function kindOf(name: string): KindSpec {
  const k = kinds[name];
  if (!k) throw new Error(`unknown runtime object kind '${name}'`);
  return k;
}

const isUnknown = (v: unknown): boolean => v === UNKNOWN;

function checkField(fs: FieldSpec, v: unknown, failures: CheckFailure[]): void {
  if (v === undefined || isUnknown(v)) return;
  const bad = (what: string) => failures.push({ property: fs.name, reason: `${fs.name} must be ${what}` });
  switch (fs.type) {
    case "string":
      if (typeof v !== "string") bad("a string");
      break;
    case "boolean":
      if (typeof v !== "boolean") bad("a boolean");
      break;
    case "integer":
      if (typeof v !== "number" || !Number.isInteger(v)) bad("an integer");
      break;
    case "duration":
      // The runtime's grammar (runtime/protocol/duration.ts), so what passes here is never a 400 there.
      if (!isDuration(v)) bad("a duration such as '72h' or a number of seconds");
      break;
    case "list":
      if (!Array.isArray(v) || !v.every((x) => typeof x === "string" || isUnknown(x))) bad("a list of strings");
      break;
    case "stringMap":
      if (
        !v ||
        typeof v !== "object" ||
        Array.isArray(v) ||
        !Object.values(v).every((x) => typeof x === "string" || isUnknown(x))
      ) {
        bad("a map of strings");
      }
      break;
    case "object":
      if (!v || typeof v !== "object" || Array.isArray(v)) bad("an object");
      break;
    case "objectList":
      if (!Array.isArray(v) || !v.every((x) => isUnknown(x) || (x && typeof x === "object" && !Array.isArray(x))))
        bad("a list of objects");
      break;
  }
}

/** Validates and defaults inputs. Failures name the field; values (possibly secret) are never echoed. */
export function check(kindName: string, news: Props): { inputs: Props; failures: CheckFailure[] } {
  const k = kindOf(kindName);
  const inputs: Props = { ...news };
  const failures: CheckFailure[] = [];
  for (const fs of [...k.identity, ...k.fields]) {
    if (inputs[fs.name] === undefined && fs.default !== undefined) inputs[fs.name] = fs.default;
  }
  if ((kindName === "mount" || kindName === "authMount") && (inputs.type === "kv" || inputs.type === "kv-v2")) {
    // The runtime stores KV as type "kv" with options.version "2": say so up front, or refresh would see drift.
    inputs.type = "kv";
    inputs.options = { ...(inputs.options as Record<string, string>), version: "2" };
  }
  for (const fs of k.identity) {
    const v = inputs[fs.name];
    if (isUnknown(v)) continue;
    if (fs.type !== "string") {
      checkField(fs, v, failures);
      continue;
    }
    const pattern = fs.name === "path" ? pathPattern : kindName === "workload" ? workloadIdPattern : namePattern;
    if (typeof v !== "string" || v === "") failures.push({ property: fs.name, reason: `${fs.name} is required` });
    else if (!pattern.test(v) || v.includes("..") || v.endsWith("/")) {
      failures.push({
        property: fs.name,
        reason: `${fs.name} '${v}' must match ${pattern.source} (no '..', no trailing '/')`,
      });
    }
  }
  for (const fs of k.fields) checkField(fs, inputs[fs.name], failures);
  if (kindName === "secret" && inputs.data === undefined)
    failures.push({ property: "data", reason: "data is required" });
  if (kindName === "policy" && inputs.policy === undefined)
    failures.push({ property: "policy", reason: "policy is required" });
  const c = inputs.connection as Partial<RuntimeConnection> | undefined;
  if (!isUnknown(c)) {
    if (!c || typeof c !== "object") failures.push({ property: "connection", reason: "connection is required" });
    else {
      if (!isUnknown(c.url) && (typeof c.url !== "string" || !/^https?:\/\/./.test(c.url))) {
        failures.push({ property: "connection.url", reason: "connection.url must be an http(s) URL" });
      }
      if (!isUnknown(c.token) && !isUnknown(c.deployer) && c.deployer === undefined) {
        if (typeof c.token !== "string" || c.token === "")
          failures.push({
            property: "connection.token",
            reason:
              "connection.token or connection.deployer is required (a Vhsm's `deployer` output; it keeps no root token by default)",
          });
      }
      if (c.attestation !== undefined && !hasUnknown(c.attestation)) {
        try {
          runtimeExpectation(c.attestation, "connection.attestation");
        } catch (e) {
          const reason = (e as RuntimeAttestationError).reason ?? String(e);
          failures.push({ property: reason.split(":")[0], reason });
        }
        if (typeof c.url === "string" && !c.url.startsWith("https://"))
          failures.push({ property: "connection.url", reason: "connection.url must be https:// with attestation" });
      }
    }
  }
  return { inputs, failures };
}

/** Seconds as the runtime stores them; undefined when absent or not a duration (then never "same"). */
function durationSeconds(v: unknown): number | undefined {
  try {
    return parseDurationSeconds(v);
  } catch {
    return undefined;
  }
}

/** Equal up to the runtime's normalisations (durations in seconds, lists as comma strings). */
export function sameValue(fs: FieldSpec | undefined, a: unknown, b: unknown): boolean {
  if (fs?.type === "duration") return durationSeconds(a) === durationSeconds(b);
  if (fs?.type === "list") {
    const norm = (x: unknown) =>
      Array.isArray(x) ? x.map(String) : typeof x === "string" && x !== "" ? x.split(",").map((s) => s.trim()) : [];
    return JSON.stringify(norm(a)) === JSON.stringify(norm(b));
  }
  return stableJson(a) === stableJson(b);
}

function stableJson(v: unknown): string {
  if (v === undefined) return "undefined";
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(stableJson).join(",")}]`;
  const o = v as Props;
  return `{${Object.keys(o)
    .sort()
    .filter((key) => o[key] !== undefined)
    .map((key) => `${JSON.stringify(key)}:${stableJson(o[key])}`)
    .join(",")}}`;
}

export interface DiffResult {
  changes: boolean;
  replaces: string[];
  deleteBeforeReplace: boolean;
}

/** True when v or anything inside it is unknown (preview of a change to something it depends on). */
function hasUnknown(v: unknown): boolean {
  if (isUnknown(v)) return true;
  if (Array.isArray(v)) return v.some(hasUnknown);
  if (v && typeof v === "object") return Object.values(v).some(hasUnknown);
  return false;
}

/**
 * Identity or runtime URL change → replace; a settable field (or the token/CA) change → update.
 * Values still unknown at preview never force a replacement (the real run diffs again with them
 * resolved); an unknown connection alone is not a change — it is unknown only while the runtime
 * service itself is being updated, which keeps its URL and token.
 */
export function diff(kindName: string, olds: Props, news: Props): DiffResult {
  const k = kindOf(kindName);
  const replaces: string[] = [];
  for (const fs of k.identity)
    if (!hasUnknown(news[fs.name]) && !sameValue(fs, olds[fs.name], news[fs.name])) replaces.push(fs.name);
  let changes = false;
  if (!hasUnknown(news.connection)) {
    const oc = (olds.connection ?? {}) as Partial<RuntimeConnection>;
    const nc = (news.connection ?? {}) as Partial<RuntimeConnection>;
    if (oc.url !== nc.url) replaces.push("connection");
    if (
      oc.token !== nc.token ||
      (oc.caPem ?? "") !== (nc.caPem ?? "") ||
      JSON.stringify(oc.deployer) !== JSON.stringify(nc.deployer)
    )
      changes = true;
  }
  if (replaces.length > 0) changes = true;
  for (const fs of k.fields)
    if (hasUnknown(news[fs.name]) || !sameValue(fs, olds[fs.name], news[fs.name])) changes = true;
  // Replacement always changes the identity or the runtime, so create-before-delete is safe.
  return { changes, replaces, deleteBeforeReplace: false };
}

function readPathOf(k: KindSpec, props: Props): string {
  return k.readPath ? k.readPath(props) : k.path(props);
}

function connectionOf(props: Props): RuntimeConnection {
  return props.connection as RuntimeConnection;
}

/**
 * The object as the runtime has it (Pulumi field names), or undefined when absent. A credential that may
 * write but not read it (403: the deployer and KV values) gets what the kind's metadata path shows.
 */
async function readLive(k: KindSpec, props: Props): Promise<{ live?: Props; metadataOnly: boolean }> {
  try {
    const d = dataOf(await runtimeRequest(connectionOf(props), "GET", readPathOf(k, props)));
    return { live: d ? k.fromApi(d, props) : undefined, metadataOnly: false };
  } catch (e) {
    if (!(e instanceof RuntimeApiError && e.status === 403 && k.metadataRead)) throw e;
    const d = dataOf(await runtimeRequest(connectionOf(props), "GET", k.metadataRead.path(props)));
    return { live: d ? k.metadataRead.fromApi(d) : undefined, metadataOnly: true };
  }
}

async function write(k: KindSpec, inputs: Props): Promise<Props> {
  await runtimeRequest(connectionOf(inputs), "POST", k.path(inputs), k.body(inputs));
  // Read back what the runtime stored (versions, normalised values) so state matches reality.
  const { live } = await readLive(k, inputs);
  const extra: Props = {};
  if (live)
    for (const key of ["version", "policyHash", "aclPolicy"]) if (live[key] !== undefined) extra[key] = live[key];
  return { ...inputs, ...extra };
}

export async function create(kindName: string, inputs: Props): Promise<{ id: string; outs: Props }> {
  const k = kindOf(kindName);
  const { live: existing } = await readLive(k, inputs);
  if (existing && Object.keys(existing).length > 0) {
    // Refuse to silently take over an object someone else made; `pulumi import` is the way to adopt it.
    throw new Error(`${k.typeName} '${k.id(inputs)}' already exists in the runtime; import it or choose another name`);
  }
  return { id: k.id(inputs), outs: await write(k, inputs) };
}

export async function update(kindName: string, _id: string, _olds: Props, news: Props): Promise<{ outs: Props }> {
  return { outs: await write(kindOf(kindName), news) };
}

export async function remove(kindName: string, _id: string, props: Props): Promise<void> {
  const k = kindOf(kindName);
  // 404 counts as already gone (runtimeRequest returns it rather than throwing).
  try {
    await runtimeRequest(connectionOf(props), "DELETE", k.deletePath ? k.deletePath(props) : k.path(props));
  } catch (e) {
    if (!(e instanceof RuntimeApiError && e.status === 403 && k.softDeletePath)) throw e;
    await runtimeRequest(connectionOf(props), "DELETE", k.softDeletePath(props));
  }
}

/**
 * Refresh: the object's current fields from the runtime. Values equal to ours up to normalisation keep
 * our spelling (so refresh shows no spurious diff); real drift shows the runtime's value; a missing
 * object returns an empty id so Pulumi drops it from state.
 */
export async function read(kindName: string, id: string, props: Props): Promise<{ id: string; props: Props }> {
  const k = kindOf(kindName);
  const { live, metadataOnly } = await readLive(k, props);
  if (!live || Object.keys(live).length === 0) return { id: "", props: {} };
  const out: Props = { ...props };
  if (metadataOnly) {
    // Changed outside Pulumi (a new version) but unreadable: forget the values so the next `up` restores ours.
    if (live.version !== props.version) for (const f of k.metadataRead!.writeOnly) delete out[f];
    if (typeof live.version === "number") out.version = live.version;
    return { id, props: out };
  }
  if (k.versioned) {
    if (live.version === props.version) return { id, props: out };
    // Changed outside Pulumi: show the runtime's definition so the next `up` puts ours back.
    for (const fs of k.fields) if (fs.name in live && live[fs.name] !== undefined) out[fs.name] = live[fs.name];
    for (const key of ["version", "policyHash", "aclPolicy"]) if (live[key] !== undefined) out[key] = live[key];
    return { id, props: out };
  }
  for (const fs of k.identity)
    if (fs.name in live && !sameValue(fs, props[fs.name], live[fs.name])) out[fs.name] = live[fs.name];
  for (const fs of k.fields) {
    // Only fields we manage: defaults the runtime fills in for fields we never set are not drift.
    if (!(fs.name in live) || props[fs.name] === undefined) continue;
    if (!sameValue(fs, props[fs.name], live[fs.name])) out[fs.name] = live[fs.name];
  }
  if (typeof live.version === "number") out.version = live.version;
  return { id, props: out };
}
