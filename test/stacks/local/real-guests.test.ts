// `npm run local`'s main job on the real Pulumi engine with real QEMU guests: `web` and `db` boot from
// the local guest image with the exact argv the QEMU component produces (minus the SEV object), a
// simulated PSP outside each guest measures what QEMU started with, the real enclaivelet attests
// (user-data hash bound in), unlocks its LUKS2 data disk and installs the SSH host certificate into
// the real sshd. The tamper guests — one firmware byte changed, a runcmd injected into the user-data
// after registration — are refused with the reason in the outputs and the audit log. The summary the
// script prints says so, and its ssh command logs in to `web` through the runtime's SSH CA alone.
// destroy stops every guest. Prerequisites (QEMU, OVMF, root, image tooling, the Pulumi engine):
// skipped visibly here when missing, a failure under CI=true.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { requireTool } from "../../support/prereq.js";
import { pulumiBinDir, pulumiRunner, type PulumiRunner } from "../../provider/engine.js";
import { runtimeRequest } from "../../../provider/client.js";
import { realGuestSupport } from "../../../runtime/sim/qemu/local-image.js";
import { freePort } from "../../support/net.js";
import type { VmOut } from "../../../stacks/local/summary.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const PROGRAM = path.join(ROOT, "stacks/local");
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
  vm: Record<string, VmOut>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

describe.runIf(ready)("stacks/local with real QEMU guests on the real engine", () => {
  let tmp: string;
  let stateDir: string;
  let pulumi: PulumiRunner;
  let cfg: string[];
  let stack: string;
  let out: Outputs;
  let upStdout: string;
  let summary: string;
  let qemuPids: number[] = [];

  const outputs = async (): Promise<Outputs> =>
    JSON.parse((await pulumi.ok(["stack", "output", "--json", "--stack", stack])).stdout) as Outputs;

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), "bk-local-real-"));
    stateDir = path.join(tmp, "stack");
    mkdirSync(path.join(tmp, "pulumi"));
    pulumi = pulumiRunner({ programDir: PROGRAM, stateDir: path.join(tmp, "pulumi"), passphrase: "local-real-test" });
    stack = `r${process.pid}`;
    cfg = ["--stack", stack, "--config-file", path.join(tmp, "Pulumi.test.yaml")];
    await pulumi.ok(["stack", "init", stack]);
    await pulumi.ok(["config", "set", ...cfg, "stateDir", stateDir]);
    await pulumi.ok(["config", "set", ...cfg, "port", String(await freePort())]);
    await pulumi.ok(["config", "set", ...cfg, "sshPort", String(await freePort())]);
    await pulumi.ok(["config", "set", ...cfg, "vms", "real"]);
    // The audit-log check asks sys/audit-hash with the root token, which the default revokes.
    await pulumi.ok(["config", "set", ...cfg, "insecureKeepRootTokenInState", "true"]);
    // Four TCG guests boot at once: minutes on a busy machine.
    const r = await pulumi.ok(["up", "--yes", "--skip-preview", ...cfg], { timeoutMs: 2_400_000 });
    upStdout = r.stdout;
    out = await outputs();
    const s = spawnSync(process.execPath, [path.join(PROGRAM, "summary.ts")], {
      input: JSON.stringify(out),
      encoding: "utf8",
    });
    expect(s.status, s.stderr).toBe(0);
    summary = s.stdout;
    console.log(summary);
    qemuPids = Object.keys(out.vm).map((n) =>
      Number(JSON.parse(readFileSync(path.join(stateDir, "vms", n, "status.json"), "utf8")).qemuPid),
    );
  }, 2_500_000);

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
    expect(upStdout).toMatch(
      /attested web: real guest \((kvm|tcg)\), measurement [0-9a-f]{16}… matches the registration/,
    );
  });

  it("the tamper guests are refused with the reason, nothing delivered, and the refusals are audited", async () => {
    const t = out.vm.tampered;
    expect(t.status).toBe("refused");
    expect(t.expectedMeasurement).toBe(out.vm.web.expectedMeasurement); // registered exactly like web
    expect(t.measurement).not.toBe(t.expectedMeasurement);
    expect(t.reason).toMatch(/refused.*measurement/);
    const i = out.vm.injected;
    expect(i.status).toBe("refused");
    expect(i.measurement).toBe(i.expectedMeasurement); // same image, same firmware: only the user-data differs
    expect(i.reason).toMatch(/nitride\.user-data: user-data SHA-256 [0-9a-f]{16}… differs/);
    const ic = readFileSync(i.consoleLog, "utf8");
    expect(ic).not.toMatch(/"event":"bundle.received"/);
    expect(ic).not.toMatch(/^INJECTED-RUNCMD-RAN/m); // cloud-init's stages wait for the agent
    for (const n of ["tampered", "injected"]) {
      const data = readFileSync(path.join(stateDir, "vms", n, "data.qcow2"));
      expect(data.includes(Buffer.from("LUKS\xba\xbe", "latin1")), `${n}: data disk never formatted`).toBe(false);
    }
    // The audit log has both refusals (workload ids are HMAC'd as in Vault; sys/audit-hash gives them).
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
    const records = readFileSync(out.auditLog, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    for (const n of ["tampered", "injected"]) {
      const id = await hash(out.vm[n].workloadId);
      const rec = records.find(
        (x) =>
          x.type === "response" &&
          x.request.path === "nitride/attest" &&
          x.response.status === 403 &&
          x.request.data.workload_id === id,
      );
      expect(rec, `refusal of ${n} in the audit log`).toBeDefined();
    }
  });

  it("the summary shows web/db provisioned, every tamper case refused with its reason, and how to ssh in", () => {
    expect(summary).toMatch(/^web\s+QEMU guest \((kvm|tcg)\)\s+\S+\s+\S+\s+yes\s+provisioned\s+[\d.]+ s$/m);
    expect(summary).toMatch(/^db\s+QEMU guest .*provisioned/m);
    expect(summary).toMatch(/^tampered: REFUSED, nothing delivered — refused: .*measurement/m);
    expect(summary).toMatch(/^injected: REFUSED, nothing delivered — refused: .*user-data/m);
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
