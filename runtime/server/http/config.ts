// The server configuration file (HCL or JSON, like Vault's):
//
//   storage "sqlite" { path = "/var/lib/buckypaper/runtime.db" }
//   # storage "postgresql" { connection_url = "postgres://user:pw@db:5432/runtime" }
//   listener "tcp" { address = "0.0.0.0:8200"  tls_disable = false  tls_dir = "/var/lib/buckypaper/tls"
//                    tls_hosts = ["runtime.example.com"]  max_request_size = 1048576 }
//   api_addr = "https://runtime.example.com:8200"
//   audit_file = "/var/log/buckypaper/audit.log"
//   default_lease_ttl = "768h"   max_lease_ttl = "768h"
//   rate_limit "nitride/challenge" { per_second = 20  burst = 100 }
//   workers = 2          # HTTP worker processes sharing the listener and storage ("auto": one per CPU)
//   seal "snp-derived-key" { device = "/dev/sev-guest" }   # auto-unseal with the SEV-SNP sealing key
//   # seal "snp-derived-key" { transport = "virtio-psp"  port = "/dev/virtio-ports/org.buckypaper.psp.0" } (local QEMU guests)
//   attestation "sev-guest" { device = "/dev/sev-guest" }  # attested TLS: GET /v1/sys/attestation
//   # attestation "configfs-tsm" { root = "/sys/kernel/config/tsm/report" }
//   # attestation "virtio-psp"   { port = "/dev/virtio-ports/org.buckypaper.psp.0" }   (local QEMU guests)
//   # attestation "simulated"    { platform_dir = "/abs/platform" measurement = "<96 hex>" } (tests, local)
//   #   inside any of them, AWS/GCE: vtpm { device = "/dev/tpmrm0"  nitro_tpm = true | google_ak = true }
//   # attestation "azure"        { device = "/dev/tpmrm0" }  (Azure CVM: the paravisor's HCL report, the HCL AK's
//   #                                                         quote and the event log; event_log = PATH to move it)
//   #   (a TPM quote over the boot PCRs and the event log ride along; the AK is bound into REPORT_DATA)
//   peer_unseal { peers = ["https://10.0.0.2:8200"] }  # replica set: attested peers unseal a sealed replica (peer/config.ts)
import path from "node:path";
import { availableParallelism } from "node:os";
import { parseHcl, HclError, type HclBody, type HclValue } from "../vault/hcl.js";
import { parseDuration } from "../vault/duration.js";
import { LogicalError } from "../vault/backend.js";
import { DEFAULT_RATE_LIMITS, type RateLimitRule } from "./rate-limit.js";
import { parsePeerUnseal, type PeerUnsealStanza } from "../peer/config.js";

export type StorageConfig =
  { type: "sqlite"; path: string } | { type: "postgresql"; connectionUrl: string } | { type: "inmem" };

export interface ListenerConfig {
  host: string;
  port: number;
  tlsDisable: boolean;
  /** Where the runtime-CA-issued listener certificate is kept (created at init). */
  tlsDir?: string;
  /** Operator-supplied certificate instead of the runtime CA's. */
  tlsCertFile?: string;
  tlsKeyFile?: string;
  tlsHosts: string[];
  maxRequestSize: number;
}

export interface RuntimeConfig {
  storage: StorageConfig;
  listener: ListenerConfig;
  apiAddr?: string;
  auditFile?: string;
  defaultTtl: number;
  maxTtl: number;
  rateLimits: RateLimitRule[];
  /** Worker processes serving the listener (1: the runtime runs in this process). */
  workers: number;
  /** Auto-unseal; the Shamir shares from init stay the recovery path. */
  seal?: SealStanza;
  /** Attested TLS: the listener key is generated in memory and bound into evidence from this source. */
  attestation?: AttestationStanza;
  /** Replica set: the peers a sealed replica asks for their unseal-key shares (needs `attestation`). */
  peerUnseal?: PeerUnsealStanza;
}

/**
 * `attestation "<source>"`: where the runtime's own evidence comes from (runtime/server/http/attested-tls.ts).
 * "simulated" signs with a simulated platform and is honoured only by an entry point that can load one
 * (`buckypaper runtime server`, tests): the server itself never carries simulator code.
 */
export type AttestationStanza = (
  | { type: "sev-guest"; device: string }
  | { type: "configfs-tsm"; root: string }
  | { type: "virtio-psp"; port: string }
  | { type: "simulated"; platformDir?: string; measurement?: string }
  /**
   * Azure CVM: no /dev/sev-guest (the paravisor owns the PSP). The evidence is the HCL report read from the vTPM
   * (NV 0x01400001) after writing REPORT_DATA as its user-data (NV 0x01400002), and a quote by the HCL's AK over
   * SHA-256(REPORT_DATA) (runtime/guest/evidence/azure.ts). No `vtpm` block: the quote is already part of it.
   */
  | { type: "azure"; device: string; eventLog?: string }
) & { vtpm?: VtpmStanza };

/**
 * `vtpm { … }` inside the attestation block: GET /v1/sys/attestation also returns a TPM 2.0 quote over the boot
 * PCRs and the TCG event log, the AK bound into REPORT_DATA (binding.ts runtimeTlsVtpmReportData) — what binds
 * the OS on clouds whose launch digest covers only their firmware (AWS, GCE). Collected by the enclaivelet's
 * tpm2-tools collector (runtime/guest/evidence/vtpm.ts).
 */
export interface VtpmStanza {
  /** tpm2-tools TCTI: "device:/dev/tpmrm0" by default (`device = PATH` sets it), "swtpm:host=…,port=…" in tests. */
  tcti: string;
  /** The TCG event log (default /sys/kernel/security/tpm0/binary_bios_measurements). */
  eventLog?: string;
  /** AWS: also request a NitroTPM attestation document for the quote (nitro-tpm-attest). */
  nitroTpm?: boolean;
  /** GCE: quote with the AK Google's EK/AK CA certified, and send its certificate. */
  googleAk?: boolean;
}

export const VTPM_SETTINGS = ["device", "tcti", "event_log", "nitro_tpm", "google_ak"] as const;

export const ATTESTATION_SOURCES = ["sev-guest", "configfs-tsm", "virtio-psp", "azure", "simulated"] as const;

/** `seal "snp-derived-key"`: the unseal key wrapped with the PSP's derived key (VCEK root + MEASUREMENT + POLICY). */
export type SealStanza =
  | { type: "snp-derived-key"; transport?: "sev-guest"; device: string }
  /** The local stack's simulated PSP over virtio-serial (runtime/sim/qemu/psp.ts): same request, same binding. */
  | { type: "snp-derived-key"; transport: "virtio-psp"; port: string };

export const SEAL_TRANSPORTS = ["sev-guest", "virtio-psp"] as const;

export const MAX_WORKERS = 64;

export class ConfigError extends Error {
  override name = "ConfigError";
}

function s(v: HclValue | undefined, field: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string") throw new ConfigError(`${field}: must be a string`);
  return v;
}

export function parseAddress(addr: string, field = "address"): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(addr);
  if (!m || Number(m[2]) > 65535) throw new ConfigError(`${field}: expected HOST:PORT, got '${addr}'`);
  return { host: m[1] || "127.0.0.1", port: Number(m[2]) };
}

/** JSON config is Vault-style too: {"storage": {"sqlite": {...}}, "listener": {"tcp": {...}}, ...}. */
function fromJson(doc: Record<string, unknown>): HclBody {
  const body: HclBody = { attrs: {}, blocks: [] };
  for (const [k, v] of Object.entries(doc)) {
    if (
      (k === "storage" || k === "listener" || k === "rate_limit" || k === "seal" || k === "attestation") &&
      v &&
      typeof v === "object" &&
      !Array.isArray(v)
    ) {
      for (const [label, inner] of Object.entries(v as Record<string, unknown>))
        body.blocks.push({
          type: k,
          labels: [label],
          body: { attrs: inner as Record<string, HclValue>, blocks: [] },
          line: 0,
        });
    } else body.attrs[k] = v as HclValue;
  }
  return body;
}

export function parseConfig(text: string, baseDir = process.cwd()): RuntimeConfig {
  let body: HclBody;
  try {
    body = text.trim().startsWith("{") ? fromJson(JSON.parse(text)) : parseHcl(text);
  } catch (e) {
    if (e instanceof HclError || e instanceof SyntaxError) throw new ConfigError(`config: ${e.message}`);
    throw e;
  }
  const known = new Set([
    "api_addr",
    "audit_file",
    "default_lease_ttl",
    "max_lease_ttl",
    "ui",
    "disable_mlock",
    "cluster_name",
    "log_level",
    "workers",
    "peer_unseal",
  ]);
  for (const k of Object.keys(body.attrs)) if (!known.has(k)) throw new ConfigError(`config: unknown setting '${k}'`);
  const storages = body.blocks.filter((b) => b.type === "storage");
  const listeners = body.blocks.filter((b) => b.type === "listener");
  for (const b of body.blocks)
    if (!["storage", "listener", "rate_limit", "seal", "attestation", "peer_unseal"].includes(b.type))
      throw new ConfigError(`config: unknown block '${b.type}'`);
  if (storages.length !== 1) throw new ConfigError("storage: exactly one storage block is required");
  if (listeners.length !== 1) throw new ConfigError("listener: exactly one listener block is required");
  const resolve = (p: string) => path.resolve(baseDir, p);

  const sb = storages[0];
  let storage: StorageConfig;
  const kind = sb.labels[0];
  if (kind === "sqlite") {
    const p = s(sb.body.attrs.path, "storage.sqlite.path");
    if (!p) throw new ConfigError("storage.sqlite.path: required");
    storage = { type: "sqlite", path: resolve(p) };
  } else if (kind === "postgresql" || kind === "postgres") {
    const url =
      s(sb.body.attrs.connection_url, "storage.postgresql.connection_url") ?? process.env.BK_PG_CONNECTION_URL;
    if (!url) throw new ConfigError("storage.postgresql.connection_url: required (or BK_PG_CONNECTION_URL)");
    storage = { type: "postgresql", connectionUrl: url };
  } else if (kind === "inmem") {
    storage = { type: "inmem" };
  } else throw new ConfigError(`storage: unknown type '${kind}' (sqlite, postgresql, inmem)`);

  const lb = listeners[0];
  if (lb.labels[0] !== "tcp") throw new ConfigError(`listener: unknown type '${lb.labels[0]}' (tcp)`);
  const la = lb.body.attrs;
  const { host, port } = parseAddress(
    s(la.address, "listener.tcp.address") ?? "127.0.0.1:8200",
    "listener.tcp.address",
  );
  const tlsDisable = la.tls_disable === true || la.tls_disable === "true" || la.tls_disable === 1;
  const hosts = la.tls_hosts ?? [];
  if (!Array.isArray(hosts) || hosts.some((h) => typeof h !== "string"))
    throw new ConfigError("listener.tcp.tls_hosts: must be a list of strings");
  const certFile = s(la.tls_cert_file, "listener.tcp.tls_cert_file"),
    keyFile = s(la.tls_key_file, "listener.tcp.tls_key_file");
  if (!!certFile !== !!keyFile) throw new ConfigError("listener.tcp: tls_cert_file and tls_key_file go together");
  let tlsDir = s(la.tls_dir, "listener.tcp.tls_dir");
  const attestation = parseAttestation(body, resolve);
  // An attested listener keeps its key in memory: it needs no tls_dir.
  if (!tlsDisable && !certFile && !tlsDir && !attestation) {
    if (storage.type !== "sqlite")
      throw new ConfigError("listener.tcp.tls_dir: required with TLS unless tls_cert_file is set");
    tlsDir = path.join(path.dirname(storage.path), "tls");
  }
  const maxReq = la.max_request_size ?? 1024 * 1024;
  if (typeof maxReq !== "number" || !Number.isInteger(maxReq) || maxReq <= 0)
    throw new ConfigError("listener.tcp.max_request_size: must be a positive integer (bytes)");

  const rateLimits: RateLimitRule[] = [...DEFAULT_RATE_LIMITS];
  for (const rb of body.blocks.filter((b) => b.type === "rate_limit")) {
    const ps = Number(rb.body.attrs.per_second),
      burst = Number(rb.body.attrs.burst ?? ps);
    if (!(ps > 0) || !(burst >= 1))
      throw new ConfigError(`rate_limit "${rb.labels[0]}": per_second and burst must be positive`);
    const i = rateLimits.findIndex((r) => r.path === rb.labels[0]);
    const rule = { path: rb.labels[0], perSecond: ps, burst };
    if (i >= 0) rateLimits[i] = rule;
    else rateLimits.push(rule);
  }
  let defaultTtl: number, maxTtl: number;
  try {
    defaultTtl = parseDuration("default_lease_ttl", body.attrs.default_lease_ttl, 768 * 3600);
    maxTtl = parseDuration("max_lease_ttl", body.attrs.max_lease_ttl, 768 * 3600);
  } catch (e) {
    throw new ConfigError(e instanceof LogicalError ? e.message : String(e));
  }
  const seals = body.blocks.filter((b) => b.type === "seal");
  if (seals.length > 1) throw new ConfigError("seal: at most one seal block");
  let seal: SealStanza | undefined;
  if (seals.length === 1) {
    const sl = seals[0];
    if (sl.labels[0] !== "snp-derived-key")
      throw new ConfigError(`seal: unknown type '${sl.labels[0] ?? ""}' (snp-derived-key)`);
    const transport = s(sl.body.attrs.transport, "seal.snp-derived-key.transport") ?? "sev-guest";
    if (!(SEAL_TRANSPORTS as readonly string[]).includes(transport))
      throw new ConfigError(
        `seal.snp-derived-key.transport: unknown transport '${transport}' (${SEAL_TRANSPORTS.join(", ")})`,
      );
    const allowed = transport === "virtio-psp" ? ["transport", "port"] : ["transport", "device"];
    for (const k of Object.keys(sl.body.attrs))
      if (!allowed.includes(k))
        throw new ConfigError(`seal.snp-derived-key: unknown setting '${k}' (${allowed.join(", ")})`);
    seal =
      transport === "virtio-psp"
        ? {
            type: "snp-derived-key",
            transport: "virtio-psp",
            port: s(sl.body.attrs.port, "seal.snp-derived-key.port") ?? "/dev/virtio-ports/org.buckypaper.psp.0",
          }
        : {
            type: "snp-derived-key",
            device: s(sl.body.attrs.device, "seal.snp-derived-key.device") ?? "/dev/sev-guest",
          };
  }
  if (attestation && tlsDisable)
    throw new ConfigError("attestation: attested TLS needs TLS; remove listener.tcp.tls_disable");
  if (attestation && certFile)
    throw new ConfigError(
      "attestation: the attested listener key is generated in memory at start; remove listener.tcp.tls_cert_file/tls_key_file",
    );
  const peerUnseal = parsePeerUnseal(body, (m) => new ConfigError(m));
  if (peerUnseal && !attestation)
    throw new ConfigError(
      "peer_unseal: needs an attestation stanza (a replica proves to its peers what it runs with its own evidence)",
    );
  // Peers appraise each other against references taken from their own SNP/TDX report (peer/reference.ts): an Azure
  // replica's report is the paravisor's, which names no runtime — refused here rather than failing at start.
  if (peerUnseal && attestation?.type === "azure")
    throw new ConfigError(
      "peer_unseal: not with attestation \"azure\" (replicas compare their own SNP/TDX reports; on Azure that report is the paravisor's and names no runtime): unseal with the operators' shares",
    );
  const auditFile = s(body.attrs.audit_file, "audit_file");
  const workers = parseWorkers(body.attrs.workers);
  if (peerUnseal && workers > 1)
    throw new ConfigError(
      "peer_unseal: a replica asks its peers from one process; set workers = 1 (got " + workers + ")",
    );
  if (workers > 1 && storage.type === "inmem")
    throw new ConfigError(
      `workers: inmem storage lives in one process; use sqlite or postgresql storage with workers = ${workers}`,
    );
  return {
    storage,
    listener: {
      host,
      port,
      tlsDisable,
      tlsDir: tlsDir && resolve(tlsDir),
      tlsCertFile: certFile && resolve(certFile),
      tlsKeyFile: keyFile && resolve(keyFile),
      tlsHosts: hosts as string[],
      maxRequestSize: maxReq,
    },
    apiAddr: s(body.attrs.api_addr, "api_addr"),
    auditFile: auditFile && resolve(auditFile),
    defaultTtl,
    maxTtl,
    rateLimits,
    workers,
    ...(seal ? { seal } : {}),
    ...(attestation ? { attestation } : {}),
    ...(peerUnseal ? { peerUnseal } : {}),
  };
}

function parseAttestation(body: HclBody, resolve: (p: string) => string): AttestationStanza | undefined {
  const blocks = body.blocks.filter((b) => b.type === "attestation");
  if (blocks.length === 0) return undefined;
  if (blocks.length > 1) throw new ConfigError("attestation: at most one attestation block");
  const b = blocks[0];
  const type = b.labels[0] ?? "";
  const vtpm = parseVtpm(b.body, `attestation.${type}`, resolve);
  for (const inner of b.body.blocks)
    if (inner.type !== "vtpm") throw new ConfigError(`attestation.${type}: unknown block '${inner.type}' (vtpm)`);
  const only = (allowed: string[]) => {
    for (const k of Object.keys(b.body.attrs))
      if (!allowed.includes(k) && k !== "vtpm")
        throw new ConfigError(
          `attestation.${type}: unknown setting '${k}' (${[...allowed, "vtpm"].join(", ") || "none"})`,
        );
  };
  const withVtpm = <T extends object>(x: T): T & { vtpm?: VtpmStanza } => (vtpm ? { ...x, vtpm } : x);
  const abs = (field: string, dflt?: string) => {
    const v = s(b.body.attrs[field], `attestation.${type}.${field}`) ?? dflt;
    return v === undefined ? undefined : resolve(v);
  };
  switch (type) {
    case "sev-guest":
      only(["device"]);
      return withVtpm({ type, device: abs("device", "/dev/sev-guest")! });
    case "configfs-tsm":
      only(["root"]);
      return withVtpm({ type, root: abs("root", "/sys/kernel/config/tsm/report")! });
    case "virtio-psp":
      only(["port"]);
      return withVtpm({ type, port: abs("port", "/dev/virtio-ports/org.buckypaper.psp.0")! });
    case "azure": {
      only(["device", "event_log"]);
      // The HCL's AK quotes over the report's binding already; a second quote would bind nothing more.
      if (vtpm)
        throw new ConfigError(
          "attestation.azure.vtpm: not with the azure source (its evidence already carries the vTPM quote by the HCL's attestation key)",
        );
      const eventLog = abs("event_log");
      return { type, device: abs("device", "/dev/tpmrm0")!, ...(eventLog ? { eventLog } : {}) };
    }
    case "simulated": {
      only(["platform_dir", "measurement"]);
      const measurement = s(b.body.attrs.measurement, "attestation.simulated.measurement");
      if (measurement !== undefined && !/^[0-9a-fA-F]{96}$/.test(measurement))
        throw new ConfigError("attestation.simulated.measurement: must be 96 hex digits (48 bytes)");
      const platformDir = abs("platform_dir");
      return withVtpm({
        type,
        ...(platformDir ? { platformDir } : {}),
        ...(measurement ? { measurement: measurement.toLowerCase() } : {}),
      });
    }
    default:
      throw new ConfigError(`attestation: unknown source '${type}' (${ATTESTATION_SOURCES.join(", ")})`);
  }
}

/** `vtpm { … }` (HCL block) or `"vtpm": { … }` (JSON, or an HCL object attribute), at most one; `vtpm = true` for the defaults. */
function parseVtpm(body: HclBody, where: string, resolve: (p: string) => string): VtpmStanza | undefined {
  const blocks = body.blocks.filter((x) => x.type === "vtpm");
  const attr = body.attrs.vtpm;
  const field = `${where}.vtpm`;
  if (blocks.length + (attr === undefined ? 0 : 1) > 1) throw new ConfigError(`${field}: at most one vtpm setting`);
  if (attr === false) return undefined;
  let a: Record<string, HclValue>;
  if (blocks.length) {
    if (blocks[0].labels.length) throw new ConfigError(`${field}: takes no label`);
    if (blocks[0].body.blocks.length)
      throw new ConfigError(`${field}: unknown block '${blocks[0].body.blocks[0].type}' (none)`);
    a = blocks[0].body.attrs;
  } else if (attr === undefined) return undefined;
  else if (attr === true) a = {};
  else if (typeof attr === "object" && !Array.isArray(attr)) a = attr;
  else throw new ConfigError(`${field}: must be a block, an object or true`);
  for (const k of Object.keys(a))
    if (!(VTPM_SETTINGS as readonly string[]).includes(k))
      throw new ConfigError(`${field}: unknown setting '${k}' (${VTPM_SETTINGS.join(", ")})`);
  const device = s(a.device, `${field}.device`);
  const tcti = s(a.tcti, `${field}.tcti`);
  if (device !== undefined && tcti !== undefined) throw new ConfigError(`${field}: give device or tcti, not both`);
  if (tcti !== undefined && !/^[a-z][a-z0-9-]*(:.*)?$/.test(tcti))
    throw new ConfigError(`${field}.tcti: expected a tpm2-tools TCTI such as "device:/dev/tpmrm0"`);
  const bool = (k: string) => {
    const v = a[k];
    if (v === undefined) return undefined;
    if (typeof v !== "boolean") throw new ConfigError(`${field}.${k}: must be true or false`);
    return v;
  };
  const nitroTpm = bool("nitro_tpm");
  const googleAk = bool("google_ak");
  if (nitroTpm && googleAk)
    throw new ConfigError(`${field}: nitro_tpm (AWS) and google_ak (GCE) name different clouds; set one`);
  const eventLog = s(a.event_log, `${field}.event_log`);
  return {
    tcti: tcti ?? `device:${resolve(device ?? "/dev/tpmrm0")}`,
    ...(eventLog !== undefined ? { eventLog: resolve(eventLog) } : {}),
    ...(nitroTpm ? { nitroTpm } : {}),
    ...(googleAk ? { googleAk } : {}),
  };
}

function parseWorkers(v: HclValue | undefined): number {
  if (v === undefined) return 1;
  if (v === "auto") return Math.min(MAX_WORKERS, availableParallelism());
  const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > MAX_WORKERS)
    throw new ConfigError(`workers: must be an integer from 1 to ${MAX_WORKERS}, or "auto"`);
  return n;
}
