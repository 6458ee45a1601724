// The instance's NitroTPM endorsement key from EC2's GetInstanceTpmEkPub (@aws-sdk/client-ec2), read once the
// instance exists, so the AWS component can register it as an EK pin (policy vtpm.ekNames) with the workload it
// registers after the instance. The handlers of the InstanceTpmEk dynamic resource (aws-ek-resource.ts); loaded by
// path in the dynamic-provider process, like handlers.ts.
//
// What it is used for: EK credential activation (policy vtpm.ekPublics; runtime/attestation/tpm/ek-credential.ts):
// Nitride makes a credential for this EK and the AK's Name, and only this instance's NitroTPM can activate it —
// which authenticates the AK as that TPM's key; plus the EK-name consistency pin (vtpm.ekNames, aws/ek.ts). The
// value comes from the EC2 API with the deployer's credentials: AWS is trusted for it (nothing chains the NitroTPM
// EK to a hardware root), as for the NitroTPM itself.
import { EC2Client, GetInstanceTpmEkPubCommand, type GetInstanceTpmEkPubCommandOutput } from "@aws-sdk/client-ec2";
import { ekNameFromTpmt } from "../runtime/attestation/aws/ek.js";
import { credentialEk } from "../runtime/attestation/tpm/credential.js";

type Props = Record<string, unknown>;

export const EK_KEY_TYPES = ["rsa-2048", "ecc-sec-p384"] as const;
const INSTANCE_ID = /^i-[0-9a-f]{8,17}$/;

export class InstanceEkError extends Error {
  override name = "InstanceEkError";
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`InstanceTpmEk ${field}: ${message}`);
  }
}

export interface InstanceEkInputs {
  instanceId: string;
  region: string;
  keyType?: (typeof EK_KEY_TYPES)[number];
  /** EC2 API endpoint override (a VPC interface endpoint); default the region's public endpoint. */
  endpoint?: string;
}

export interface InstanceEk {
  /** base64 TPMT_PUBLIC, as `aws ec2 get-instance-tpm-ek-pub --key-format tpmt` prints it (the ekPublicTpmt prop). */
  ekPublicTpmt: string;
  /** Its TPM Name (hex): what the policy's vtpm.ekNames holds. */
  ekName: string;
}

/** Validates what EC2 answered (the instance asked about, the TPMT format, a parseable TPMT_PUBLIC). */
export function instanceEkFromAnswer(i: InstanceEkInputs, r: GetInstanceTpmEkPubCommandOutput): InstanceEk {
  if (r.InstanceId !== i.instanceId)
    throw new InstanceEkError("instanceId", `EC2 answered for ${String(r.InstanceId)}, not ${i.instanceId}`);
  if (r.KeyFormat !== "tpmt") throw new InstanceEkError("keyFormat", `EC2 answered ${String(r.KeyFormat)}, not tpmt`);
  if (r.KeyType !== (i.keyType ?? "rsa-2048"))
    throw new InstanceEkError("keyType", `EC2 answered ${String(r.KeyType)}, not ${i.keyType ?? "rsa-2048"}`);
  const b64 = (r.KeyValue ?? "").replace(/\s+/g, "");
  const bytes = Buffer.from(b64, "base64");
  if (!b64 || bytes.toString("base64") !== b64) throw new InstanceEkError("keyValue", "is not base64");
  let ekName: string;
  try {
    ekName = ekNameFromTpmt(bytes);
  } catch (e) {
    throw new InstanceEkError("keyValue", `is not a TPMT_PUBLIC: ${(e as Error).message}`);
  }
  try {
    credentialEk(bytes, "keyValue");
  } catch (e) {
    throw new InstanceEkError(
      "keyValue",
      `is not an endorsement key a credential can be made for: ${(e as Error).message}`,
    );
  }
  return { ekPublicTpmt: b64, ekName };
}

function inputsOf(p: Props): InstanceEkInputs {
  const instanceId = String(p.instanceId ?? "");
  if (!INSTANCE_ID.test(instanceId))
    throw new InstanceEkError("instanceId", `'${instanceId}' is not an EC2 instance id`);
  const region = String(p.region ?? "");
  if (!/^[a-z]{2}(-[a-z]+)+-\d$/.test(region)) throw new InstanceEkError("region", `'${region}' is not an AWS region`);
  const keyType = (p.keyType ?? "rsa-2048") as InstanceEkInputs["keyType"];
  if (!EK_KEY_TYPES.includes(keyType!))
    throw new InstanceEkError("keyType", `must be one of ${EK_KEY_TYPES.join(", ")}`);
  const endpoint = p.endpoint === undefined ? undefined : String(p.endpoint);
  if (endpoint !== undefined && !/^https?:\/\/[^\s]+$/.test(endpoint))
    throw new InstanceEkError("endpoint", "must be an http(s) URL");
  return { instanceId, region, keyType, ...(endpoint ? { endpoint } : {}) };
}

/** Calls GetInstanceTpmEkPub (TPMT format) with the default credential chain. */
export async function fetchInstanceEk(i: InstanceEkInputs): Promise<InstanceEk> {
  const client = new EC2Client({ region: i.region, ...(i.endpoint ? { endpoint: i.endpoint } : {}) });
  try {
    const r = await client.send(
      new GetInstanceTpmEkPubCommand({
        InstanceId: i.instanceId,
        KeyType: i.keyType ?? "rsa-2048",
        KeyFormat: "tpmt",
      }),
    );
    return instanceEkFromAnswer(i, r);
  } finally {
    client.destroy();
  }
}

// ---- dynamic-provider handlers (provider/dynamic.ts shape) ----

export function check(_kind: string, news: Props) {
  return { inputs: news, failures: [] };
}

export function diff(_kind: string, olds: Props, news: Props) {
  const replaces = ["instanceId", "region", "keyType", "endpoint"].filter((k) => olds[k] !== news[k]);
  return { changes: replaces.length > 0, replaces, deleteBeforeReplace: false };
}

export async function create(_kind: string, p: Props) {
  const i = inputsOf(p);
  const ek = await fetchInstanceEk(i);
  return { id: `${i.instanceId}/${i.keyType}`, outs: { ...p, ...ek } };
}

/** The EK of an instance does not change: what was read at create stays. */
export async function read(_kind: string, id: string, props: Props) {
  return { id, props };
}

export async function update(_kind: string, _id: string, _olds: Props, news: Props) {
  return { outs: news };
}

/** Nothing to delete at AWS: the pin goes with the workload that registered it. */
export async function remove(): Promise<void> {}
