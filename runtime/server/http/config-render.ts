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
  /** api_addr: the URL clients and guests use. */
  publicUrl: string;
  /** Write the audit log to <stateDir>/audit.log. */
  auditLog?: boolean;
  /** Worker processes (1, the default, is left out of the file). */
  workers?: number | "auto";
}

export function renderRuntimeConfig(o: RuntimeConfigInputs): string {
  const address = `${o.listenAddress.includes(":") ? `[${o.listenAddress}]` : o.listenAddress}:${o.port}`;
  const tcp: Record<string, unknown> = { address, tls_disable: !o.tls };
  if (o.tls) Object.assign(tcp, { tls_dir: `${o.stateDir}/tls`, tls_hosts: [o.publicHost] });
  const audit = o.auditLog ? { audit_file: `${o.stateDir}/audit.log` } : {};
  const workers = o.workers !== undefined && o.workers !== 1 ? { workers: o.workers } : {};
  const config = {
    storage: { sqlite: { path: `${o.stateDir}/runtime.db` } },
    listener: { tcp },
    api_addr: o.publicUrl,
    ...audit,
    ...workers,
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}
