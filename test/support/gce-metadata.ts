// A fake GCE metadata server for guests booted under QEMU: only what the kit's GCE image asks of it — cloud-init
// 22.4's DataSourceGCELocal (images/guest/configure.ts pins its metadata_url to http://169.254.169.254/computeMetadata/v1/)
// and whatever the user-data's own code reads — with the rules the real server applies to every request
// (cloud.google.com/compute/docs/metadata/querying-metadata):
//   - only /computeMetadata/v1/…; the legacy /0.1/ and /computeMetadata/v1beta1/ endpoints are gone (404);
//   - a request without the header `Metadata-Flavor: Google` (exactly that value) is refused (403), and so is any
//     request carrying X-Forwarded-For (403): the server answers no proxied request — what keeps an SSRF in a
//     workload from reading the instance's metadata;
//   - GET only (405 otherwise; guest-attributes writes are not modelled);
//   - every answer carries `Metadata-Flavor: Google`;
//   - a directory asked without its trailing slash is a 301 to it (the query kept); with the slash it lists its
//     entries one a line ("name/" for a subdirectory), or with `recursive=true` (any case, as cloud-init sends
//     "True") is the JSON of the whole subtree — instance and project fields in camelCase, attribute names as given;
//   - a leaf is its text, or with `alt=json` a JSON string.
// Every request is recorded (method, path, status, and whether the answer carried the user-data attribute) so a test
// can count the guest's reads of the user-data and say when they happened.
// The server listens on 127.0.0.1 only; guests reach it as 169.254.169.254:80 through QEMU's guestfwd
// (imds.ts imdsNetOptions: GCE's metadata server has EC2's link-local address; metadata.google.internal resolves
// to it on GCE) and find GCE by DMI (gceSmbios), as cloud-init's ds-identify and platform_reports_gce do.
import type { IncomingMessage, ServerResponse } from "node:http";
import { startRecordingServer, type RecordedRequest } from "./net.js";

export const GCE_METADATA_ROOT = "/computeMetadata/v1/";
export const FLAVOR_HEADER = "metadata-flavor";

/** A leaf: a fixed text, or one computed on each read (the host may change an attribute between reads). */
export type GceLeaf = string | (() => Promise<string>);

export interface FakeGceMetadataOptions {
  /** Leaves below instance/ ("id", "zone", "hostname", "name", "machine-type"), attributes excluded. */
  instance: Record<string, GceLeaf>;
  /** Leaves below project/ ("project-id", "numeric-project-id"), attributes excluded. */
  project: Record<string, GceLeaf>;
  /** instance/attributes/<name> (user-data excluded: see userData). */
  instanceAttributes?: Record<string, GceLeaf>;
  /** project/attributes/<name> (e.g. ssh-keys). */
  projectAttributes?: Record<string, GceLeaf>;
  /** The instance attribute `user-data` (undefined: none, as for an instance created without). */
  userData?: string;
}

export interface GceMetadataRequest extends RecordedRequest {
  /** The answer carried the user-data attribute (its leaf, or a recursive listing containing it). */
  userData: boolean;
}

export interface FakeGceMetadata {
  port: number;
  requests: GceMetadataRequest[];
  setUserData(u: string | undefined): void;
  close(): Promise<void>;
}

type Tree = { [name: string]: Tree | GceLeaf };

const camel = (s: string) => s.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());

export async function startFakeGceMetadata(o: FakeGceMetadataOptions): Promise<FakeGceMetadata> {
  let userData = o.userData;
  const tree = (): Tree => ({
    instance: {
      ...o.instance,
      attributes: { ...o.instanceAttributes, ...(userData !== undefined ? { "user-data": userData } : {}) },
    },
    project: { ...o.project, attributes: { ...o.projectAttributes } },
  });
  const isDir = (n: Tree | GceLeaf | undefined): n is Tree => typeof n === "object" && n !== null;
  const value = (l: GceLeaf) => (typeof l === "string" ? Promise.resolve(l) : l());
  /** The subtree as the recursive JSON: camelCase keys except inside attributes/. */
  const json = async (t: Tree, attributes: boolean): Promise<Record<string, unknown>> => {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(t))
      out[attributes ? k : camel(k)] = isDir(v) ? await json(v, k === "attributes") : await value(v);
    return out;
  };
  /** Whether `node` (at `names`) is or contains the user-data attribute. */
  const carriesUserData = (names: string[], node: Tree | GceLeaf): boolean => {
    if (userData === undefined) return false;
    const at = names.join("/");
    return at === "instance/attributes/user-data" || (isDir(node) && "instance/attributes/user-data".startsWith(at));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<{ status: number; userData: boolean }> => {
    const url = new URL(req.url ?? "/", "http://metadata.google.internal");
    const send = (status: number, body: string = "", headers: Record<string, string> = {}, ud = false) => {
      res.writeHead(status, { "metadata-flavor": "Google", "content-type": "application/text", ...headers });
      res.end(body);
      return { status, userData: ud };
    };
    if (req.headers["x-forwarded-for"] !== undefined) return send(403, "X-Forwarded-For is not allowed\n");
    if (req.headers[FLAVOR_HEADER] !== "Google") return send(403, "Missing Metadata-Flavor:Google header.\n");
    if (req.method !== "GET") return send(405);
    if (!url.pathname.startsWith(GCE_METADATA_ROOT) && url.pathname !== GCE_METADATA_ROOT.slice(0, -1))
      return send(404);
    const rest = url.pathname.slice(GCE_METADATA_ROOT.length);
    const slash = rest === "" || rest.endsWith("/");
    const names = rest.split("/").filter((n) => n !== "");
    let node: Tree | GceLeaf | undefined = tree();
    for (const n of names) node = isDir(node) ? node[n] : undefined;
    if (node === undefined) return send(404);
    if (isDir(node)) {
      if (!slash) return send(301, "", { location: `${url.pathname}/${url.search}` });
      const ud = carriesUserData(names, node);
      if (/^true$/i.test(url.searchParams.get("recursive") ?? ""))
        return send(
          200,
          JSON.stringify(await json(node, names.at(-1) === "attributes")),
          { "content-type": "application/json" },
          ud,
        );
      const list = Object.entries(node).map(([k, v]) => (isDir(v) ? `${k}/` : k));
      // A listing names user-data but does not carry it.
      return send(200, list.join("\n") + "\n");
    }
    if (slash) return send(404);
    const text = await value(node);
    const ud = carriesUserData(names, node);
    return url.searchParams.get("alt") === "json"
      ? send(200, JSON.stringify(text), { "content-type": "application/json" }, ud)
      : send(200, text, {}, ud);
  };

  const server = await startRecordingServer(handle, { userData: false });
  return {
    port: server.port,
    requests: server.requests,
    setUserData(u) {
      userData = u;
    },
    close: server.close,
  };
}

/**
 * The DMI fields of a GCE VM: BIOS vendor and system manufacturer "Google", product "Google Compute Engine" (what
 * cloud-init's ds-identify dscheck_GCE and platform_reports_gce look for) and the "GoogleCloud-…" serial.
 */
export function gceSmbios(serial = "GoogleCloud-5B1E7C1D4E0B9F3A6D2C1B0A9E8F0011"): string[] {
  if (!/^GoogleCloud-[0-9A-F]{32}$/.test(serial)) throw new Error(`${serial}: a GCE serial is GoogleCloud-<32 hex>`);
  return [
    "-smbios",
    "type=0,vendor=Google",
    "-smbios",
    `type=1,manufacturer=Google,product=Google Compute Engine,serial=${serial}`,
  ];
}
