// How to reach the runtime — the one connection type of the kit. The CLI, the Pulumi providers
// (provider/client.ts) and the components (as Pulumi inputs: provider/resources.ts RuntimeConnectionArgs)
// all describe the runtime with it.

/** How a client trusts the runtime's TLS certificate (https only). */
export interface RuntimeTrust {
  /** PEM of the runtime CA; without it (and without caFingerprint) the system trust store is used. */
  caPem?: string;
  /**
   * SHA-256 (hex, colons and a "sha256:" prefix allowed) of the runtime CA certificate. With caPem they
   * must match; alone, the certificate with this fingerprint is taken from the chain the server presents
   * and then used as the only trust anchor of a fully verified connection.
   */
  caFingerprint?: string;
}

/** Where the runtime is, how to trust it and the token to authenticate with. */
export interface RuntimeConnection extends RuntimeTrust {
  /** Base URL, e.g. https://127.0.0.1:8200 (no /v1). */
  url: string;
  /** Token sent as X-Vault-Token. */
  token: string;
}
