// The VhsmGuest dynamic resource (handlers in provider/vhsm-guest-handlers.ts): the vHSM runtime in its own
// real QEMU guest of the local stack, verified over attested TLS before anything is sent, then bootstrapped
// (deployer credential, encrypted recovery shares, root token revoked). Used by the Vhsm component in mode
// confidential-vm, platform local. Same closure rule as the other providers: kind and handlers' path only.
import { fileURLToPath } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import { handlerProvider } from "./dynamic.js";
import type { RuntimeAttestationArgs, RuntimeBootstrapArgs } from "./resources.js";
import { AttestedRuntimeResource } from "./attested-resource.js";
import type { SupervisedGuestArgs } from "./local-vm.js";

const provider = handlerProvider(fileURLToPath(new URL("./vhsm-guest-handlers.js", import.meta.url)), "vhsm-guest");

/**
 * The guest (as every supervised guest: baseImage is the runtime image, the data disk the runtime's), what it
 * must prove, and the same bootstrap inputs as the runtime service process.
 */
export interface VhsmGuestArgs extends SupervisedGuestArgs, RuntimeBootstrapArgs {
  /**
   * The runtime's name, `<project>/<stack>/<resource name>`: with a random id made once at create (kept in
   * state) it is the instance identity whose SHA-256 is the guest's SEV-SNP HOST_DATA (provider/vhsm-instance.ts).
   */
  instanceName: pulumi.Input<string>;
  /** GiB of the runtime's data disk (required here). */
  dataDiskGb: pulumi.Input<number>;
  /** https://127.0.0.1:<port>: argv's hostfwd forwards this loopback port to the runtime's listener. */
  url: pulumi.Input<string>;
  /**
   * What the runtime must prove: the measurement computed from `argv`'s boot inputs, the platform's anchor.
   * Without snpHostData / allowAnyInstance: the resource adds its instance's HOST_DATA (output `snpHostData`).
   */
  attestation: pulumi.Input<RuntimeAttestationArgs>;
  /** Seconds to wait for the runtime's listener (default 1500). */
  timeoutSeconds?: pulumi.Input<number>;
}

export class VhsmGuest extends AttestedRuntimeResource {
  /** The instance id made at create (not a secret): HOST_DATA = SHA-256 of it and `instanceName`. */
  declare readonly instanceId: pulumi.Output<string>;
  /** The HOST_DATA the guest was launched with and every verifier requires (64 hex digits). */
  declare readonly snpHostData: pulumi.Output<string>;
  /** What the simulated PSP measured from the files QEMU was started with. */
  declare readonly launchMeasurement: pulumi.Output<string>;
  declare readonly pid: pulumi.Output<number>;
  declare readonly qemuPid: pulumi.Output<number>;
  declare readonly accel: pulumi.Output<string>;
  declare readonly kernelMeasured: pulumi.Output<boolean>;
  declare readonly bootSeconds: pulumi.Output<number>;
  declare readonly consoleLog: pulumi.Output<string>;
  declare readonly running: pulumi.Output<boolean>;

  constructor(name: string, args: VhsmGuestArgs, opts?: pulumi.CustomResourceOptions) {
    const outputs = [
      "instanceId",
      "snpHostData",
      "launchMeasurement",
      "pid",
      "qemuPid",
      "accel",
      "kernelMeasured",
      "bootSeconds",
      "consoleLog",
      "running",
    ];
    super(provider, "VhsmGuest", name, args, outputs, opts);
  }
}
