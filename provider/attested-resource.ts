// The outputs every runtime that proves what it runs has — the local stack's runtime guest (VhsmGuest) and a
// runtime on SEV-SNP hardware (AttestedRuntime) — and how they are declared: what its evidence was verified
// against, the bootstrap's public results, and the opt-out's root token and unseal keys as secret outputs.
import * as pulumi from "@pulumi/pulumi";
import type { DeployerAuthArgs } from "./resources.js";

const ATTESTED_RUNTIME_OUTPUTS = [
  "measurement",
  "tlsKeySha256",
  "simulated",
  "verifiedBy",
  "verifiedAt",
  "checks",
  "hostData",
  "runtimeInstanceId",
  "deployer",
  "workloadAudience",
  "recoveryShares",
  "rootToken",
  "unsealKeys",
  "unsealKeyCheck",
  "retiredRecoveryShares",
];

export abstract class AttestedRuntimeResource extends pulumi.dynamic.Resource {
  declare readonly url: pulumi.Output<string>;
  /** MEASUREMENT the runtime's evidence reported (equal to the expected one, or create failed). */
  declare readonly measurement: pulumi.Output<string>;
  /** SHA-256 of the TLS key (SPKI) the evidence binds: what every request is pinned to. */
  declare readonly tlsKeySha256: pulumi.Output<string>;
  declare readonly simulated: pulumi.Output<boolean>;
  declare readonly verifiedBy: pulumi.Output<string>;
  declare readonly verifiedAt: pulumi.Output<string>;
  declare readonly checks: pulumi.Output<string[]>;
  /** HOST_DATA the runtime's SEV-SNP report carried when the deployer verified it (hex; absent for TDX). */
  declare readonly hostData: pulumi.Output<string | undefined>;
  /**
   * The runtime's instance id (hex), bound in its evidence right after the deployer initialised it: public; every
   * verifier given it refuses a twin of the runtime (same image, same HOST_DATA, initialised by someone else).
   */
  declare readonly runtimeInstanceId: pulumi.Output<string>;
  declare readonly deployer: pulumi.Output<DeployerAuthArgs | undefined>;
  /** What a JWT role binds to admit the runtime's Nitride workload tokens (its per-runtime audience). */
  declare readonly workloadAudience: pulumi.Output<string | undefined>;
  declare readonly recoveryShares: pulumi.Output<string[] | undefined>;
  /** Only with insecureKeepRootTokenInState. */
  declare readonly rootToken: pulumi.Output<string | undefined>;
  declare readonly unsealKeys: pulumi.Output<string[] | undefined>;
  /** Check value of the unseal key `recoveryShares` are shares of (the runtime's sys/seal-status unseal_key_check). */
  declare readonly unsealKeyCheck: pulumi.Output<string | undefined>;
  /**
   * Shares a rekey replaced (provider/recovery-freshness.ts), with the check of their key: they open only data from
   * before that rekey. Secret: with the insecure opt-out they hold the plain unseal keys.
   */
  declare readonly retiredRecoveryShares: pulumi.Output<unknown[] | undefined>;

  /** `outputs`: the resource's own outputs besides the shared ones. */
  protected constructor(
    provider: pulumi.dynamic.ResourceProvider,
    type: string,
    name: string,
    args: object,
    outputs: string[],
    opts?: pulumi.CustomResourceOptions,
  ) {
    const outs = Object.fromEntries([...ATTESTED_RUNTIME_OUTPUTS, ...outputs].map((k) => [k, undefined]));
    super(
      provider,
      name,
      { ...args, ...outs },
      {
        ...opts,
        additionalSecretOutputs: [
          ...(opts?.additionalSecretOutputs ?? []),
          "rootToken",
          "unsealKeys",
          "retiredRecoveryShares",
        ],
      },
      "buckypaper",
      type,
    );
  }
}
