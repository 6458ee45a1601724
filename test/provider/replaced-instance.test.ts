// A replaced cloud instance that attaches the old data volume (docs/trust-bootstrap.md, "A replaced instance and the
// old data volume"): the new runtime process finds the storage of the earlier bootstrap — initialised, sealed, a new
// listener key. The provider's AttestedRuntime create for the new launch verifies it (sealed: no instance id to
// compare) and then refuses to bootstrap it, naming why, before making a recovery key or sending anything. The old
// resource's delete (Pulumi deletes it before creating the new one) keeps its local recovery key and share beside
// each other instead of deleting them: they still unseal it, and the old instance (its id) is what comes back. A real
// HTTPS runtime with attested TLS (simulated SNP) on one SQLite file standing for the data volume.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { check, create, remove } from "../../provider/attested-runtime-handlers.js";
import { runtimeRequest } from "../../provider/client.js";
import { decryptShare } from "../../runtime/client/recovery-share.js";
import type { RunningServer } from "../../runtime/server/http/server.js";
import type { SnpSimulator } from "../../runtime/sim/snp.js";
import type { RuntimeAttestation } from "../../runtime/client/connection.js";
import { expectationFor, startAttestedRuntime } from "../runtime/attested-runtime-support.js";

let dir: string;
let sim: SnpSimulator;
let first: RunningServer | undefined;
let replaced: RunningServer | undefined;

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "bk-replaced-"));
});
afterAll(async () => {
  await first?.close();
  await replaced?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const storage = () => `storage "sqlite" { path = "${path.join(dir, "bkdata.db")}" }`;
// On EC2 HOST_DATA is zero and every instance of the image has the same launch digest: allowAnyInstance.
const expectation = (o: Partial<RuntimeAttestation> = {}): RuntimeAttestation => ({
  ...expectationFor(sim),
  allowAnyInstance: true,
  ...o,
});
const inputs = (url: string, tag: string) => {
  const r = check("attested-runtime", {
    url,
    attestation: expectation(),
    launch: `aws:i-${tag}`,
    deployerKeyFile: path.join(dir, `${tag}-deployer.pem`),
    localRecoveryKeyFile: path.join(dir, `${tag}-recovery.jwk`),
    rootWrites: [{ path: "nitride/config", body: { kds: "off" } }],
    timeoutSeconds: 10,
  });
  expect(r.failures).toEqual([]);
  return r.inputs;
};

describe("a replaced instance attaching the old data volume", () => {
  it("is verified, refused as a fresh bootstrap (nothing made, nothing sent), and opens with the old bootstrap's share", async () => {
    ({ server: first, sim } = await startAttestedRuntime({ storage: storage() }));
    const { id, outs } = await create("attested-runtime", inputs(first.url, "old"));
    const oldInstance = outs.runtimeInstanceId as string;
    await first.close();
    first = undefined;
    // A new AMI replaces the instance; the launch and the EK change, so Pulumi replaces the AttestedRuntime — delete
    // first. The volume follows the zone and stays: the recovery key and its share are kept beside, not deleted.
    await remove("attested-runtime", id, outs);
    expect(existsSync(path.join(dir, "old-recovery.jwk"))).toBe(false);
    expect(existsSync(path.join(dir, "old-deployer.pem"))).toBe(false);
    const retired = path.join(dir, `old-recovery.retired-${oldInstance.slice(0, 16)}`);
    for (const f of [`${retired}.jwk`, `${retired}.share.jwe`]) expect(statSync(f).mode & 0o777, f).toBe(0o600);
    expect(readFileSync(`${retired}.share.jwe`, "utf8").trim()).toBe((outs.recoveryShares as string[])[0]);

    // The new instance boots the same image, finds the volume (bkdata), starts sealed with a new listener key.
    ({ server: replaced } = await startAttestedRuntime({ storage: storage() }));
    const conn = { url: replaced.url, token: "-", attestation: expectation() };
    const status = (await runtimeRequest(conn, "GET", "sys/seal-status")).body as Record<string, unknown>;
    expect(status).toMatchObject({ initialized: true, sealed: true, unseal_key_check: null });

    const e = await create("attested-runtime", inputs(replaced.url, "new")).catch((x: unknown) => x as Error);
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).message).toMatch(
      /is already initialised and sealed: it found the data of an earlier bootstrap .*nothing was sent.*opens only with that bootstrap's recovery shares/,
    );
    // No recovery key or deployer key made for a bootstrap that cannot happen; the runtime still sealed.
    expect(existsSync(path.join(dir, "new-recovery.jwk"))).toBe(false);
    expect(existsSync(path.join(dir, "new-deployer.pem"))).toBe(false);
    expect(((await runtimeRequest(conn, "GET", "sys/seal-status")).body as { sealed: boolean }).sealed).toBe(true);

    // The old bootstrap's share and the recovery key that opens it, as kept: they unseal it, the old instance is back.
    const jwk = JSON.parse(readFileSync(`${retired}.jwk`, "utf8"));
    const key = (await decryptShare(readFileSync(`${retired}.share.jwe`, "utf8").trim(), jwk)).key;
    const unsealed = (await runtimeRequest(conn, "POST", "sys/unseal", { key })).body as Record<string, unknown>;
    expect(unsealed.sealed).toBe(false);
    expect(replaced.core.instanceId?.toString("hex")).toBe(oldInstance);
    // Verified as that instance (its id required), as every client that knew it does.
    const again = await runtimeRequest(
      { url: replaced.url, token: "-", attestation: expectation({ runtimeInstanceId: oldInstance }) },
      "GET",
      "sys/seal-status",
    );
    expect((again.body as { sealed: boolean }).sealed).toBe(false);
  }, 120_000);
});
