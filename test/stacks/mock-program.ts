// Runs an example stack program (stacks/<name>/index.ts) under pulumi.runtime.setMocks with its
// Pulumi.<stack>.yaml config, recording every resource it registers. Used by test/stacks and by
// bench/pulumi-preview.bench.ts. The mocks are installed before the program is imported: resources
// created before setMocks never resolve (reference/pulumi-notes.md).
// Erasable TypeScript only: the bench runs this file with Node's type stripping.
import { readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";

export interface Recorded {
  type: string;
  name: string;
  inputs: Record<string, unknown>;
}

/** Outputs real providers compute, per resource type (ids are added for every resource). */
const COMPUTED: Record<string, (inputs: Record<string, unknown>, name: string) => Record<string, unknown>> = {
  "aws:ec2/instance:Instance": (_i, n) => ({
    privateIp: "10.0.1.10",
    availabilityZone: "us-east-2a",
    arn: `arn:aws:ec2:us-east-2:123456789012:instance/i-${n}`,
  }),
  "gcp:compute/instance:Instance": (_i, n) => ({ instanceId: `${n.length}1234567890` }),
  "azure-native:compute:VirtualMachine": () => ({ vmId: "00000000-0000-4000-8000-000000000001" }),
  "azure-native:network:NetworkInterface": () => ({ ipConfigurations: [{ privateIPAddress: "10.1.0.4" }] }),
  "azure-native:network:Subnet": (_i, n) => ({
    id: `/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/${n}`,
  }),
  "pulumi-nodejs:dynamic/buckypaper:RuntimeService": () => ({
    rootToken: "hvs.mock-root-token",
    caPem: "-----BEGIN CERTIFICATE-----\nmock\n-----END CERTIFICATE-----\n",
    caFingerprint: "ab".repeat(32),
    unsealKeys: ["mock-unseal"],
  }),
  "pulumi-nodejs:dynamic/buckypaper:Workload": (i) => ({
    version: 1,
    policyHash: "00".repeat(32),
    aclPolicy: `nitride-workload-${String(i.workloadId)}`,
  }),
  "command:remote:Command": () => ({ stdout: "" }),
};

/** Reads stacks/<dir>/Pulumi.yaml and Pulumi.<stack>.yaml: the project name and its config ("ns:key" → string). */
export function loadStackConfig(dir: string, stack: string): { project: string; config: Record<string, string> } {
  const project = String((parse(readFileSync(path.join(dir, "Pulumi.yaml"), "utf8")) as { name: string }).name);
  const doc = (parse(readFileSync(path.join(dir, `Pulumi.${stack}.yaml`), "utf8")) ?? {}) as {
    config?: Record<string, unknown>;
  };
  const config: Record<string, string> = {};
  for (const [k, v] of Object.entries(doc.config ?? {})) {
    if (v && typeof v === "object" && "secure" in v)
      throw new Error(
        `${dir}/Pulumi.${stack}.yaml: ${k} is an encrypted value; example stack files keep secrets out (pulumi config set --secret)`,
      );
    const key = k.includes(":") ? k : `${project}:${k}`;
    config[key] = typeof v === "string" ? v : JSON.stringify(v);
  }
  return { project, config };
}

export interface ProgramRun {
  resources: Recorded[];
  /** The program module's exports (Outputs). */
  exports: Record<string, unknown>;
}

/**
 * Runs a program file under mocks. `config` are extra/overriding values; `secrets` are config values
 * the program reads with requireSecret (set as secret config, as `pulumi config set --secret` would).
 * `preview`: the mocks report a preview (unknown computed outputs), as `pulumi preview` does.
 */
export async function runProgram(o: {
  program: string;
  project: string;
  stack: string;
  config: Record<string, string>;
  secrets?: Record<string, string>;
  preview?: boolean;
}): Promise<ProgramRun> {
  const resources: Recorded[] = [];
  const secretKeys = Object.keys(o.secrets ?? {}).map((k) => (k.includes(":") ? k : `${o.project}:${k}`));
  const all: Record<string, string> = { ...o.config };
  for (const [k, v] of Object.entries(o.secrets ?? {})) all[k.includes(":") ? k : `${o.project}:${k}`] = v;
  pulumi.runtime.setAllConfig(all, secretKeys);
  await pulumi.runtime.setMocks(
    {
      newResource(args) {
        resources.push({ type: args.type, name: args.name, inputs: args.inputs });
        return {
          id: `${args.name}-id`,
          state: { ...args.inputs, ...(COMPUTED[args.type]?.(args.inputs, args.name) ?? {}) },
        };
      },
      call(args) {
        if (args.token === "aws:ec2/getAmi:getAmi")
          return { id: "ami-0123456789abcdef0", bootMode: "uefi", ...args.inputs };
        return args.inputs;
      },
    },
    o.project,
    o.stack,
    o.preview ?? false,
  );
  // A query string makes each run a fresh module instance (the bench runs one program many times).
  const url = `${pathToFileURL(o.program).href}?run=${Math.random().toString(36).slice(2)}`;
  const exports = (await import(url)) as Record<string, unknown>;
  // Done when the RPC queue drains, as the language host decides for a real program (registrations
  // made in apply callbacks count). disconnect() waits for that, then closes the mock monitor.
  await pulumi.runtime.disconnect();
  return { resources, exports };
}

/** The mock engine's secret sentinel (what a secret input looks like to a provider). */
export function isSecretValue(v: unknown): boolean {
  return (
    typeof v === "object" &&
    v !== null &&
    (v as Record<string, unknown>)["4dabf18193072939515e22adb298388d"] === "1b47061264138c4ac30d75fd1eb44270"
  );
}

/** Inputs with every secret value replaced by "[secret]": what would be in clear in state and previews. */
export function inClear(v: unknown): unknown {
  if (isSecretValue(v)) return "[secret]";
  if (Array.isArray(v)) return v.map(inClear);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, inClear(x)]));
  return v;
}

/** Inputs with secret wrappers removed (the values a provider would receive). */
export function revealed(v: unknown): unknown {
  if (isSecretValue(v)) return revealed((v as { value: unknown }).value);
  if (Array.isArray(v)) return v.map(revealed);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, revealed(x)]));
  return v;
}
