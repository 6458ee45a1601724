// The enclaivelet's configuration file (/etc/buckypaper/enclaivelet.json, written by cloud-init).
// It holds only public facts: where the runtime is, which CA to trust, which workload this VM is and
// what to provision where. Secrets never appear here; they arrive after attestation.
import { RuntimeAttestationError, runtimeExpectation } from "../client/attested-tls.js";
import type { RuntimeAttestation } from "../client/connection.js";
import { readFileSync } from "node:fs";
import { parseSecretRef } from "../protocol/secret-ref.js";
import { WireFormatError } from "../protocol/errors.js";

export type ProviderName = "auto" | "configfs-tsm" | "sev-guest" | "azure" | "simulator" | "virtio-psp";
export const PROVIDER_NAMES: readonly ProviderName[] = [
  "auto",
  "configfs-tsm",
  "sev-guest",
  "azure",
  "simulator",
  "virtio-psp",
];

export interface EvidenceConfig {
  /** Which evidence source to use; "auto" probes configfs-tsm, then /dev/sev-guest, then the Azure vTPM. */
  provider: ProviderName;
  /** configfs-tsm report directory (tests point this at a temporary directory). */
  configfsRoot: string;
  /** Legacy SNP guest device. */
  sevGuestDevice: string;
  /** TPM device for the Azure provider (tpm2-tools TCTI). */
  tpmDevice: string;
  /** Simulator only: the measurement (hex) the simulated CPU reports. */
  simulatorMeasurement?: string;
  /**
   * AWS NitroTPM / GCE vTPM: also send a quote + event log, the AK bound into REPORT_DATA. `tcti` is the
   * tpm2-tools TCTI (default device:/dev/tpmrm0).
   */
  vtpm?: {
    tcti: string;
    eventLogPath?: string;
    /** AWS: quote the SHA-384 bank too and attach a NitroTPM attestation document (`nitro-tpm-attest`). */
    nitroTpm?: boolean;
    /** GCE: quote with the AK from Google's NV template and send Google's AK certificate. */
    googleAk?: boolean;
  };
}

export interface VolumeConfig {
  /** Block device (or file) holding the LUKS2 volume. */
  device: string;
  /** dm-crypt mapping name: /dev/mapper/<name>. */
  name: string;
  /** Filesystem created on first boot (mkfs.<fs>); default ext4 with a mountpoint, else none. */
  filesystem?: "ext4" | "xfs";
  /** Where to mount the opened volume; omit to only open it. */
  mountpoint?: string;
}

/** The SSH role and principals come from the workload definition in Nitride (secrets.ssh). */
export interface SshConfig {
  /** Host key types generated in the guest (the private keys never leave it); their public halves
   *  are sent with the bundle request and come back as host certificates. */
  keyTypes: ("ed25519" | "ecdsa" | "rsa")[];
  /** Directory for host keys and certificates (default /etc/ssh). */
  dir: string;
  /** Re-sign when the certificate expires within this many seconds. */
  renewBeforeSeconds: number;
}

/** The PKI role and names come from the workload definition in Nitride (secrets.pki): the bundle
 *  carries a freshly issued key and certificate, sealed to the attested ephemeral key. */
export interface TlsConfig {
  certPath: string;
  keyPath: string;
  /** Optional: the issuing chain (PEM) for servers that need it. */
  chainPath?: string;
  /** Re-issue when the certificate expires within this many seconds. */
  renewBeforeSeconds: number;
  owner?: string;
  group?: string;
}

export interface FileSpec {
  path: string;
  /** Name of the secret in the provisioning bundle's `kv` map. */
  secret: string;
  /** When the secret is an object: which field to write (default: the whole value, JSON-encoded). */
  field?: string;
  /** Octal string, e.g. "0600" (default). */
  mode: string;
  owner?: string;
  group?: string;
  /** Content is base64 in the bundle: write the decoded bytes. */
  base64?: boolean;
}

export interface EnvFileSpec {
  path: string;
  /** ENV_NAME → secret reference "[mount/data/]path#field" (runtime/protocol/secret-ref.ts). */
  vars: Record<string, string>;
  mode: string;
  owner?: string;
  group?: string;
}

export interface HookConfig {
  /** argv, run after a successful provisioning (no shell). */
  command: string[];
  timeoutSeconds: number;
}

export interface RetryConfig {
  attempts: number;
  initialDelayMs: number;
  maxDelayMs: number;
}

export interface EnclaiveletConfig {
  runtimeUrl: string;
  /**
   * SHA-256 (hex) of the runtime's TLS CA certificate (DER), pinned in user-data. Optional with
   * runtimeAttestation (then, when given too, it is checked in addition).
   */
  runtimeCaSha256?: string;
  /**
   * Attested TLS: the runtime (every replica) must prove its measurement and its TLS key
   * (runtime/client/attested-tls.ts) before evidence is sent to it or a bundle is taken from it.
   */
  runtimeAttestation?: RuntimeAttestation;
  workloadId: string;
  /**
   * Hybrid post-quantum sealing (default true): bind an ML-KEM-768 key with the P-384 key, so the
   * bundle is sealed to both (docs/post-quantum.md). false opts out (classical ECDH-ES only); a workload
   * with require_pq_hybrid then refuses the attestation.
   */
  pqHybrid: boolean;
  /** auth/jwt/login role bound to Nitride workload tokens. */
  jwtRole: string;
  jwtMount: string;
  evidence: EvidenceConfig;
  /** Prefix for every provisioned path ("/" in a guest; a temporary directory in tests). */
  root: string;
  retry: RetryConfig;
  volume?: VolumeConfig;
  ssh?: SshConfig;
  tls?: TlsConfig;
  files: FileSpec[];
  envFiles: EnvFileSpec[];
  hook?: HookConfig;
}

/** Bad configuration: names the offending field; never includes secret material (there is none). */
export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

type Json = Record<string, unknown>;

function obj(v: unknown, field: string): Json {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ConfigError(field, "must be an object");
  return v as Json;
}
/** A secret reference (runtime/protocol/secret-ref.ts), checked when the config is read. */
function secretRef(v: unknown, field: string): string {
  const ref = str(v, field);
  try {
    parseSecretRef(ref, field);
  } catch (e) {
    if (e instanceof WireFormatError) throw new ConfigError(field, e.detail);
    throw e;
  }
  return ref;
}

function str(v: unknown, field: string, pattern?: RegExp, hint?: string): string {
  if (typeof v !== "string" || v.length === 0) throw new ConfigError(field, "must be a non-empty string");
  if (pattern && !pattern.test(v)) throw new ConfigError(field, hint ?? `does not match ${pattern}`);
  return v;
}
function optStr(v: unknown, field: string, pattern?: RegExp, hint?: string): string | undefined {
  return v === undefined ? undefined : str(v, field, pattern, hint);
}
function int(v: unknown, field: string, dflt: number, min = 0): number {
  if (v === undefined) return dflt;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min)
    throw new ConfigError(field, `must be an integer ≥ ${min}`);
  return v;
}
function boolOf(v: unknown, field: string, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== "boolean") throw new ConfigError(field, "must be true or false");
  return v;
}
function strList(v: unknown, field: string, dflt: string[]): string[] {
  if (v === undefined) return dflt;
  if (!Array.isArray(v)) throw new ConfigError(field, "must be an array of strings");
  return v.map((x, i) => str(x, `${field}[${i}]`));
}
function onlyKeys(o: Json, field: string, allowed: string[]): void {
  for (const k of Object.keys(o))
    if (!allowed.includes(k)) throw new ConfigError(`${field}.${k}`.replace(/^\./, ""), "unknown field");
}

const ABS_PATH = /^\/[^\0]*$/;
const MODE = /^0?[0-7]{3,4}$/;
const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/; // as Nitride's workload ids
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const VAULT_PATH = /^[A-Za-z0-9][A-Za-z0-9._/-]*$/;

export function parseConfig(input: unknown): EnclaiveletConfig {
  const c = obj(input, "config");
  onlyKeys(c, "", [
    "runtimeUrl",
    "runtimeCaSha256",
    "runtimeAttestation",
    "workloadId",
    "pqHybrid",
    "jwtRole",
    "jwtMount",
    "evidence",
    "root",
    "retry",
    "volume",
    "ssh",
    "tls",
    "files",
    "envFiles",
    "hook",
  ]);
  const runtimeUrl = str(c.runtimeUrl, "runtimeUrl");
  let url: URL;
  try {
    url = new URL(runtimeUrl);
  } catch {
    throw new ConfigError("runtimeUrl", "is not a URL");
  }
  if (url.protocol !== "https:")
    throw new ConfigError("runtimeUrl", "must be https:// (the CA fingerprint is checked on the TLS connection)");

  const ev = obj(c.evidence ?? {}, "evidence");
  onlyKeys(ev, "evidence", ["provider", "configfsRoot", "sevGuestDevice", "tpmDevice", "simulatorMeasurement", "vtpm"]);
  let vtpm: EvidenceConfig["vtpm"];
  if (ev.vtpm !== undefined && ev.vtpm !== false) {
    const t = obj(ev.vtpm === true ? {} : ev.vtpm, "evidence.vtpm");
    onlyKeys(t, "evidence.vtpm", ["tcti", "eventLogPath", "nitroTpm", "googleAk"]);
    if (t.nitroTpm !== undefined && typeof t.nitroTpm !== "boolean")
      throw new ConfigError("evidence.vtpm.nitroTpm", "must be true or false");
    if (t.googleAk !== undefined && typeof t.googleAk !== "boolean")
      throw new ConfigError("evidence.vtpm.googleAk", "must be true or false");
    if (t.googleAk && t.nitroTpm)
      throw new ConfigError("evidence.vtpm.googleAk", "excludes nitroTpm (one cloud's vTPM at a time)");
    vtpm = {
      tcti: str(
        t.tcti ?? "device:/dev/tpmrm0",
        "evidence.vtpm.tcti",
        /^(device|swtpm|mssim):[\w.,=/:-]+$/,
        "must be a tpm2-tools TCTI like device:/dev/tpmrm0",
      ),
      eventLogPath: optStr(t.eventLogPath, "evidence.vtpm.eventLogPath", ABS_PATH, "must be an absolute path"),
      ...(t.nitroTpm ? { nitroTpm: true } : {}),
      ...(t.googleAk ? { googleAk: true } : {}),
    };
  }
  const provider = (ev.provider ?? "auto") as ProviderName;
  if (!PROVIDER_NAMES.includes(provider))
    throw new ConfigError("evidence.provider", `must be one of ${PROVIDER_NAMES.join(", ")}`);

  const r = obj(c.retry ?? {}, "retry");
  onlyKeys(r, "retry", ["attempts", "initialDelayMs", "maxDelayMs"]);

  const cfg: EnclaiveletConfig = {
    runtimeUrl: runtimeUrl.replace(/\/+$/, ""),
    ...(c.runtimeCaSha256 !== undefined || c.runtimeAttestation === undefined
      ? {
          runtimeCaSha256: str(
            c.runtimeCaSha256,
            "runtimeCaSha256",
            /^[0-9a-fA-F]{64}$/,
            "must be 64 hex digits (SHA-256 of the CA certificate), unless runtimeAttestation is given",
          ).toLowerCase(),
        }
      : {}),
    ...(c.runtimeAttestation !== undefined ? { runtimeAttestation: runtimeAttestationOf(c.runtimeAttestation) } : {}),
    workloadId: str(c.workloadId, "workloadId", ID, "must be 1-63 characters of [A-Za-z0-9._-]"),
    pqHybrid: boolOf(c.pqHybrid, "pqHybrid", true),
    jwtRole: str(c.jwtRole ?? "workload", "jwtRole", VAULT_PATH),
    jwtMount: str(c.jwtMount ?? "jwt", "jwtMount", VAULT_PATH),
    evidence: {
      provider,
      configfsRoot: str(
        ev.configfsRoot ?? "/sys/kernel/config/tsm/report",
        "evidence.configfsRoot",
        ABS_PATH,
        "must be an absolute path",
      ),
      sevGuestDevice: str(
        ev.sevGuestDevice ?? "/dev/sev-guest",
        "evidence.sevGuestDevice",
        ABS_PATH,
        "must be an absolute path",
      ),
      tpmDevice: str(ev.tpmDevice ?? "/dev/tpmrm0", "evidence.tpmDevice", ABS_PATH, "must be an absolute path"),
      simulatorMeasurement: optStr(
        ev.simulatorMeasurement,
        "evidence.simulatorMeasurement",
        /^[0-9a-fA-F]{96}$/,
        "must be 96 hex digits",
      ),
      ...(vtpm ? { vtpm } : {}),
    },
    root: str(c.root ?? "/", "root", ABS_PATH, "must be an absolute path"),
    retry: {
      attempts: int(r.attempts, "retry.attempts", 8, 1),
      initialDelayMs: int(r.initialDelayMs, "retry.initialDelayMs", 1000),
      maxDelayMs: int(r.maxDelayMs, "retry.maxDelayMs", 60_000),
    },
    files: [],
    envFiles: [],
  };

  if (c.volume !== undefined) {
    const v = obj(c.volume, "volume");
    onlyKeys(v, "volume", ["device", "name", "filesystem", "mountpoint"]);
    const fs = v.filesystem;
    if (fs !== undefined && fs !== "ext4" && fs !== "xfs")
      throw new ConfigError("volume.filesystem", "must be ext4 or xfs");
    cfg.volume = {
      device: str(v.device, "volume.device", ABS_PATH, "must be an absolute path"),
      name: str(v.name ?? "bk-data", "volume.name", /^[A-Za-z0-9_-]{1,64}$/, "must be [A-Za-z0-9_-], ≤ 64 characters"),
      // A mountpoint needs a filesystem: default to ext4 rather than fail to mount on first boot.
      filesystem: (fs ?? (v.mountpoint !== undefined ? "ext4" : undefined)) as VolumeConfig["filesystem"],
      mountpoint: optStr(v.mountpoint, "volume.mountpoint", ABS_PATH, "must be an absolute path"),
    };
  }
  if (c.ssh !== undefined) {
    const s = obj(c.ssh, "ssh");
    onlyKeys(s, "ssh", ["keyTypes", "dir", "renewBeforeSeconds"]);
    const keyTypes = strList(s.keyTypes, "ssh.keyTypes", ["ed25519"]);
    for (const [i, k] of keyTypes.entries())
      if (!["ed25519", "ecdsa", "rsa"].includes(k))
        throw new ConfigError(`ssh.keyTypes[${i}]`, "must be ed25519, ecdsa or rsa");
    cfg.ssh = {
      keyTypes: keyTypes as SshConfig["keyTypes"],
      dir: str(s.dir ?? "/etc/ssh", "ssh.dir", ABS_PATH, "must be an absolute path"),
      renewBeforeSeconds: int(s.renewBeforeSeconds, "ssh.renewBeforeSeconds", 7 * 86400),
    };
  }
  if (c.tls !== undefined) {
    const t = obj(c.tls, "tls");
    onlyKeys(t, "tls", ["certPath", "keyPath", "chainPath", "renewBeforeSeconds", "owner", "group"]);
    cfg.tls = {
      certPath: str(t.certPath, "tls.certPath", ABS_PATH, "must be an absolute path"),
      keyPath: str(t.keyPath, "tls.keyPath", ABS_PATH, "must be an absolute path"),
      chainPath: optStr(t.chainPath, "tls.chainPath", ABS_PATH, "must be an absolute path"),
      renewBeforeSeconds: int(t.renewBeforeSeconds, "tls.renewBeforeSeconds", 7 * 86400),
      owner: optStr(t.owner, "tls.owner"),
      group: optStr(t.group, "tls.group"),
    };
  }
  if (c.files !== undefined) {
    if (!Array.isArray(c.files)) throw new ConfigError("files", "must be an array");
    cfg.files = c.files.map((f, i) => {
      const o = obj(f, `files[${i}]`);
      onlyKeys(o, `files[${i}]`, ["path", "secret", "field", "mode", "owner", "group", "base64"]);
      if (o.base64 !== undefined && typeof o.base64 !== "boolean")
        throw new ConfigError(`files[${i}].base64`, "must be a boolean");
      return {
        path: str(o.path, `files[${i}].path`, ABS_PATH, "must be an absolute path"),
        secret: secretRef(o.secret, `files[${i}].secret`),
        field: optStr(o.field, `files[${i}].field`),
        mode: str(o.mode ?? "0600", `files[${i}].mode`, MODE, 'must be an octal string like "0600"'),
        owner: optStr(o.owner, `files[${i}].owner`),
        group: optStr(o.group, `files[${i}].group`),
        base64: o.base64 as boolean | undefined,
      };
    });
  }
  if (c.envFiles !== undefined) {
    if (!Array.isArray(c.envFiles)) throw new ConfigError("envFiles", "must be an array");
    cfg.envFiles = c.envFiles.map((f, i) => {
      const o = obj(f, `envFiles[${i}]`);
      onlyKeys(o, `envFiles[${i}]`, ["path", "vars", "mode", "owner", "group"]);
      const vars = obj(o.vars, `envFiles[${i}].vars`);
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries(vars)) {
        if (!ENV_NAME.test(k))
          throw new ConfigError(`envFiles[${i}].vars.${k}`, "is not a valid environment variable name");
        out[k] = secretRef(v, `envFiles[${i}].vars.${k}`);
      }
      return {
        path: str(o.path, `envFiles[${i}].path`, ABS_PATH, "must be an absolute path"),
        vars: out,
        mode: str(o.mode ?? "0600", `envFiles[${i}].mode`, MODE, 'must be an octal string like "0600"'),
        owner: optStr(o.owner, `envFiles[${i}].owner`),
        group: optStr(o.group, `envFiles[${i}].group`),
      };
    });
  }
  if (c.hook !== undefined) {
    const h = obj(c.hook, "hook");
    onlyKeys(h, "hook", ["command", "timeoutSeconds"]);
    const command = strList(h.command, "hook.command", []);
    if (command.length === 0) throw new ConfigError("hook.command", "must name a program");
    cfg.hook = { command, timeoutSeconds: int(h.timeoutSeconds, "hook.timeoutSeconds", 120, 1) };
  }
  return cfg;
}

export function loadConfig(file: string): EnclaiveletConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError("config", `${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ConfigError("config", `${file}: not JSON (${(e as Error).message})`);
  }
  return parseConfig(json);
}

/** The runtime's attested-TLS expectations, checked now (a typo fails at render time, not at boot). */
function runtimeAttestationOf(v: unknown): RuntimeAttestation {
  const a = obj(v, "runtimeAttestation");
  onlyKeys(a, "runtimeAttestation", [
    "snpMeasurements",
    "tdxMrTd",
    "snpHostData",
    "allowAnyInstance",
    "runtimeInstanceId",
    "policy",
    "simulatedAnchors",
    "kds",
    "replicaUrls",
  ]);
  const out = a as RuntimeAttestation;
  try {
    runtimeExpectation(out, "runtimeAttestation");
  } catch (e) {
    if (e instanceof RuntimeAttestationError) {
      const [field, ...rest] = e.reason.split(": ");
      throw new ConfigError(field, rest.join(": "));
    }
    throw e;
  }
  for (const [i, u] of (out.replicaUrls ?? []).entries())
    if (typeof u !== "string" || !u.startsWith("https://"))
      throw new ConfigError(`runtimeAttestation.replicaUrls[${i}]`, "must be an https:// URL");
  return out;
}
