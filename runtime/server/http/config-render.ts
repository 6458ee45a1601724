// The other direction of config.ts: renders the runtime's config file (the JSON form that
// `buckypaper runtime server --config` reads with parseConfig) from a deployment's choices. It lives
// beside the parser so the two change together (test/runtime/server/http/config-render.test.ts checks
// the round trip); it imports nothing, so the Pulumi components can use it without server code.

export interface RuntimeConfigInputs {
  /** Absolute directory for the SQLite database, TLS material and audit log. */
  stateDir: string;
  listenAddress: string;
  port: number;
  /** Serve https with a listener certificate from the runtime CA (kept in <stateDir>/tls). */
  tls: boolean;
  /** The host name the listener certificate is issued for. */
  publicHost: string;
  /** More names/addresses for the listener certificate (e.g. the address local guests reach it at). */
  extraTlsHosts?: string[];
  /** api_addr: the URL clients and guests use. */
  publicUrl: string;
  /** Write the audit log to <stateDir>/audit.log. */
  auditLog?: boolean;
  /** Worker processes (1, the default, is left out of the file). */
  workers?: number | "auto";
  /**
   * Attested TLS (config.ts `attestation`): the listener key is generated in memory at each start and served
   * with evidence from this source at GET /v1/sys/attestation. "simulated" only for a single-worker local runtime.
   */
  attestation?: {
    source: "sev-guest" | "configfs-tsm" | "virtio-psp" | "azure" | "simulated";
    /** sev-guest, azure (the vTPM): device; configfs-tsm: root; virtio-psp: port (defaults as in config.ts). */
    path?: string;
    /**
     * The vTPM half (config.ts `vtpm`; AWS/GCE): a TPM quote over the boot PCRs and the event log ride along, the AK
     * bound into REPORT_DATA. `true` for /dev/tpmrm0 and the kernel's event log.
     */
    vtpm?: true | { device?: string; eventLog?: string; nitroTpm?: boolean; googleAk?: boolean };
  };
}

export function renderRuntimeConfig(o: RuntimeConfigInputs): string {
  const address = `${o.listenAddress.includes(":") ? `[${o.listenAddress}]` : o.listenAddress}:${o.port}`;
  const tcp: Record<string, unknown> = { address, tls_disable: !o.tls };
  if (o.tls)
    Object.assign(tcp, {
      tls_dir: `${o.stateDir}/tls`,
      tls_hosts: [...new Set([o.publicHost, ...(o.extraTlsHosts ?? [])])],
    });
  const audit = o.auditLog ? { audit_file: `${o.stateDir}/audit.log` } : {};
  const workers = o.workers !== undefined && o.workers !== 1 ? { workers: o.workers } : {};
  const config = {
    storage: { sqlite: { path: `${o.stateDir}/runtime.db` } },
    listener: { tcp },
    api_addr: o.publicUrl,
    ...audit,
    ...workers,
    ...(o.attestation ? { attestation: { [o.attestation.source]: attestationSettings(o.attestation) } } : {}),
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

function attestationSettings(a: NonNullable<RuntimeConfigInputs["attestation"]>): Record<string, unknown> {
  const key = {
    "sev-guest": "device",
    "configfs-tsm": "root",
    "virtio-psp": "port",
    azure: "device",
    simulated: "platform_dir",
  }[a.source];
  const v = a.vtpm === true ? {} : a.vtpm;
  return {
    ...(a.path ? { [key]: a.path } : {}),
    ...(v
      ? {
          vtpm: {
            ...(v.device ? { device: v.device } : {}),
            ...(v.eventLog ? { event_log: v.eventLog } : {}),
            ...(v.nitroTpm ? { nitro_tpm: true } : {}),
            ...(v.googleAk ? { google_ak: true } : {}),
          },
        }
      : {}),
  };
}
