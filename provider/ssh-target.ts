// The one SSH target type of the kit: a host reached with the OpenSSH client (the runtime service,
// provider/service.ts) or with @pulumi/command (Proxmox nodes, KVM hosts: components/common/ssh.ts).
// Its Pulumi-input form is provider/resources.ts SshTargetArgs.

export interface SshTarget {
  host: string;
  /** Default 22. */
  port?: number;
  /** Default "root". */
  user?: string;
  /** OpenSSH private key (PEM/OpenSSH format); a Pulumi secret wherever it is an input. */
  privateKey: string;
  /**
   * known_hosts line(s) pinning the host key; without it the key is accepted on first use. Honoured by the
   * runtime service (OpenSSH); refused where the transport cannot pin (@pulumi/command connections).
   */
  hostKey?: string;
}

export const SSH_DEFAULT_PORT = 22;
export const SSH_DEFAULT_USER = "root";
