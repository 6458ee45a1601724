// The `local` stack with process-tree VMs (config vms=process; the real QEMU guests of the default are
// real-guests.test.ts) end to end on the real Pulumi engine, from a fresh state directory: up → the
// runtime trusts only the simulated platform, `web` and `db` attest and receive their secrets in their
// private roots, the tampered VM (registered like `web`, started with a firmware one byte off) is
// refused with nothing delivered and the refusal is in the runtime's audit log; a second up changes
// nothing; a VM that died is booted again; destroy leaves no process and no file behind.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { requireTool } from "../../support/prereq.js";
import { pulumiBinDir, type PulumiRunner } from "../../provider/engine.js";
import { runtimeRequest } from "../../../provider/client.js";
import { snpLaunchDigest } from "../../../images/index.js";
import type { VmOut } from "../../../stacks/local/summary.js";
import { alive, initLocalStack, stackOutputs, ROOT } from "./support.js";

const OVMF = "/usr/share/ovmf/OVMF.fd";
const HAVE_ENGINE = requireTool("Pulumi engine (scripts/setup-pulumi.sh)", pulumiBinDir() !== undefined);
const HAVE_OVMF = requireTool("Debian OVMF firmware (apt-get install ovmf)", existsSync(OVMF));

interface Outputs {
  runtimeUrl: string;
  runtimeCaFingerprint: string;
  auditLog: string;
  vm: Record<string, VmOut>;
}

/** Every file under dir (relative paths). */
function filesUnder(dir: string, rel = ""): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(path.join(dir, rel), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(dir, path.join(rel, e.name)) : [path.join(rel, e.name)],
  );
}

describe.skipIf(!HAVE_ENGINE || !HAVE_OVMF)("stacks/local on the real engine", () => {
  let tmp: string;
  let stateDir: string;
  let pulumi: PulumiRunner;
  let cfg: string[];
  let stack: string;
  let out: Outputs;
  let rootToken: string;
  let apiKey: string;

  const outputs = () => stackOutputs<Outputs>({ pulumi, stack });

  beforeAll(async () => {
    // The pinned kernel + initrd (from the Debian archive; a no-op when present).
    if (!existsSync(path.join(ROOT, ".bk/boot/vmlinuz")) || !existsSync(path.join(ROOT, ".bk/boot/initrd.img"))) {
      execFileSync(path.join(ROOT, "scripts/fetch-boot-inputs.sh"), { cwd: ROOT, stdio: "inherit", timeout: 300_000 });
    }
    tmp = mkdtempSync(path.join(os.tmpdir(), "bk-local-"));
    ({ pulumi, stack, cfg, stateDir } = await initLocalStack(tmp, {
      name: `t${process.pid}`,
      passphrase: "local-stack-test",
    }));
    // The process-tree VMs (fast: no guest boots); real-guests.test.ts runs the default, real QEMU guests.
    await pulumi.ok(["config", "set", ...cfg, "vms", "process"]);
    // The audit-log check below asks sys/audit-hash with the root token, which the default revokes
    // (the default bootstrap is covered by test/provider/engine-bootstrap.test.ts).
    await pulumi.ok(["config", "set", ...cfg, "insecureKeepRootTokenInState", "true"]);
  }, 400_000);

  afterAll(async () => {
    if (!pulumi) return;
    await pulumi.run(["destroy", "--yes", "--skip-preview", ...cfg]);
    await pulumi.run(["stack", "rm", "--yes", "--force", stack]);
    rmSync(tmp, { recursive: true, force: true });
  }, 300_000);

  it("up: measured, registered, booted; web and db attested and provisioned into their private roots", async () => {
    const r = await pulumi.ok(["up", "--yes", "--skip-preview", ...cfg]);
    expect(r.stdout).toMatch(/measured web: firmware OVMF\.fd/);
    expect(r.stdout).toMatch(/attested web: measurement [0-9a-f]{16}… matches the registration; accepted/);
    out = await outputs();
    const exported = JSON.parse((await pulumi.ok(["stack", "export", "--show-secrets", "--stack", stack])).stdout);
    const resources = exported.deployment.resources as {
      type: string;
      urn: string;
      outputs: Record<string, unknown>;
    }[];
    // Secret outputs are exported as {<sig>: …, plaintext: "<JSON>"}.
    const reveal = (v: unknown) =>
      (typeof v === "object" && v !== null && "plaintext" in v
        ? JSON.parse((v as { plaintext: string }).plaintext)
        : v) as string;
    rootToken = reveal(resources.find((x) => x.type.endsWith(":RuntimeService"))!.outputs.rootToken);
    apiKey = reveal(resources.find((x) => x.urn.endsWith("::web-api-key"))!.outputs.value);
    expect(apiKey).toMatch(/^[A-Za-z0-9_-]{32}$/);

    for (const name of ["web", "db"]) {
      const v = out.vm[name];
      expect(v.verdict, `${name}: ${v.reason}`).toBe("accepted");
      expect(v.measurement).toMatch(/^[0-9a-f]{96}$/);
      expect(v.measurement).toBe(v.expectedMeasurement);
      expect(alive(v.pid)).toBe(true);
      expect(v.root).toBe(path.join(stateDir, "vms", name, "root"));
      expect(statSync(v.root).mode & 0o077).toBe(0); // private root
      for (const p of v.delivered) expect(existsSync(path.join(v.root, p)), p).toBe(true);
    }
    // Different vCPU counts: different launch digests, each as the engine computes it independently.
    expect(out.vm.web.measurement).not.toBe(out.vm.db.measurement);
    expect(out.vm.web.measurement).toBe(
      snpLaunchDigest({ ovmf: readFileSync(OVMF), vcpus: 2, vcpu: "EPYC-v4", vmm: "qemu" }).toString("hex"),
    );
    expect(out.vm.web.kernelMeasured).toBe(false); // Debian's OVMF has no kernel-hashes table

    const web = out.vm.web;
    expect(web.delivered).toEqual(
      expect.arrayContaining([
        "/etc/web/app.env",
        "/etc/web/tls/cert.pem",
        "/etc/web/tls/key.pem",
        "/etc/ssh/ssh_host_ed25519_key-cert.pub",
      ]),
    );
    const env = path.join(web.root, "etc/web/app.env");
    expect(readFileSync(env, "utf8")).toContain(apiKey);
    expect(statSync(env).mode & 0o777).toBe(0o600);
    const cert = execFileSync(
      "openssl",
      ["x509", "-noout", "-subject", "-in", path.join(web.root, "etc/web/tls/cert.pem")],
      { encoding: "utf8" },
    );
    expect(cert).toMatch(/CN\s*=\s*web\.bk\.internal/);
    const sshCert = execFileSync(
      "ssh-keygen",
      ["-L", "-f", path.join(web.root, "etc/ssh/ssh_host_ed25519_key-cert.pub")],
      { encoding: "utf8" },
    );
    expect(sshCert).toMatch(/host certificate/);
    expect(sshCert).toContain("web.bk.internal");
    expect(out.vm.db.delivered).toContain("/etc/db/app.env");
    expect(readFileSync(path.join(out.vm.db.root, "etc/db/app.env"), "utf8")).toMatch(/^DB_PASSWORD=/m);
  }, 400_000);

  it("the VM booted with a different firmware than registered is refused and receives nothing", async () => {
    const t = out.vm.tampered;
    expect(t.expectedMeasurement).toBe(out.vm.web.expectedMeasurement); // registered exactly like web
    expect(t.verdict).toBe("refused");
    expect(t.measurement).not.toBe(t.expectedMeasurement);
    // The simulated PSP measured the firmware the VM really booted (one byte off the registered one).
    const modified = readFileSync(path.join(stateDir, "boot", "OVMF-modified.fd"));
    const orig = readFileSync(OVMF);
    expect(modified.length).toBe(orig.length);
    expect([...modified].filter((b, i) => b !== orig[i]).length).toBe(1);
    expect(t.measurement).toBe(
      snpLaunchDigest({ ovmf: modified, vcpus: 2, vcpu: "EPYC-v4", vmm: "qemu" }).toString("hex"),
    );
    expect(t.reason).toMatch(/attestation refused \(HTTP 403\).*measurement/);
    expect(t.reason).toContain(t.measurement);
    expect(t.delivered).toEqual([]);
    expect(filesUnder(t.root)).toEqual([]); // no secret, no partial file
    expect(alive(t.pid)).toBe(true); // the VM runs, without secrets

    // The runtime's audit log has the refusal: 403, simulated, and the failed check is the measurement
    // policy (strings are HMAC'd as in Vault; sys/audit-hash gives the HMAC of a known string).
    const records = readFileSync(out.auditLog, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const refusals = records.filter(
      (x) => x.type === "response" && x.request.path === "nitride/attest" && x.response.status === 403,
    );
    expect(refusals.length).toBeGreaterThanOrEqual(1);
    const conn = { url: out.runtimeUrl, token: rootToken, caFingerprint: out.runtimeCaFingerprint };
    const hash = async (input: string) =>
      ((await runtimeRequest(conn, "POST", "sys/audit-hash/config", { input })).body as { data: { hash: string } }).data
        .hash;
    const tamperedId = await hash(t.workloadId);
    const rec = refusals.find((x) => x.request.data.workload_id === tamperedId);
    expect(rec, "refusal of the tampered workload in the audit log").toBeDefined();
    expect(rec.response.data.verdict).toMatchObject({ accepted: false, simulated: true });
    const failed = (rec.response.data.verdict.checks as { id: string; ok: boolean }[])
      .filter((c) => !c.ok)
      .map((c) => c.id);
    expect(failed).toContain(await hash("policy.measurement"));
    // Accepted attestations are marked simulated too.
    const accepted = records.filter(
      (x) => x.type === "response" && x.request.path === "nitride/attest" && x.response.status === 200,
    );
    expect(accepted.length).toBeGreaterThanOrEqual(2);
    for (const a of accepted) expect(a.response.data.verdict.simulated).toBe(true);
    // No secret value in the audit log or in any VM's status file.
    expect(readFileSync(out.auditLog, "utf8")).not.toContain(apiKey);
    for (const name of ["web", "db", "tampered"])
      expect(readFileSync(path.join(stateDir, "vms", name, "status.json"), "utf8")).not.toContain(apiKey);
  }, 120_000);

  it("a second up with no changes changes nothing and keeps the VMs running", async () => {
    await pulumi.ok(["up", "--yes", "--expect-no-changes", ...cfg]);
    const again = await outputs();
    for (const name of ["web", "db", "tampered"]) expect(again.vm[name].pid).toBe(out.vm[name].pid);
  }, 300_000);

  it("a VM that died is booted again by the next up, attests again and finds its files in place", async () => {
    process.kill(out.vm.web.pid, "SIGKILL");
    await new Promise((r) => setTimeout(r, 300));
    const r = await pulumi.ok(["up", "--yes", "--skip-preview", ...cfg]);
    expect(r.stdout).toMatch(/LocalVm\s+web-vm\s+updated/);
    const again = await outputs();
    expect(again.vm.web.pid).not.toBe(out.vm.web.pid);
    expect(alive(again.vm.web.pid)).toBe(true);
    expect(again.vm.web.verdict).toBe("accepted");
    expect(again.vm.web.delivered).toEqual(out.vm.web.delivered);
    out = again;
  }, 300_000);

  it("destroy stops every VM and the runtime and removes their files", async () => {
    const pids = Object.values(out.vm).map((v) => v.pid);
    const runtimePid = Number(readFileSync(path.join(stateDir, "vhsm", "runtime.pid"), "utf8"));
    await pulumi.ok(["destroy", "--yes", "--skip-preview", ...cfg]);
    for (const pid of [...pids, runtimePid]) expect(alive(pid), `pid ${pid}`).toBe(false);
    // Left: only the demo's modified firmware copy, a boot input the program writes (like .bk/boot).
    expect(filesUnder(stateDir)).toEqual(["boot/OVMF-modified.fd"]);
    expect(readdirSync(stateDir).sort()).toEqual(["boot"]);
    await expect(
      runtimeRequest({ url: out.runtimeUrl, token: "x", caFingerprint: out.runtimeCaFingerprint }, "GET", "sys/health"),
    ).rejects.toThrow(/ECONNREFUSED/);
  }, 300_000);
});
