// The `Vhsm` component: deploys the buckypaper runtime (Nitride + Vault-compatible API) and outputs
// what confidential VMs pin (URL, CA fingerprint) plus the admin token the deployment registers
// workloads with. Modes: `local` (a server process on this machine, for the `local` stack) and `ssh`
// (a server process on an on-premises host reached over SSH, with `buckypaper` installed there).
//
// The process is managed by provider/ RuntimeService (a dynamic provider) rather than @pulumi/command:
// the command provider's Go module is not obtainable from the Go proxy here (docs/pulumi.md).
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import { RuntimeService } from "../provider/resources.js";
import { RuntimeWrite, type SimulatedAnchor } from "../provider/local-vm.js";
import { ConfigError } from "./common/errors.js";
import { renderRuntimeConfig } from "../runtime/server/http/config-render.js";
import type { SshTargetArgs } from "../provider/resources.js";

export enum VhsmMode {
  /** A runtime process on the machine that runs `pulumi up`. */
  Local = "local",
  /** A runtime process on a host reached over SSH. */
  Ssh = "ssh",
}

/** The host the runtime runs on (mode ssh): the one SSH target type; hostKey pinning is recommended. */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- its own name keeps the generated SDK type name
export interface VhsmSshArgs extends SshTargetArgs {}

export interface VhsmArgs {
  /** Default local. */
  mode?: VhsmMode;
  /** SSH target (mode ssh). */
  ssh?: VhsmSshArgs;
  /** Absolute directory for config, SQLite storage, log and pid file. Default: <cwd>/.bk/vhsm/<stack> (local), /var/lib/buckypaper/vhsm-<stack> (ssh). */
  stateDir?: string;
  /** Address the server listens on. Default 127.0.0.1 (local), 0.0.0.0 (ssh). */
  listenAddress?: string;
  /** TCP port. Default 8200. */
  port?: number;
  /** Host name or IP in the URL that the deployment and the VMs use. Default 127.0.0.1 (local), the SSH host (ssh). */
  publicHost?: pulumi.Input<string>;
  /** More host names/IP addresses in the listener certificate, e.g. the address the local stack's real
   *  QEMU guests reach the runtime at through their user-mode network (10.0.2.100). */
  tlsHosts?: string[];
  /** Serve HTTPS with the runtime CA (default true). */
  tls?: boolean;
  /** Command that runs the buckypaper CLI. Default: this package's bin/buckypaper.js with the current Node (local), `buckypaper` (ssh). */
  command?: string[];
  /** Shamir key shares / threshold at init (default 1 / 1). */
  keyShares?: number;
  keyThreshold?: number;
  /**
   * Local mode only: trust this simulated SEV-SNP platform (a `SimulatedPlatform`'s anchor). Sets the
   * runtime's nitride config to accept evidence chaining to it (marked simulated in every verdict) and
   * turns AMD KDS lookups off. Never use it for a runtime that guards real secrets.
   */
  trustSimulatedSnp?: pulumi.Input<SimulatedAnchor>;
  /** Write the runtime's audit log to <stateDir>/audit.log (default false). */
  auditLog?: boolean;
  /**
   * Server processes sharing the listener and storage (docs/runtime.md "Workers"), 1 to 64. Default:
   * 1 in local mode, one per CPU of the host in ssh mode.
   */
  workers?: number;
}

/** The runtime's config file: rendered beside the runtime's config parser (runtime/server/http/config-render.ts). */
export { renderRuntimeConfig };

// components/ in the sources, dist/components/ when compiled: the package root is one or two levels up.
const HERE = path.dirname(fileURLToPath(import.meta.url));
const PACKAGE_ROOT =
  path.basename(path.dirname(HERE)) === "dist" ? path.resolve(HERE, "..", "..") : path.resolve(HERE, "..");

export class Vhsm extends pulumi.ComponentResource {
  /** Base URL of the runtime (https://host:port). */
  public readonly url: pulumi.Output<string>;
  /** SHA-256 (hex) of the runtime CA certificate: what guests pin. Empty without TLS. */
  public readonly caFingerprint: pulumi.Output<string>;
  /** PEM of the runtime CA certificate. */
  public readonly caPem: pulumi.Output<string>;
  /** Root token of the new runtime (a Pulumi secret). */
  public readonly rootToken: pulumi.Output<string>;

  constructor(name: string, args: VhsmArgs, opts?: pulumi.ComponentResourceOptions) {
    super("buckypaper:index:Vhsm", name, args, opts);
    const mode = args.mode ?? VhsmMode.Local;
    if (mode !== VhsmMode.Local && mode !== VhsmMode.Ssh)
      throw new ConfigError(`Vhsm ${name}`, "mode", `is '${String(mode)}', which is not supported`, [
        VhsmMode.Local,
        VhsmMode.Ssh,
      ]);
    if (mode === VhsmMode.Ssh && !args.ssh)
      throw new ConfigError(`Vhsm ${name}`, "ssh", "is required when mode is 'ssh'");
    if (mode === VhsmMode.Local && args.ssh)
      throw new ConfigError(`Vhsm ${name}`, "ssh", "is only allowed when mode is 'ssh'");
    if (args.ssh && typeof args.ssh.privateKey === "string") {
      throw new ConfigError(
        `Vhsm ${name}`,
        "ssh.privateKey",
        "is a plain string; pass a Pulumi secret (config.requireSecret(...))",
      );
    }
    const port = args.port ?? 8200;
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      throw new ConfigError(`Vhsm ${name}`, "port", `is ${port}; must be 1..65535`);
    if (args.trustSimulatedSnp !== undefined && mode !== VhsmMode.Local)
      throw new ConfigError(`Vhsm ${name}`, "trustSimulatedSnp", "is only allowed when mode is 'local'");
    const stack = pulumi.getStack();
    const stateDir =
      args.stateDir ??
      (mode === VhsmMode.Local ? path.resolve(".bk", "vhsm", stack) : `/var/lib/buckypaper/vhsm-${stack}`);
    if (!path.isAbsolute(stateDir))
      throw new ConfigError(`Vhsm ${name}`, "stateDir", `is '${stateDir}'; must be an absolute path`);
    if (args.workers !== undefined && !(Number.isInteger(args.workers) && args.workers >= 1 && args.workers <= 64)) {
      throw new ConfigError(`Vhsm ${name}`, "workers", `is ${args.workers}; must be an integer from 1 to 64`);
    }
    const workers = args.workers ?? (mode === VhsmMode.Local ? 1 : "auto");
    const tls = args.tls ?? true;
    const listenAddress = args.listenAddress ?? (mode === VhsmMode.Local ? "127.0.0.1" : "0.0.0.0");
    const publicHost = pulumi.output(args.publicHost ?? (mode === VhsmMode.Local ? "127.0.0.1" : args.ssh!.host));
    const url = publicHost.apply((h) => `${tls ? "https" : "http"}://${h.includes(":") ? `[${h}]` : h}:${port}`);
    const command =
      args.command ??
      (mode === VhsmMode.Local ? [process.execPath, path.join(PACKAGE_ROOT, "bin", "buckypaper.js")] : ["buckypaper"]);

    const service = new RuntimeService(
      `${name}-runtime`,
      {
        ssh: args.ssh,
        stateDir,
        serverCommand: [...command, "runtime", "server", "--config", "{config}"],
        config: pulumi.all([publicHost, url]).apply(([h, u]) =>
          renderRuntimeConfig({
            stateDir,
            listenAddress,
            port,
            tls,
            publicHost: h,
            ...(args.tlsHosts?.length ? { extraTlsHosts: args.tlsHosts } : {}),
            publicUrl: u,
            workers,
            ...(args.auditLog ? { auditLog: true } : {}),
          }),
        ),
        url,
        keyShares: args.keyShares ?? 1,
        keyThreshold: args.keyThreshold ?? 1,
      },
      { parent: this },
    );
    this.url = service.url;
    this.caFingerprint = service.caFingerprint;
    this.caPem = service.caPem;
    this.rootToken = pulumi.secret(service.rootToken);
    if (args.trustSimulatedSnp !== undefined) {
      new RuntimeWrite(
        `${name}-trust-simulated-snp`,
        {
          connection: { url: service.url, token: service.rootToken, caPem: service.caPem },
          method: "PUT",
          path: "nitride/config",
          body: pulumi
            .output(args.trustSimulatedSnp)
            .apply((a) => ({ kds: "off", accept_simulated: true, simulated_snp_anchors: [a] })),
        },
        { parent: this },
      );
    }
    this.registerOutputs({
      url: this.url,
      caFingerprint: this.caFingerprint,
      caPem: this.caPem,
      rootToken: this.rootToken,
    });
  }
}
