// pulumi.runtime.setMocks harness: records every resource the program registers. The mocks must be
// in place before the code under test is imported (resources created earlier never resolve), so
// tests call installMocks() first and import components dynamically afterwards.
import * as pulumi from "@pulumi/pulumi";

export interface RecordedResource {
  type: string;
  name: string;
  inputs: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export interface MockHarness {
  resources: RecordedResource[];
  calls: { token: string; inputs: Record<string, unknown> }[];
  byType(type: string): RecordedResource[];
  one(type: string): RecordedResource;
}

/** Extra outputs per resource type that real providers would compute. */
export type ComputedOutputs = Record<
  string,
  (inputs: Record<string, unknown>, name: string) => Record<string, unknown>
>;

export async function installMocks(
  computed: ComputedOutputs = {},
  config: Record<string, string> = {},
  /** The id a resource gets (default `<name>-id`), e.g. an EC2 instance id a policy parser checks the form of. */
  idFor: (type: string, name: string) => string = (_t, name) => `${name}-id`,
  /** Results of provider functions by token (e.g. aws:ec2/getAmi:getAmi), in place of the defaults below. */
  calls: Record<string, (inputs: Record<string, any>) => Record<string, unknown>> = {}, // eslint-disable-line @typescript-eslint/no-explicit-any
): Promise<MockHarness> {
  const h: MockHarness = {
    resources: [],
    calls: [],
    byType: (t) => h.resources.filter((r) => r.type === t),
    one: (t) => {
      const all = h.byType(t);
      if (all.length !== 1)
        throw new Error(`expected one ${t}, got ${all.length}: ${h.resources.map((r) => r.type).join(", ")}`);
      return all[0];
    },
  };
  pulumi.runtime.setAllConfig(config);
  await pulumi.runtime.setMocks(
    {
      newResource(args) {
        h.resources.push({ type: args.type, name: args.name, inputs: args.inputs });
        const extra = computed[args.type]?.(args.inputs, args.name) ?? {};
        return { id: idFor(args.type, args.name), state: { ...args.inputs, ...extra } };
      },
      call(args) {
        h.calls.push({ token: args.token, inputs: args.inputs });
        const custom = calls[args.token];
        if (custom) return custom(args.inputs);
        if (args.token === "aws:ec2/getAmi:getAmi") {
          // A lookup by id (a program-given AMI, checked at preview): that AMI, UEFI + NitroTPM.
          const byId = (args.inputs.filters as { name: string; values: string[] }[] | undefined)?.find(
            (f) => f.name === "image-id",
          );
          if (byId) return { id: byId.values[0], bootMode: "uefi", tpmSupport: "v2.0" };
          return { id: "ami-0123456789abcdef0", bootMode: "uefi-preferred", ...args.inputs };
        }
        return args.inputs;
      },
    },
    "buckypaper-test",
    "unit",
    false,
  );
  return h;
}

/** Resolves an Output in a mocked program. */
export function resolve<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((r) =>
    o.apply((v) => {
      r(v);
      return v;
    }),
  );
}

/** Whether an input recorded by the mock is the engine's secret sentinel. */
export function isSecretSentinel(v: unknown): boolean {
  return (
    typeof v === "object" &&
    v !== null &&
    (v as Record<string, unknown>)["4dabf18193072939515e22adb298388d"] === "1b47061264138c4ac30d75fd1eb44270"
  );
}

/**
 * Unwraps nested secret sentinels. The sentinels exist only at runtime (a secret input is typed as
 * its value), so the result keeps the type of what was passed in.
 */
export function unsecret<T>(v: T): T {
  return unwrapSecrets(v) as T;
}

function unwrapSecrets(v: unknown): unknown {
  if (isSecretSentinel(v)) return unwrapSecrets((v as { value: unknown }).value);
  if (Array.isArray(v)) return v.map(unwrapSecrets);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrapSecrets(x)]));
  return v;
}
