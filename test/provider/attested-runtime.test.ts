// The AttestedRuntime resource's handlers (provider/attested-runtime-handlers.ts): what `pulumi up` does with a
// vHSM runtime another component launched on SEV-SNP hardware (QEMU host, Proxmox VE). Hostile cases first: a
// runtime whose evidence carries another HOST_DATA (the same image launched as another instance) or another
// measurement is refused naming the check, it stays uninitialised and no key file is written here; an
// expectation that pins neither HOST_DATA nor says allowAnyInstance is refused at check. Then the genuine
// runtime is bootstrapped and its outputs hold no root token. A real HTTPS runtime with attested TLS; simulated
// SNP evidence with the HOST_DATA set at its "launch".
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { check, create, diff, remove, waitForListener } from "../../provider/attested-runtime-handlers.js";
import { runtimeRequest } from "../../provider/client.js";
import type { RunningServer } from "../../runtime/server/http/server.js";
import type { SnpSimulator } from "../../runtime/sim/snp.js";
import type { RuntimeAttestation } from "../../runtime/client/connection.js";
import { OTHER_MEASUREMENT, expectationFor, startAttestedRuntime } from "../runtime/attested-runtime-support.js";

const HOST_DATA = "1d".repeat(32);
const OTHER_HOST_DATA = "2e".repeat(32);
let server: RunningServer;
let sim: SnpSimulator;
let dir: string;

beforeAll(async () => {
  ({ server, sim } = await startAttestedRuntime({ hostData: HOST_DATA }));
  dir = mkdtempSync(path.join(os.tmpdir(), "bk-attested-runtime-"));
});
afterAll(async () => {
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const expectation = (o: Partial<RuntimeAttestation> = {}): RuntimeAttestation => ({
  ...expectationFor(sim),
  snpHostData: HOST_DATA,
  ...o,
});
const inputs = (o: Record<string, unknown> = {}) => {
  const { inputs: i, failures } = check("attested-runtime", {
    url: server.url,
    attestation: expectation(),
    launch: "launch-1",
    deployerKeyFile: path.join(dir, "deployer.pem"),
    localRecoveryKeyFile: path.join(dir, "recovery.jwk"),
    rootWrites: [{ path: "nitride/config", body: { kds: "off" } }],
    timeoutSeconds: 10,
    ...o,
  });
  expect(failures).toEqual([]);
  return i;
};

async function initialized(): Promise<boolean> {
  const r = await runtimeRequest({ url: server.url, token: "-", attestation: expectation() }, "GET", "sys/init");
  return (r.body as { initialized: boolean }).initialized;
}

describe("AttestedRuntime: the vHSM on SEV-SNP hardware, verified before it is bootstrapped", () => {
  it("check refuses an expectation without a measurement, without an instance binding, or a plain-http URL", () => {
    const bad = (o: Record<string, unknown>) =>
      check("attested-runtime", { url: server.url, attestation: expectation(), launch: "l", ...o }).failures.map(
        (f) => f.reason,
      );
    expect(bad({})).toEqual([]);
    expect(bad({ attestation: { ...expectation(), snpMeasurements: [] } })).toEqual([
      "attestation must name the expected measurement (snpMeasurements): no trust on first use",
    ]);
    expect(bad({ attestation: { ...expectation(), snpHostData: undefined } })).toEqual([
      "attestation must pin the instance (snpHostData) or say allowAnyInstance",
    ]);
    expect(bad({ attestation: { ...expectation(), snpHostData: undefined, allowAnyInstance: true } })).toEqual([]);
    expect(bad({ url: "http://10.0.0.5:8200" })).toEqual(["url must be https://<host>:<port> (attested TLS)"]);
    expect(bad({ launch: "" })).toEqual(["launch is required"]);
  });

  it("refuses the same image launched as another instance (HOST_DATA differs): nothing sent, nothing written", async () => {
    const e = await create(
      "attested-runtime",
      inputs({ attestation: expectation({ snpHostData: OTHER_HOST_DATA }) }),
    ).catch((x: unknown) => x as Error);
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).message).toMatch(
      /refused before anything was sent to it \(attested TLS\): policy\.host-data: HOST_DATA 1d1d/,
    );
    expect((e as Error).message).toContain(`HOST_DATA ${OTHER_HOST_DATA.slice(0, 16)}…`);
    expect(await initialized()).toBe(false);
    expect(existsSync(path.join(dir, "deployer.pem"))).toBe(false);
    expect(existsSync(path.join(dir, "recovery.jwk"))).toBe(false);
  });

  it("refuses a runtime with another measurement (another image or firmware): nothing sent", async () => {
    const e = await create(
      "attested-runtime",
      inputs({ attestation: expectation({ snpMeasurements: [OTHER_MEASUREMENT] }) }),
    ).catch((x: unknown) => x as Error);
    expect((e as Error).message).toMatch(
      /refused before anything was sent to it \(attested TLS\): policy\.measurement:/,
    );
    expect(await initialized()).toBe(false);
    expect(existsSync(path.join(dir, "deployer.pem"))).toBe(false);
  });

  it("a listener that never comes up is a clear timeout, not a verdict", async () => {
    await expect(waitForListener("https://127.0.0.1:1", 1, 200)).rejects.toThrow(
      /did not accept TLS within 1 s .*is the VM running and the address reachable/,
    );
  });

  it("the genuine instance: verified, then bootstrapped; no root token or unseal key in the outputs", async () => {
    const { id, outs } = await create("attested-runtime", inputs());
    expect(id).toBe(`${server.url}#launch-1`);
    expect(outs.checks as string[]).toContainEqual(expect.stringMatching(/^policy\.host-data: HOST_DATA matches/));
    expect(outs.checks as string[]).toContainEqual(expect.stringMatching(/^binding\.tls-key:/));
    expect(outs.rootToken).toBeUndefined();
    expect(outs.unsealKeys).toBeUndefined();
    expect(JSON.stringify(outs)).not.toMatch(/"(root_token|keys_base64)"/);
    expect(outs.deployer).toBeDefined();
    expect(await initialized()).toBe(true);
    // Another launch (new image, new HOST_DATA) is another runtime: replaced, never updated in place.
    const d = await diff("attested-runtime", outs, { ...outs, launch: "launch-2" });
    expect(d).toEqual({ changes: true, replaces: ["launch"], deleteBeforeReplace: true });
    expect((await diff("attested-runtime", outs, { ...outs })).changes).toBe(false);
    await remove("attested-runtime", id, outs);
    expect(existsSync(path.join(dir, "deployer.pem"))).toBe(false);
    expect(existsSync(path.join(dir, "recovery.jwk"))).toBe(false);
  });
});
