// A real runtime (fastify over TLS) with attested TLS whose evidence comes from the SNP simulator, and the
// expectations a verifier holds for it. Shared by the server, client, provider, CLI and enclaivelet tests.
import https from "node:https";
import type { AddressInfo } from "node:net";
import { createSnpSimulator, type SnpSimulator } from "../../runtime/sim/snp.js";
import { simulatorProvider } from "../../runtime/sim/localvm/evidence.js";
import { parseConfig } from "../../runtime/server/http/config.js";
import { startServer, type RunningServer } from "../../runtime/server/http/server.js";
import {
  createAttestedListener,
  type AttestedListener,
  type RuntimeVtpmSource,
} from "../../runtime/server/http/attested-tls.js";
import type { RuntimeAttestation } from "../../runtime/client/connection.js";

export const MEASUREMENT = "ab".repeat(48);
export const OTHER_MEASUREMENT = "cd".repeat(48);

/**
 * `buckypaper runtime verify` arguments against a simulated-SNP runtime: the URL, an expected measurement, the
 * simulator's anchor file and no KDS (the simulated VCEK comes with the evidence), then `extra` flags.
 */
export function runtimeVerifyArgs(
  url: string,
  anchor: string,
  measurement = MEASUREMENT,
  ...extra: string[]
): string[] {
  return [
    "runtime",
    "verify",
    "--url",
    url,
    "--measurement",
    measurement,
    "--anchor",
    anchor,
    "--kds",
    "off",
    ...extra,
  ];
}

let shared: Promise<SnpSimulator> | undefined;
/** One simulated platform per test file (RSA key generation is the slow part). */
export function platform(): Promise<SnpSimulator> {
  shared ??= createSnpSimulator({ product: "Milan", rsaBits: 2048 });
  return shared;
}

export async function startAttestedRuntime(
  o: {
    measurement?: string;
    extraConfig?: string;
    hostData?: string;
    listener?: AttestedListener;
    /** The storage stanza (default inmem): replicas sharing a SQLite file share one barrier. */
    storage?: string;
    /** Settings inside the attestation block (e.g. a `vtpm { … }` block). */
    attestationBody?: string;
    /** The collector behind that `vtpm` block (default: the stanza's own). */
    vtpmSource?: RuntimeVtpmSource;
  } = {},
): Promise<{ server: RunningServer; sim: SnpSimulator }> {
  const sim = await platform();
  const cfg = parseConfig(`
    ${o.storage ?? 'storage "inmem" {}'}
    listener "tcp" { address = "127.0.0.1:0" }
    attestation "simulated" { ${o.attestationBody ?? ""} }
    ${o.extraConfig ?? ""}
  `);
  const server = await startServer(cfg, {
    ...(o.listener ? { attestedListener: o.listener } : {}),
    ...(o.vtpmSource ? { vtpmSource: o.vtpmSource } : {}),
    evidenceSource: simulatorProvider(sim, {
      measurement: o.measurement ?? MEASUREMENT,
      ...(o.hostData ? { hostData: Buffer.from(o.hostData, "hex") } : {}),
    }),
  });
  return { server, sim };
}

/** The plain expectations (what a Pulumi program or user-data carries) for the simulated platform. */
export function expectationFor(sim: SnpSimulator, measurements = [MEASUREMENT]): RuntimeAttestation {
  const a = sim.trustAnchor;
  return {
    snpMeasurements: measurements,
    simulatedAnchors: [
      {
        product: a.product,
        ark_sha256: a.arkSha256,
        ca_certs: a.caCerts.map((c) => Buffer.from(c).toString("base64")),
      },
    ],
    kds: "off",
  };
}

/**
 * A man in the middle: its own TLS key (or `listener`'s: the upstream's own key, to forge answer fields over the
 * key the evidence binds), and it relays every request to the real runtime (so it can hand over genuine evidence
 * for the verifier's nonce) — or answers attestation with `replay` instead, or with `rewrite` of the real answer.
 */
export async function startRelay(
  upstream: string,
  o: {
    replay?: string;
    listener?: AttestedListener;
    rewrite?: (attestationAnswer: string) => string | Promise<string>;
  } = {},
): Promise<{ url: string; requests: string[]; close(): Promise<void> }> {
  const listener = o.listener ?? (await createAttestedListener(["127.0.0.1"]));
  const requests: string[] = [];
  const srv = https.createServer({ key: listener.keyPem, cert: listener.certPem }, (req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const chunks: Buffer[] = [];
    req.on("data", (d: Buffer) => chunks.push(d));
    req.on("end", () => {
      if (o.replay && req.url?.startsWith("/v1/sys/attestation")) {
        res.writeHead(200, { "content-type": "application/json" }).end(o.replay);
        return;
      }
      const up = https.request(
        new URL(req.url ?? "/", upstream),
        { method: req.method, headers: req.headers, rejectUnauthorized: false },
        (r) => {
          if (o.rewrite && req.url?.startsWith("/v1/sys/attestation")) {
            const body: Buffer[] = [];
            r.on("data", (d: Buffer) => body.push(d));
            r.on("end", () => {
              void Promise.resolve(o.rewrite!(Buffer.concat(body).toString("utf8"))).then(
                (text) => res.writeHead(r.statusCode ?? 502, { "content-type": "application/json" }).end(text),
                () => res.writeHead(502).end(),
              );
            });
            return;
          }
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        },
      );
      up.on("error", () => res.writeHead(502).end());
      up.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as AddressInfo).port;
  return {
    url: `https://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((r) => srv.close(() => r())),
  };
}

/** GET over TLS without judging the certificate (the endpoint's own tests). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped JSON from the API
export function insecureGet(url: string, path: string, method = "GET"): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = https.request(new URL(path, url), { method, rejectUnauthorized: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (d: Buffer) => chunks.push(d));
      res.on("end", () => {
        const t = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode ?? 0, body: t ? JSON.parse(t) : undefined });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

/** Initialises (1 share) and unseals the runtime in-process, mounts KV v2 at secret/; returns the root token. */
export async function initUnseal(server: RunningServer): Promise<string> {
  const call = async (method: string, path: string, body?: unknown, token?: string) => {
    const r = await server.core.handle({
      method,
      path,
      query: {},
      body,
      headers: token ? { "x-vault-token": token } : {},
      clientIp: "127.0.0.1",
    });
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body as Record<string, unknown>;
  };
  const init = await call("PUT", "sys/init", { secret_shares: 1, secret_threshold: 1 });
  await call("PUT", "sys/unseal", { key: (init.keys as string[])[0] });
  const token = init.root_token as string;
  await call("POST", "sys/mounts/secret", { type: "kv", options: { version: "2" } }, token);
  return token;
}

/** Reads a KV v2 secret in-process (status only): proves what was or was not written server-side. */
export async function kvStatus(server: RunningServer, token: string, path: string): Promise<number> {
  const r = await server.core.handle({
    method: "GET",
    path: `secret/data/${path}`,
    query: {},
    body: undefined,
    headers: { "x-vault-token": token },
    clientIp: "127.0.0.1",
  });
  return r.status;
}
