// `npm run local`'s main job on the real Pulumi engine with real QEMU guests: `web` and `db` boot from
// the kit image (AmdSev firmware, kernel, initrd, command line with the dm-verity root hash) with the
// exact argv the QEMU component produces (minus the SEV object); the registered measurement equals what
// `buckypaper measure snp --manifest` computes for the image; a simulated PSP outside each guest
// measures what QEMU started with, the real enclaivelet attests (user-data hash bound in), unlocks its
// LUKS2 data disk and installs the SSH host certificate into the real sshd. The tamper guests — one
// firmware byte, the kernel command line, a swapped initrd, another kernel, a runcmd injected into the
// user-data after registration — are refused by the runtime with the reason in the outputs and the
// audit log; a modified root filesystem block is stopped by dm-verity before the PSP is ever asked.
// Every case must be refused with nothing delivered. The summary the script prints says so, and its
// ssh command logs in to `web` through the runtime's SSH CA alone. destroy stops every guest.
// Prerequisites (QEMU, root, image tooling, the AmdSev firmware, the Pulumi engine): skipped visibly
// here when missing, a failure under CI=true.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { holdGuestSlots } from "../../support/guest-slots.js";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { requireTool } from "../../support/prereq.js";
import { pulumiBinDir, type PulumiRunner } from "../../provider/engine.js";
import { runtimeRequest } from "../../../provider/client.js";
import { realGuestSupport } from "../../../runtime/sim/qemu/local-image.js";
import { VERITY_STOP } from "../../../runtime/sim/qemu/supervise.js";
import { ATTACKER_INITRD_MARK } from "../../../components/local/tamper.js";
import { freePort } from "../../support/net.js";
import type { VmOut } from "../../../stacks/local/summary.js";
import { alive, initLocalStack, localSummary, stackOutputs, ROOT } from "./support.js";

const support = realGuestSupport();
const ready =
  requireTool("Pulumi engine (scripts/setup-pulumi.sh)", pulumiBinDir() !== undefined) &&
  requireTool(`real QEMU guests (${support.reason})`, support.ok) &&
  requireTool("compiled package (npm run build)", existsSync(path.join(ROOT, "dist/runtime/guest/main.js")));

interface Outputs {
  runtimeUrl: string;
  runtimeCaFingerprint: string;
  auditLog: string;
  sshUserKey: string;
  sshKnownHostsFile: string;
  vmMode: { mode: string; reason: string };
  bootInputs: { firmware: string; kernel: string; initrd: string; append: string };
  vm: Record<string, VmOut>;
}

/** Refused by the runtime: the report's launch digest is not the registered one. */
const DIGEST_CASES = ["tampered", "cmdline", "initrd", "kernel"];
const ALL_TAMPER = [...DIGEST_CASES, "injected", "rootfs"];

describe.runIf(ready)("stacks/local with real QEMU guests on the real engine", () => {
  holdGuestSlots(9, "real-guests"); // 9 guest(s) at once: see test/support/guest-slots.ts
  let tmp: string;
  let stateDir: string;
  let pulumi: PulumiRunner;
  let cfg: string[];
  let stack: string;
  let out: Outputs;
  let upStdout: string;
  let summary: string;
  let qemuPids: number[] = [];

  const outputs = () => stackOutputs<Outputs>({ pulumi, stack });

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), "bk-local-real-"));
    ({ pulumi, stack, cfg, stateDir } = await initLocalStack(tmp, {
      name: `r${process.pid}`,
      passphrase: "local-real-test",
    }));
    await pulumi.ok(["config", "set", ...cfg, "sshPort", String(await freePort())]);
    await pulumi.ok(["config", "set", ...cfg, "vms", "real"]);
    // The runtime as a process on this machine (its audit log is checked below); the runtime in its own
    // attested guest — the default with real guests — is attested-vhsm.test.ts.
    await pulumi.ok(["config", "set", ...cfg, "vhsm", "process"]);
    // The audit-log check asks sys/audit-hash with the root token, which the default revokes.
    await pulumi.ok(["config", "set", ...cfg, "insecureKeepRootTokenInState", "true"]);
    // Two TCG guests, then six tamper guests at once: minutes on a busy machine.
    const t0 = Date.now();
    const r = await pulumi.ok(["up", "--yes", "--skip-preview", ...cfg], { timeoutMs: 3_000_000 });
    console.log(
      `pulumi up: ${Math.round((Date.now() - t0) / 1000)} s; load average ${os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(" ")}`,
    );
    upStdout = r.stdout;
    out = await outputs();
    summary = localSummary(out);
    qemuPids = Object.keys(out.vm).map((n) =>
      Number(JSON.parse(readFileSync(path.join(stateDir, "vms", n, "status.json"), "utf8")).qemuPid),
    );
  }, 3_100_000);

  afterAll(async () => {
    if (!pulumi) return;
    await pulumi.run(["destroy", "--yes", "--skip-preview", ...cfg], { timeoutMs: 300_000 });
    await pulumi.run(["stack", "rm", "--yes", "--force", stack]);
    rmSync(tmp, { recursive: true, force: true });
  }, 400_000);

  it("web and db are real guests, attested with the measurement registered from their argv, and provisioned", () => {
    expect(out.vmMode.mode).toBe("real");
    for (const name of ["web", "db"]) {
      const v = out.vm[name];
      expect(v.mode).toBe("real");
      expect(v.status, `${name}: ${v.reason}`).toBe("provisioned");
      expect(v.verdict).toBe("accepted");
      expect(v.measurement).toMatch(/^[0-9a-f]{96}$/);
      expect(v.measurement).toBe(v.expectedMeasurement);
      expect(v.bootSeconds).toBeGreaterThan(0);
      expect(alive(v.pid)).toBe(true);
      const console = readFileSync(v.consoleLog, "utf8");
      expect(console).toMatch(/"event":"evidence.provider","provider":"virtio-psp"/);
      expect(console).toMatch(/"event":"user-data.measured"/);
      expect(console).toMatch(/"event":"done"/);
    }
    expect(out.vm.web.measurement).not.toBe(out.vm.db.measurement); // 1 vs 2 vCPUs
    expect(out.vm.web.kernelMeasured).toBe(true);
    expect(upStdout).toMatch(
      /attested web: real guest \((kvm|tcg)\), measurement [0-9a-f]{16}… matches the registration/,
    );
  });

  it("the registered measurement is the kit image's: what `buckypaper measure snp --manifest` computes", () => {
    // The image the stack booted (cached: found, not rebuilt) and its manifest naming the AmdSev firmware.
    const img = spawnSync(
      process.execPath,
      [path.join(ROOT, "bin/buckypaper.js"), "simulate", "guest-image", "--json"],
      {
        encoding: "utf8",
        timeout: 600_000,
      },
    );
    expect(img.status, img.stderr).toBe(0);
    const image = JSON.parse(img.stdout.trim().split("\n").pop()!) as { manifestPath: string; append: string };
    expect(out.bootInputs.append).toBe(image.append);
    expect(out.bootInputs.append).toMatch(/ bk\.roothash=[0-9a-f]{64} /);
    const m = spawnSync(
      process.execPath,
      [
        path.join(ROOT, "bin/buckypaper.js"),
        "measure",
        "snp",
        "--manifest",
        image.manifestPath,
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-Milan",
      ],
      { encoding: "utf8" },
    );
    expect(m.status, m.stderr).toBe(0);
    expect(m.stdout.trim()).toBe(out.vm.web.expectedMeasurement);
  });

  interface AttestRecord {
    response: { data?: { verdict?: { accepted: boolean; checks: { id: string; ok: boolean }[] } } };
  }
  /** The runtime's audit records of nitride/attest refusals (403) for a workload (strings are HMAC'd as in Vault). */
  let refusalsOf: (workloadId: string) => Promise<AttestRecord[]>;
  /** The audit device's HMAC of a string. */
  let auditHash: (input: string) => Promise<string>;
  beforeAll(async () => {
    const exported = JSON.parse((await pulumi.ok(["stack", "export", "--show-secrets", "--stack", stack])).stdout);
    const svc = (exported.deployment.resources as { type: string; outputs: Record<string, unknown> }[]).find((x) =>
      x.type.endsWith(":RuntimeService"),
    )!;
    const tok = svc.outputs.rootToken as { plaintext?: string } | string;
    const rootToken = typeof tok === "string" ? tok : (JSON.parse(tok.plaintext!) as string);
    const conn = { url: out.runtimeUrl, token: rootToken, caFingerprint: out.runtimeCaFingerprint };
    const hash = async (input: string) =>
      ((await runtimeRequest(conn, "POST", "sys/audit-hash/config", { input })).body as { data: { hash: string } }).data
        .hash;
    auditHash = hash;
    refusalsOf = async (workloadId) => {
      const id = await hash(workloadId);
      return readFileSync(out.auditLog, "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l))
        .filter(
          (x) =>
            x.type === "response" &&
            x.request.path === "nitride/attest" &&
            x.response.status === 403 &&
            x.request.data.workload_id === id,
        );
    };
  });

  /** Nothing delivered: the agent received no bundle, and the data disk was never formatted (no LUKS header). */
  function expectNothingDelivered(n: string): void {
    const c = readFileSync(out.vm[n].consoleLog, "utf8");
    expect(c, n).not.toMatch(/"event":"bundle.received"/);
    expect(c, n).not.toMatch(/"event":"done"/);
    const data = readFileSync(path.join(stateDir, "vms", n, "data.qcow2"));
    expect(data.includes(Buffer.from("LUKS\xba\xbe", "latin1")), `${n}: data disk never formatted`).toBe(false);
  }

  it("every tamper guest is registered exactly like web and refused (none may be accepted)", () => {
    for (const n of ALL_TAMPER) {
      const v = out.vm[n];
      expect(v, n).toBeDefined();
      expect(v.mode).toBe("real");
      expect(v.status, `${n}: ${v.reason}`).toBe("refused");
      expect(v.verdict).toBe("refused");
      expect(v.expectedMeasurement, n).toBe(out.vm.web.expectedMeasurement);
      expect(v.tampered, n).not.toBe("");
    }
  });

  it.each(DIGEST_CASES)(
    "%s: refused by its launch digest — the reason in the outputs and the audit log, nothing delivered",
    async (n) => {
      const v = out.vm[n];
      expect(v.status).toBe("refused");
      expect(v.measurement).toMatch(/^[0-9a-f]{96}$/);
      expect(v.measurement).not.toBe(v.expectedMeasurement);
      expect(v.reason).toMatch(/^refused: .*policy\.measurement/);
      expect(v.pspRequests).toBeGreaterThan(0); // it booted, attested, and was turned down
      expectNothingDelivered(n);
      const recs = await refusalsOf(v.workloadId);
      expect(recs.length, `refusal of ${n} in the audit log`).toBeGreaterThan(0);
      // The verdict in the record names the failed check (check ids are HMAC'd like every string).
      const failed = await auditHash("policy.measurement");
      expect(
        recs.some((r) => r.response.data?.verdict?.checks.some((x) => x.id === failed && !x.ok)),
        `${n}: policy.measurement failed in the audited verdict`,
      ).toBe(true);
      // The change really reached the guest.
      const c = readFileSync(v.consoleLog, "utf8");
      if (n === "cmdline") expect(c).toMatch(/systemd\.debug-shell=1/);
      if (n === "initrd") expect(c).toMatch(new RegExp(`^${ATTACKER_INITRD_MARK}`, "m"));
    },
  );

  it("injected user-data: same measurement, refused by the user-data hash, and the command never runs", async () => {
    const i = out.vm.injected;
    expect(i.status).toBe("refused");
    expect(i.measurement).toBe(i.expectedMeasurement); // same image, same firmware: only the user-data differs
    expect(i.reason).toMatch(/nitride\.user-data: user-data SHA-256 [0-9a-f]{16}… differs/);
    expectNothingDelivered("injected");
    expect(readFileSync(i.consoleLog, "utf8")).not.toMatch(/^INJECTED-RUNCMD-RAN/m); // cloud-init's stages require the agent
    const recs = await refusalsOf(i.workloadId);
    expect(recs.length, "refusal of injected in the audit log").toBeGreaterThan(0);
    const failed = await auditHash("nitride.user-data");
    expect(recs.some((r) => r.response.data?.verdict?.checks.some((x) => x.id === failed && !x.ok))).toBe(true);
  });

  it("a modified root filesystem block: dm-verity stops the boot, the PSP is never asked, nothing delivered", async () => {
    const v = out.vm.rootfs;
    expect(v.status).toBe("refused");
    // The root is bound through the verity root hash on the measured command line: same digest.
    expect(v.measurement).toBe(v.expectedMeasurement);
    expect(v.reason).toMatch(/^stopped by dm-verity, never asked the PSP: /);
    expect(v.pspRequests).toBe(0);
    const c = readFileSync(v.consoleLog, "utf8");
    expect(c).toMatch(VERITY_STOP);
    expect(c).not.toMatch(/enclaivelet/);
    expectNothingDelivered("rootfs");
    expect(await refusalsOf(v.workloadId)).toEqual([]); // nothing reached the runtime
  });

  it("a refused guest's sshd never starts: no unsigned host key is offered", () => {
    // The injected guest booted the full image; its sshd requires the agent, which failed.
    // web's console shows systemd's status line for sshd (Starting/Started …), so its absence is not a quiet
    // console; the refused guest's shows the dependency failure instead (systemd shortens the unit name).
    expect(readFileSync(out.vm.web.consoleLog, "utf8")).toMatch(/Start(ing|ed) .*OpenBSD Secure Shell server/);
    const c = readFileSync(out.vm.injected.consoleLog, "utf8");
    expect(c).toMatch(/Dependency failed for .*OpenBSD Secure Shell server/);
    expect(c).not.toMatch(/Start(ing|ed) .*OpenBSD Secure Shell server/);
  });

  it("the summary shows web/db provisioned, every tamper case refused with its reason, and how to ssh in", () => {
    expect(summary).toMatch(/^web\s+QEMU guest \((kvm|tcg)\)\s+\S+\s+\S+\s+yes\s+provisioned\s+[\d.]+ s$/m);
    expect(summary).toMatch(/^db\s+QEMU guest .*provisioned/m);
    for (const n of DIGEST_CASES)
      expect(summary).toMatch(new RegExp(`^${n}: REFUSED, nothing delivered — refused: .*measurement`, "m"));
    expect(summary).toMatch(/^injected: REFUSED, nothing delivered — refused: .*user-data/m);
    expect(summary).toMatch(/^rootfs: REFUSED, nothing delivered — stopped by dm-verity, never asked the PSP: /m);
    for (const n of ALL_TAMPER) expect(summary).toMatch(new RegExp(`^${n}: booted with \\S`, "m"));
    expect(summary).toMatch(/dm-verity root hash: the root filesystem.* is bound too/);
    for (const n of ALL_TAMPER) expect(summary).not.toMatch(new RegExp(`^${n}: provisioned`, "m"));
    expect(summary).toMatch(/^ {4}@cert-authority web\.bk\.internal (ssh-ed25519|ecdsa-sha2-\S+|ssh-rsa) \S+$/m);
    expect(readFileSync(out.sshKnownHostsFile, "utf8")).toMatch(/^@cert-authority web\.bk\.internal /);
  });

  it("the printed ssh command logs in to web through the SSH CA alone; the data volume is dm-crypt", () => {
    const cmd = /^ {2}(ssh -i .*debian@127\.0\.0\.1)$/m.exec(summary)?.[1];
    expect(cmd).toBeDefined();
    const argv = cmd!.split(" ");
    const r = spawnSync(
      argv[0],
      [
        ...argv.slice(1, -1),
        "-o",
        "BatchMode=yes",
        argv[argv.length - 1],
        "cat /sys/block/$(basename $(readlink -f /dev/mapper/bk-data))/dm/uuid; findmnt -n -o SOURCE,FSTYPE /data; stat -c '%a %U %n' /etc/web/app.env /etc/ssh/ssh_host_ed25519_key-cert.pub",
      ],
      { encoding: "utf8", timeout: 120_000 },
    );
    expect(r.stderr).not.toMatch(/Host key verification failed|REMOTE HOST IDENTIFICATION/);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^CRYPT-LUKS2-/m);
    expect(r.stdout).toMatch(/\/dev\/mapper\/bk-data\s+ext4/);
    expect(r.stdout).toMatch(/600 root \/etc\/web\/app.env/);
    // The same command without the CA line is refused: the host key alone is not trusted.
    const bare = spawnSync(
      argv[0],
      [
        ...argv.slice(1, -1).map((a) => (a.startsWith("UserKnownHostsFile=") ? "UserKnownHostsFile=/dev/null" : a)),
        "-o",
        "BatchMode=yes",
        argv[argv.length - 1],
        "true",
      ],
      { encoding: "utf8", timeout: 60_000 },
    );
    expect(bare.status).not.toBe(0);
    expect(bare.stderr).toMatch(/Host key verification failed|No .* host key is known/);
    // The data disk on the host holds no plaintext.
    expect(
      readFileSync(path.join(stateDir, "vms", "web", "data.qcow2")).includes(Buffer.from("LUKS\xba\xbe", "latin1")),
    ).toBe(true);
  });

  it("a second up changes nothing; destroy stops every guest and removes their files", async () => {
    await pulumi.ok(["up", "--yes", "--expect-no-changes", ...cfg], { timeoutMs: 600_000 });
    const pids = Object.values(out.vm).map((v) => v.pid);
    await pulumi.ok(["destroy", "--yes", "--skip-preview", ...cfg], { timeoutMs: 300_000 });
    for (const pid of [...pids, ...qemuPids]) expect(alive(pid), `pid ${pid}`).toBe(false);
    expect(existsSync(path.join(stateDir, "vms"))).toBe(false);
    expect(spawnSync("pgrep", ["-f", stateDir], { encoding: "utf8" }).stdout.trim()).toBe(""); // no QEMU left
  }, 700_000);
});
