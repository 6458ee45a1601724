// A fake EC2 Instance Metadata Service for guests booted under QEMU: only what the kit's EC2 image asks of it —
// cloud-init 22.4's DataSourceEc2Local (images/guest/configure.ts pins Ec2 with strict_id and the link-local address)
// and whatever the user-data's own code reads — with IMDSv2 semantics as AwsConfidentialVm configures the instance
// (components/aws/settings.ts: httpTokens "required"):
//   PUT  /latest/api/token   needs X-aws-ec2-metadata-token-ttl-seconds (1–21600; else 400), answers a token and
//                            echoes the TTL header; a request carrying X-Forwarded-For is refused (403), as IMDS
//                            refuses tokens to proxied requests; any other method 405.
//   GET  /<version>/…         only with a live token in X-aws-ec2-metadata-token (none, unknown or expired: 401);
//                            the answer carries the token's remaining TTL. <version> is "latest" or one of the
//                            dated versions cloud-init probes (unknown: 404). Directories list their entries one a
//                            line ("name/" for a subdirectory); user-data is the bytes as given (404 when none).
// Every request is recorded (method, path, status) so a test can show what the guest read, and when.
// The server listens on 127.0.0.1 only; guests reach it through QEMU's guestfwd at 169.254.169.254:80
// (imdsNetOptions below) and find it by DMI (ec2Smbios), as cloud-init's ds-identify and identify_aws do on EC2.
import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { startRecordingServer, type RecordedRequest } from "./net.js";

export const IMDS_ADDR = "169.254.169.254";
export const TOKEN_HEADER = "x-aws-ec2-metadata-token";
export const TOKEN_TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds";
/** The dated API versions cloud-init 22.4 probes (DataSourceEc2 min_ and extended_metadata_versions), plus latest. */
export const IMDS_VERSIONS = ["2009-04-04", "2016-09-02", "2018-09-24", "2021-03-23", "latest"] as const;

/** A meta-data leaf: a fixed text, or one computed on each read (the host may change a tag between reads). */
export type ImdsLeaf = string | (() => Promise<string>);

export interface FakeImdsOptions {
  /** meta-data leaves by path below meta-data/ ("instance-id", "placement/availability-zone", "tags/instance/k"). */
  metaData: Record<string, ImdsLeaf>;
  /** The instance identity document (dynamic/instance-identity/document). */
  identity: Record<string, unknown>;
  /** The user-data served (undefined: 404, as for an instance launched without). */
  userData?: Buffer | string;
  /** Called after each user-data answer (a test may swap the user-data once the guest has read it). */
  onUserDataRead?: (n: number) => void;
}

export type ImdsRequest = RecordedRequest;

export interface FakeImds {
  port: number;
  requests: ImdsRequest[];
  setUserData(u: Buffer | string | undefined): void;
  close(): Promise<void>;
}

export async function startFakeImds(o: FakeImdsOptions): Promise<FakeImds> {
  const tokens = new Map<string, number>(); // token → expiry (ms)
  let userData = o.userData === undefined ? undefined : Buffer.from(o.userData);
  let userDataReads = 0;
  const leaf = (p: string): Promise<string> | undefined => {
    const v = o.metaData[p];
    return v === undefined ? undefined : typeof v === "string" ? Promise.resolve(v) : v();
  };
  /** Entries directly below meta-data/<dir> (dir "" or ending in "/"), or undefined when no leaf is under it. */
  const listing = (dir: string): string | undefined => {
    const names = new Set<string>();
    for (const k of Object.keys(o.metaData)) {
      if (!k.startsWith(dir)) continue;
      const rest = k.slice(dir.length);
      const i = rest.indexOf("/");
      names.add(i < 0 ? rest : rest.slice(0, i + 1));
    }
    return names.size ? [...names].sort().join("\n") : undefined;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<number> => {
    const url = new URL(req.url ?? "/", "http://imds");
    const send = (status: number, body: string | Buffer = "", headers: Record<string, string> = {}) => {
      res.writeHead(status, { "content-type": "text/plain", ...headers });
      res.end(body);
      return status;
    };
    if (url.pathname === "/latest/api/token") {
      if (req.method !== "PUT") return send(405);
      if (req.headers["x-forwarded-for"] !== undefined) return send(403);
      const raw = req.headers[TOKEN_TTL_HEADER];
      const ttl = typeof raw === "string" && /^\d{1,5}$/.test(raw) ? Number(raw) : NaN;
      if (!(ttl >= 1 && ttl <= 21600)) return send(400);
      const token = randomBytes(32).toString("base64url");
      tokens.set(token, Date.now() + ttl * 1000);
      return send(200, token, { [TOKEN_TTL_HEADER]: String(ttl) });
    }
    if (req.method !== "GET") return send(405);
    const token = req.headers[TOKEN_HEADER];
    const expiry = typeof token === "string" ? tokens.get(token) : undefined;
    if (expiry === undefined || expiry <= Date.now()) return send(401);
    const remaining = { [TOKEN_TTL_HEADER]: String(Math.floor((expiry - Date.now()) / 1000)) };
    const [, version, ...rest] = url.pathname.split("/");
    if (!(IMDS_VERSIONS as readonly string[]).includes(version ?? "")) return send(404);
    const sub = rest.join("/");
    if (sub === "") return send(200, "dynamic\nmeta-data\nuser-data", remaining);
    if (sub === "user-data") {
      if (userData === undefined) return send(404);
      const body = userData;
      userDataReads += 1;
      const status = send(200, body, remaining);
      o.onUserDataRead?.(userDataReads);
      return status;
    }
    if (sub === "dynamic" || sub === "dynamic/") return send(200, "instance-identity/", remaining);
    if (sub === "dynamic/instance-identity" || sub === "dynamic/instance-identity/")
      return send(200, "document", remaining);
    if (sub === "dynamic/instance-identity/document") return send(200, JSON.stringify(o.identity, null, 2), remaining);
    if (sub === "meta-data" || sub.startsWith("meta-data/")) {
      const p = sub.slice("meta-data/".length);
      if (p === "" || p.endsWith("/")) {
        const l = listing(p);
        return l === undefined ? send(404) : send(200, l, remaining);
      }
      const v = leaf(p);
      if (v !== undefined) return send(200, await v, remaining);
      const l = listing(`${p}/`);
      return l === undefined ? send(404) : send(200, l, remaining);
    }
    return send(404);
  };

  const server = await startRecordingServer(async (req, res) => ({ status: await handle(req, res) }), {});
  return {
    port: server.port,
    requests: server.requests,
    setUserData(u) {
      userData = u === undefined ? undefined : Buffer.from(u);
    },
    close: server.close,
  };
}

/** The user network of an EC2-shaped guest: the 169.254.169.0/24 link (IMDS is on it) and nothing else. */
export const IMDS_NET = "169.254.169.0/24";

/**
 * QEMU user-network options for a guest that reaches IMDS and one runtime forward, nothing else (restrict=on). The
 * user network is 169.254.169.0/24 so that IMDS, the gateway and the guest's DHCP lease share one link, as on EC2, and
 * both forwards name addresses inside QEMU's own network (libslirp's guestfwd rules are for those; an address
 * outside it is not one the test wants the host to route). One socat per guest connection: a chardev forward
 * carries only one connection (QEMU 7.2).
 */
export function imdsNetOptions(o: { imdsPort: number; runtimeAddr: string; runtimePort: number }): string[] {
  for (const [k, v] of Object.entries({ imdsPort: o.imdsPort, runtimePort: o.runtimePort }))
    if (!Number.isInteger(v) || v < 1 || v > 65535) throw new Error(`${k}: ${v} is not a TCP port`);
  if (!o.runtimeAddr.startsWith("169.254.169.") || o.runtimeAddr === IMDS_ADDR)
    throw new Error(`runtimeAddr ${o.runtimeAddr} must be another address in ${IMDS_NET}`);
  return [
    "restrict=on",
    `net=${IMDS_NET}`,
    `guestfwd=tcp:${IMDS_ADDR}:80-cmd:socat - TCP:127.0.0.1:${o.imdsPort}`,
    `guestfwd=tcp:${o.runtimeAddr}:${o.runtimePort}-cmd:socat - TCP:127.0.0.1:${o.runtimePort}`,
  ];
}

/** The DMI system fields cloud-init's identify_aws accepts (product UUID starting "ec2", equal to the serial). */
export function ec2Smbios(instanceUuid = "ec2a5b1e-7c1d-4e0b-9f3a-6d2c1b0a9e8f"): string[] {
  if (!/^ec2[0-9a-f]{5}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(instanceUuid))
    throw new Error(`${instanceUuid}: an EC2 product UUID starts with ec2`);
  return ["-smbios", `type=1,manufacturer=Amazon EC2,product=m6a.large,serial=${instanceUuid},uuid=${instanceUuid}`];
}
