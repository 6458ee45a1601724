// InstanceTpmEk: the NitroTPM EK of an EC2 instance, read with GetInstanceTpmEkPub after the instance exists
// (handlers: aws-ek.ts). Type token: pulumi-nodejs:dynamic/buckypaper:InstanceTpmEk.
import { fileURLToPath } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import { handlerProvider } from "./dynamic.js";

const HANDLERS_PATH = fileURLToPath(new URL("./aws-ek.js", import.meta.url));
const provider = handlerProvider(HANDLERS_PATH, "instanceTpmEk");

export interface InstanceTpmEkArgs {
  instanceId: pulumi.Input<string>;
  region: pulumi.Input<string>;
  /** "rsa-2048" (default) or "ecc-sec-p384". */
  keyType?: pulumi.Input<string>;
  /** EC2 API endpoint override (a VPC interface endpoint). */
  endpoint?: pulumi.Input<string>;
}

export class InstanceTpmEk extends pulumi.dynamic.Resource {
  /** base64 TPMT_PUBLIC of the EK (the AWS component's ekPublicTpmt form). */
  declare readonly ekPublicTpmt: pulumi.Output<string>;
  /** TPM Name (hex) of the EK: what policy vtpm.ekNames holds. */
  declare readonly ekName: pulumi.Output<string>;

  constructor(name: string, args: InstanceTpmEkArgs, opts?: pulumi.CustomResourceOptions) {
    super(provider, name, { ...args, ekPublicTpmt: undefined, ekName: undefined }, opts, "buckypaper", "InstanceTpmEk");
  }
}
