// The local stack's default where guests can run, on the real Pulumi engine: the vHSM runtime itself in a real
// QEMU guest (Vhsm mode confidential-vm, platform local). `pulumi up` computes its measurement from the guest's
// argv, verifies its attested TLS (simulated platform root → report with that measurement → REPORT_DATA binds
// a fresh nonce and the TLS key) before sending anything, then bootstraps it over connections pinned to that
// key — the deployer credential, one recovery share encrypted to a local key, the root token revoked: none of
// them in state. The workload guests `web` and `db` reach it through their guestfwd → the runtime guest's
// hostfwd, and their enclaivelets verify the runtime's evidence from their user-data (no CA fingerprint in it)
// before attesting themselves. Tamper: a second stack whose runtime guest boots with one firmware byte
// changed — `pulumi up` fails with the failed check, the guest is stopped, no credential is made.
// Prerequisites (QEMU, OVMF, root, image tooling, the Pulumi engine): skipped visibly here when missing, a
// failure under CI=true.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { holdGuestSlots } from "../../support/guest-slots.js";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { requireTool } from "../../support/prereq.js";
import { pulumiBinDir, type PulumiRunner } from "../../provider/engine.js";
import { realGuestSupport } from "../../../runtime/sim/qemu/local-image.js";
import { amdSevFirmware } from "../../../runtime/sim/qemu/runtime-image.js";
import { localVhsmGuestSupport } from "../../../components/local/vhsm-guest.js";
import { firmwareWithOneByteChanged } from "../../../components/local/tamper.js";
import { runtimeExpectation, verifyRuntime } from "../../../runtime/client/attested-tls.js";
import { instanceHostData, newInstanceId } from "../../../provider/vhsm-instance.js";
import { freePort } from "../../support/net.js";
import type { VhsmAttestationOut, VmOut } from "../../../stacks/local/summary.js";
import { alive, initLocalStack, localSummary, stackOutputs, ROOT } from "./support.js";

const support = realGuestSupport();
const vhsmSupport = localVhsmGuestSupport(ROOT);
const ready =
  requireTool("Pulumi engine (scripts/setup-pulumi.sh)", pulumiBinDir() !== undefined) &&
  requireTool(`real QEMU guests (${support.reason})`, support.ok) &&
  requireTool(`the runtime's verity guest image (${vhsmSupport.reason})`, vhsmSupport.ok) &&
  requireTool("compiled package (npm run build)", existsSync(path.join(ROOT, "dist/runtime/server/http/main.js")));

interface Outputs {
  runtimeUrl: string;
  runtimeCaFingerprint: string;
  auditLog: string;
  simulatedArkSha256: string;
  vhsmMode: { mode: string; reason: string };
  vhsmAttestation: VhsmAttestationOut;
  vm: Record<string, VmOut>;
}

describe.runIf(ready)("stacks/local with the vHSM runtime in an attested QEMU guest", () => {
  holdGuestSlots(3, "attested-vhsm"); // 3 guest(s) at once: see test/support/guest-slots.ts
  let tmp: string;
  let stateDir: string;
  let configHome: string;
  let pulumi: PulumiRunner;
  let cfg: string[];
  let stack: string;
  let out: Outputs;
  let summary: string;
  let runtimeQemuPid: number;

  const outputs = () => stackOutputs<Outputs>({ pulumi, stack });

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), "bk-local-attested-"));
    // The deployer key and the local recovery key go under XDG_CONFIG_HOME: this test's own directory.
    configHome = path.join(tmp, "config");
    process.env.XDG_CONFIG_HOME = configHome;
    ({ pulumi, stack, cfg, stateDir } = await initLocalStack(tmp, {
      name: `a${process.pid}`,
      passphrase: "attested-test",
    }));
    await pulumi.ok(["config", "set", ...cfg, "sshPort", String(await freePort())]);
    // vms real; the vHSM follows it (the default): the runtime in its attested guest. No tamper guests here.
    await pulumi.ok(["config", "set", ...cfg, "vms", "real"]);
    await pulumi.ok(["config", "set", ...cfg, "tamperDemo", "false"]);
    const r = await pulumi.ok(["up", "--yes", "--skip-preview", ...cfg], { timeoutMs: 2_400_000 });
    expect(r.stdout).toMatch(
      /measured the vHSM runtime guest: firmware \S+ \+ kernel\/initrd\/cmdline \(dm-verity root hash\).*→ [0-9a-f]{16}…/,
    );
    out = await outputs();
    summary = localSummary(out);
    runtimeQemuPid = Number(JSON.parse(readFileSync(path.join(stateDir, "vhsm", "status.json"), "utf8")).qemuPid);
  }, 2_500_000);

  afterAll(async () => {
    if (!pulumi) return;
    const d = await pulumi.run(["destroy", "--yes", "--skip-preview", ...cfg], { timeoutMs: 300_000 });
    if (d.code !== 0) console.error(`destroy failed:\n${d.stdout.slice(-3000)}\n${d.stderr.slice(-2000)}`);
    // Never leave a guest behind on a shared machine, whatever destroy did (the test fails on it elsewhere).
    const vmDirs = existsSync(path.join(stateDir, "vms"))
      ? readdirSync(path.join(stateDir, "vms")).map((n) => path.join(stateDir, "vms", n))
      : [];
    for (const dir of [path.join(stateDir, "vhsm"), path.join(tmp, "tamper", "vhsm"), ...vmDirs]) {
      try {
        const st = JSON.parse(readFileSync(path.join(dir, "status.json"), "utf8")) as {
          pid?: number;
          qemuPid?: number;
        };
        for (const pid of [st.pid, st.qemuPid]) if (pid && alive(pid)) process.kill(pid, "SIGKILL");
      } catch {
        // no status: nothing runs there
      }
    }
    await pulumi.run(["stack", "rm", "--yes", "--force", stack]);
    delete process.env.XDG_CONFIG_HOME;
    rmSync(tmp, { recursive: true, force: true });
  }, 400_000);

  it("the runtime guest was verified against the measurement computed from its argv, and it is what answers", async () => {
    expect(out.vhsmMode.mode).toBe("confidential-vm");
    const a = out.vhsmAttestation;
    expect(a.expectedMeasurement).toMatch(/^[0-9a-f]{96}$/);
    expect(a.measurement).toBe(a.expectedMeasurement);
    expect(a.launchMeasurement).toBe(a.expectedMeasurement); // what the simulated PSP measured from QEMU's files
    expect(a.tlsKeySha256).toMatch(/^[0-9a-f]{64}$/);
    expect(a.simulated).toBe(true);
    expect(a.verifiedBy).toMatch(/deployer.*attested TLS/);
    expect(alive(a.pid)).toBe(true);
    expect(alive(runtimeQemuPid)).toBe(true);
    expect(a.kernelMeasured).toBe(true); // kernel, initrd and the command line with the verity root hash
    expect(readFileSync(a.consoleLog, "utf8")).toMatch(/bk-runtime: listening on/);
    // No CA pin anywhere: trust comes from the evidence. An operator verifies it independently the same way.
    expect(out.runtimeCaFingerprint).toBe("");
    const anchor = JSON.parse(readFileSync(path.join(stateDir, "platform", "anchor.json"), "utf8"));
    const v = await verifyRuntime({
      url: out.runtimeUrl,
      expected: runtimeExpectation({
        snpMeasurements: [a.expectedMeasurement],
        simulatedAnchors: [anchor],
        kds: "off",
      }),
      timeoutMs: 120_000,
    });
    expect(v.reason).toBeUndefined();
    expect(v.spkiSha256).toBe(a.tlsKeySha256);
    expect(out.auditLog).toBe(""); // inside the guest
    // Instance binding: launched with this resource's HOST_DATA, and its report carries it; an expectation naming
    // another instance of the same image is refused (policy.host-data).
    expect(a.snpHostData).toMatch(/^[0-9a-f]{64}$/);
    expect(a.hostData).toBe(a.snpHostData);
    const expect2 = (snpHostData: string) =>
      runtimeExpectation({
        snpMeasurements: [a.expectedMeasurement],
        snpHostData,
        simulatedAnchors: [anchor],
        kds: "off",
      });
    const mine = await verifyRuntime({ url: out.runtimeUrl, expected: expect2(a.snpHostData), timeoutMs: 120_000 });
    expect(mine.reason).toBeUndefined();
    const other = await verifyRuntime({
      url: out.runtimeUrl,
      expected: expect2(instanceHostData(`buckypaper-local/${stack}/vhsm`, newInstanceId())),
      timeoutMs: 120_000,
    });
    expect(other.ok).toBe(false);
    expect(other.reason).toMatch(/^policy\.host-data: HOST_DATA [0-9a-f]{64} differs/);
    // Runtime instance: the id learnt at bootstrap is what the unsealed runtime's evidence binds; another id (a
    // twin's) is refused (runtime.instance-id).
    expect(a.runtimeInstanceId).toMatch(/^[0-9a-f]{64}$/);
    expect(mine.instanceId).toBe(a.runtimeInstanceId);
    const withId = (runtimeInstanceId: string) =>
      verifyRuntime({
        url: out.runtimeUrl,
        expected: runtimeExpectation({
          snpMeasurements: [a.expectedMeasurement],
          snpHostData: a.snpHostData,
          runtimeInstanceId,
          simulatedAnchors: [anchor],
          kds: "off",
        }),
        timeoutMs: 120_000,
      });
    expect((await withId(a.runtimeInstanceId)).reason).toBeUndefined();
    expect((await withId("7e".repeat(32))).reason).toMatch(/^runtime\.instance-id: the runtime is instance /);
  });

  it("web and db verified the runtime from their user-data (no copied fingerprint) and were provisioned", () => {
    for (const name of ["web", "db"]) {
      const v = out.vm[name];
      expect(v.mode).toBe("real");
      expect(v.status, `${name}: ${v.reason}`).toBe("provisioned");
      expect(v.measurement).toBe(v.expectedMeasurement);
      const userData = readFileSync(path.join(stateDir, "vms", name, "seed", "user-data"), "utf8");
      expect(userData).toContain(out.vhsmAttestation.expectedMeasurement);
      expect(userData).toMatch(/runtimeAttestation/);
      expect(userData).not.toMatch(/runtimeCaSha256/);
      expect(readFileSync(v.consoleLog, "utf8")).toMatch(/"event":"done"/);
    }
    // web's SSH CA line came from the runtime over attested TLS.
    expect(out.vm.web.knownHosts).toMatch(/^@cert-authority web\.bk\.internal \S+ \S+$/);
  });

  it("no root token, unseal key or application secret in state; the runtime's disk holds no secret in clear", async () => {
    const exported = (await pulumi.ok(["stack", "export", "--show-secrets", "--stack", stack])).stdout;
    const resources = JSON.parse(exported).deployment.resources as {
      urn: string;
      type: string;
      outputs?: Record<string, unknown>;
    }[];
    const guest = resources.find((x) => x.type.endsWith(":VhsmGuest"))!;
    expect(guest).toBeDefined();
    expect(guest.outputs?.rootToken).toBeUndefined();
    expect(guest.outputs?.unsealKeys).toBeUndefined();
    expect((guest.outputs?.recoveryShares as string[]).length).toBe(1);
    expect(exported).not.toMatch(/"root_token"|"keys_base64"/);
    // The instance id is in state (not a secret); HOST_DATA is its hash with the runtime's name, what the guest
    // reported, and what web's user-data requires of the runtime.
    const instanceId = guest.outputs?.instanceId as string;
    expect(instanceId).toMatch(/^[0-9a-f]{32}$/);
    const hostData = instanceHostData(`buckypaper-local/${stack}/vhsm`, instanceId);
    expect(guest.outputs?.snpHostData).toBe(hostData);
    expect(guest.outputs?.hostData).toBe(hostData);
    expect(out.vhsmAttestation.hostData).toBe(hostData);
    expect(readFileSync(path.join(stateDir, "vms", "web", "seed", "user-data"), "utf8")).toContain(hostData);
    // The runtime instance id learnt at bootstrap: in state, in the outputs and required by web's user-data.
    expect(guest.outputs?.runtimeInstanceId).toMatch(/^[0-9a-f]{64}$/);
    expect(out.vhsmAttestation.runtimeInstanceId).toBe(guest.outputs?.runtimeInstanceId);
    expect(readFileSync(path.join(stateDir, "vms", "web", "seed", "user-data"), "utf8")).toContain(
      guest.outputs?.runtimeInstanceId as string,
    );
    const v = resources.find((x) => x.urn.endsWith("::web-api-key"))?.outputs?.value as
      string | { plaintext: string } | undefined;
    const secret = typeof v === "string" ? v : v ? (JSON.parse(v.plaintext) as string) : undefined;
    expect(secret).toMatch(/^[A-Za-z0-9_-]{32}$/);
    const disk = readFileSync(path.join(stateDir, "vhsm", "data.qcow2"));
    expect(disk.includes(Buffer.from(secret!))).toBe(false);
    // The deployer key and the local recovery key are 0600 files here, not in state.
    const keys = readdirSync(path.join(configHome, "buckypaper", "deployer"));
    expect(keys.length).toBe(1);
  });

  it("the summary shows the runtime guest's attestation", () => {
    expect(summary).toMatch(/^vHSM runtime: QEMU guest \((kvm|tcg)\), attested — measurement matches/m);
    expect(summary).toContain(`expected  ${out.vhsmAttestation.expectedMeasurement}`);
    expect(summary).toContain(`TLS key   SPKI SHA-256 ${out.vhsmAttestation.tlsKeySha256}`);
    expect(summary).toContain(
      `instance  HOST_DATA ${out.vhsmAttestation.hostData} (= SHA-256 of this runtime's instance id`,
    );
    expect(summary).toMatch(/verified {2}by the deployer/);
  });

  it("a runtime guest booted with another firmware byte than measured is refused by `pulumi up`: nothing sent", async () => {
    const t = `t${process.pid}`;
    const tcfg = ["--stack", t, "--config-file", path.join(tmp, "Pulumi.tamper.yaml")];
    const tState = path.join(tmp, "tamper");
    const fw = path.join(tmp, "OVMF-tampered.fd");
    // The AmdSev OVMF with one byte flipped in the middle of its longest erased (0xFF) run: boots the same,
    // measures differently.
    firmwareWithOneByteChanged(amdSevFirmware(ROOT), fw);
    await pulumi.ok(["stack", "init", t]);
    try {
      await pulumi.ok(["config", "set", ...tcfg, "stateDir", tState]);
      await pulumi.ok(["config", "set", ...tcfg, "port", String(await freePort())]);
      await pulumi.ok(["config", "set", ...tcfg, "vms", "real"]);
      await pulumi.ok(["config", "set", ...tcfg, "tamperDemo", "false"]);
      await pulumi.ok(["config", "set", ...tcfg, "vhsmActualFirmware", fw]);
      const r = await pulumi.run(["up", "--yes", "--skip-preview", ...tcfg], { timeoutMs: 1_800_000 });
      expect(r.code).not.toBe(0);
      const text = `${r.stdout}\n${r.stderr}`;
      expect(text).toMatch(
        /vHSM guest vhsm refused before anything was sent to it \(attested TLS\): policy\.measurement/,
      );
      // The guest was stopped and its files removed; no credential or recovery key was made for it.
      expect(existsSync(path.join(tState, "vhsm"))).toBe(false);
      const keyName = `buckypaper-local-${t}-vhsm`;
      expect(existsSync(path.join(configHome, "buckypaper", "deployer", `${keyName}.pem`))).toBe(false);
      expect(existsSync(path.join(configHome, "buckypaper", "recovery", `${keyName}.jwk`))).toBe(false);
      // Nothing downstream was created: no workload guest booted.
      expect(existsSync(path.join(tState, "vms"))).toBe(false);
    } finally {
      await pulumi.run(["destroy", "--yes", "--skip-preview", ...tcfg], { timeoutMs: 300_000 });
      await pulumi.run(["stack", "rm", "--yes", "--force", t]);
    }
  }, 2_000_000);

  it("a second up changes nothing; destroy stops the runtime guest and removes its files and keys", async () => {
    await pulumi.ok(["up", "--yes", "--expect-no-changes", ...cfg], { timeoutMs: 600_000 });
    const pids = [out.vhsmAttestation.pid, runtimeQemuPid, ...Object.values(out.vm).map((v) => v.pid)];
    await pulumi.ok(["destroy", "--yes", "--skip-preview", ...cfg], { timeoutMs: 300_000 });
    for (const pid of pids) expect(alive(pid), `pid ${pid}`).toBe(false);
    expect(existsSync(path.join(stateDir, "vhsm"))).toBe(false);
    expect(readdirSync(path.join(configHome, "buckypaper", "deployer"))).toEqual([]);
    expect(spawnSync("pgrep", ["-f", stateDir], { encoding: "utf8" }).stdout.trim()).toBe("");
  }, 700_000);
});
