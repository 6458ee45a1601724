// How to reach the runtime — the one connection type of the kit. The CLI, the Pulumi providers
// (provider/client.ts) and the components (as Pulumi inputs: provider/resources.ts RuntimeConnectionArgs)
// all describe the runtime with it.

import type { DeployerAuth } from "./deployer.js";

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

/** A simulated SEV-SNP platform's public anchor (anchor.json of `buckypaper simulate platform`). */
export interface SimulatedPlatformAnchor {
  product: string;
  /** SHA-256 (hex) of the simulated ARK certificate (DER). */
  ark_sha256: string;
  /** ARK, ASK, ASVK (DER, base64). */
  ca_certs: string[];
}

/**
 * Attested TLS (runtime/client/attested-tls.ts): what the runtime must prove before anything is sent to it. The
 * runtime's evidence (GET /v1/sys/attestation) must verify to a vendor root (or a listed simulated anchor), meet
 * the policy, run one of these measurements, and bind the TLS key of the very connection it came over.
 */
export interface RuntimeAttestation {
  /** SEV-SNP MEASUREMENT values the runtime may run (48-byte hex). One of these or tdxMrTd is required. */
  snpMeasurements?: string[];
  /**
   * TDX MRTD values the runtime may run (48-byte hex). MRTD is the TD firmware only: `policy` must also pin
   * tdx.rtmr1 and tdx.rtmr2 (kernel; command line and initrd) and, against Intel's roots, the instance
   * (tdx.mrConfigId / mrOwner / mrOwnerConfig) unless allowAnyInstance.
   */
  tdxMrTd?: string[];
  /**
   * SEV-SNP HOST_DATA (32-byte hex) the runtime VM was launched with. A measurement names the code, not the
   * instance: anyone can launch the same public image. The deployer sets HOST_DATA at launch to a value unique
   * to its deployment, so another instance of the same image (initialised by someone else) is refused.
   */
  snpHostData?: string;
  /**
   * Accept any instance of the expected image: HOST_DATA is then not required. Only for platforms where the
   * deployer cannot choose HOST_DATA at launch; without it (and without snpHostData) an SEV-SNP expectation
   * against real roots is refused (attested-tls.ts instanceBindingCheck).
   */
  allowAnyInstance?: boolean;
  /**
   * The runtime's instance id (32-byte hex) the deployer learnt from its attested evidence right after it
   * initialised it: the runtime binds it into REPORT_DATA while unsealed. HOST_DATA is public, so a host with
   * genuine hardware can launch a twin (same image, same HOST_DATA) and initialise it itself; the twin has
   * another instance id and is refused (check `runtime.instance-id`). A sealed runtime reports none and is
   * refused too when this is given.
   */
  runtimeInstanceId?: string;
  /** Further appraisal policy as JSON (the `buckypaper verify --policy` form); measurements go in the lists above. */
  policy?: string;
  /** Simulated SEV-SNP anchors: tests and the local stack only (every verdict then says simulated). */
  simulatedAnchors?: SimulatedPlatformAnchor[];
  /** AMD KDS for the VCEK chain: "online" (default), "offline" (cache only) or "off" (evidence only). */
  kds?: string;
  /** Every replica of the runtime: each one is verified before anything is sent to any. Default: the url alone. */
  replicaUrls?: string[];
}

/** Where the runtime is, how to trust it and how to authenticate: a token, or the deployer credential. */
export interface RuntimeConnection extends RuntimeTrust {
  /** Base URL, e.g. https://127.0.0.1:8200 (no /v1). */
  url: string;
  /** Token sent as X-Vault-Token (an operator's token). Either this or `deployer`. */
  token?: string;
  /**
   * The deployer credential a `Vhsm` set up at init (runtime/client/deployer.ts): each run signs a short
   * JWT with the deployer's private key (kept outside Pulumi state) and logs in for a short-lived token.
   */
  deployer?: DeployerAuth;
  /** Attested TLS expectations: with them, the runtime is verified before anything is sent (with caPem/caFingerprint: both). */
  attestation?: RuntimeAttestation;
}
