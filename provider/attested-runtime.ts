// The AttestedRuntime dynamic resource (handlers in provider/attested-runtime-handlers.ts): a vHSM runtime that
// something else launched in a confidential VM on SEV-SNP hardware — a QEMU/KVM host's systemd unit or a
// Proxmox VE VM (components/qemu/vhsm-guest.ts, components/proxmox/vhsm-guest.ts) — reached at the address the
// platform gives it. create waits for its listener, verifies its attested TLS against the measurement the
// component computed from the image manifest and the exact SNP parameters (and HOST_DATA where the platform
// sets it) with the AMD VCEK chain, and only then bootstraps it as the other modes do (deployer credential,
// encrypted recovery shares, root token revoked). Same closure rule as the other providers: kind and path only.
import { fileURLToPath } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import { handlerProvider } from "./dynamic.js";
import type { RuntimeAttestationArgs, RuntimeBootstrapArgs } from "./resources.js";
import { AttestedRuntimeResource } from "./attested-resource.js";

const provider = handlerProvider(
  fileURLToPath(new URL("./attested-runtime-handlers.js", import.meta.url)),
  "attested-runtime",
);

export interface AttestedRuntimeArgs extends RuntimeBootstrapArgs {
  /** https://<address the platform gives the runtime>:<port>. */
  url: pulumi.Input<string>;
  /** What the runtime must prove: the expected measurement (never empty), HOST_DATA or the explicit
   *  allowAnyInstance, the roots (AMD's, through KDS). */
  attestation: pulumi.Input<RuntimeAttestationArgs>;
  /** What names the launch (the VM's argv / PVE parameters and the image): a change is another runtime. */
  launch: pulumi.Input<string>;
  /** Seconds to wait for the runtime's listener after the VM was started (default 900). */
  timeoutSeconds?: pulumi.Input<number>;
}

export class AttestedRuntime extends AttestedRuntimeResource {
  constructor(name: string, args: AttestedRuntimeArgs, opts?: pulumi.CustomResourceOptions) {
    super(provider, "AttestedRuntime", name, args, [], opts);
  }
}
