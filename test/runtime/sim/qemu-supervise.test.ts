// The parts of the local stack's real-guest machinery that need no guest: reading the enclaivelet's
// verdict off a noisy serial console, and the QemuGuest resource refusing inputs that would make it run
// something other than QEMU or write outside its directory.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { initPlatform } from "../../../runtime/sim/localvm/platform.js";
import { CLI } from "../../../provider/handler-support.js";
import { freePort } from "../../support/net.js";
import { agentEvents, consoleVerdict } from "../../../runtime/sim/qemu/supervise.js";
import { check } from "../../../provider/qemu-guest-handlers.js";
import { guestRuntimeUrl, realGuestArgv } from "../../../components/local/real-guest.js";
import { bootInputsOf } from "../../../runtime/sim/qemu/launch.js";

describe("agentEvents", () => {
  it("finds the agent's JSON events in a console with kernel timestamps, escapes and cut lines", () => {
    const text = [
      "\x1b[2J[    0.044000] ..MP-BIOS bug: 8254 timer not connected to IO-APIC",
      '[  446.1] enclaivelet[360]: enclaivelet: {"ts":"t","level":"info","event":"start","workload":"w"}',
      '[  446.2] enclaivelet[360]: enclaivelet: {"ts":"t","level":"info","event":"attest.ok"', // cut by the console
      'enclaivelet: {"ts":"t","level":"error","event":"failed","reason":"refused","error":"HTTP 403: nitride.user-data"}\r',
      "enclaivelet: not json",
    ].join("\n");
    expect(agentEvents(text).map((e) => e.event)).toEqual(["start", "failed"]);
    expect(agentEvents(text)[1]).toMatchObject({ reason: "refused", error: "HTTP 403: nitride.user-data" });
  });

  it("keeps console order: the supervisor takes the agent's first verdict, so later lines (user code runs only after the agent) cannot change it", () => {
    const text = [
      'enclaivelet: {"event":"failed","reason":"refused","error":"x"}',
      'enclaivelet: {"event":"done","written":9}',
    ].join("\n");
    expect(agentEvents(text).find((e) => e.event === "done" || e.event === "failed")).toMatchObject({
      event: "failed",
    });
    expect(agentEvents("enclaivelet:{}")).toEqual([]);
  });
});

describe("consoleVerdict", () => {
  it("provisioned, refused (by the runtime) or failed from the agent's first verdict", () => {
    expect(consoleVerdict('enclaivelet: {"event":"done","written":4}')).toEqual({ state: "provisioned", written: 4 });
    expect(consoleVerdict('enclaivelet: {"event":"failed","reason":"refused","error":"HTTP 403: x"}')).toEqual({
      state: "refused",
      reason: "refused: HTTP 403: x",
    });
    expect(consoleVerdict('enclaivelet: {"event":"failed","reason":"unreachable","error":"ECONNREFUSED"}')).toEqual({
      state: "failed",
      reason: "unreachable: ECONNREFUSED",
    });
    expect(consoleVerdict('enclaivelet: {"event":"start"}\n[  9.1] Kernel panic - not syncing: x')).toBeUndefined();
  });

  it("a root dm-verity rejects is a refusal before the PSP was asked; an unrelated panic is no verdict", () => {
    const stopped = consoleVerdict(
      "[   12.345678] device-mapper: verity: 252:0: data block 41234 is corrupted\n[   12.4] Kernel panic - not syncing: dm-verity device corrupted",
    );
    expect(stopped).toEqual({
      state: "refused",
      reason: "stopped by dm-verity, never asked the PSP: device-mapper: verity: 252:0: data block 41234 is corrupted",
    });
    expect(consoleVerdict("buckypaper-init: cannot mount the verified root - powering off")?.reason).toMatch(
      /^stopped by dm-verity, never asked the PSP: buckypaper-init: cannot mount/,
    );
    expect(consoleVerdict("[ 3.1] Kernel panic - not syncing: IO-APIC + timer doesn't work!")).toBeUndefined();
    // Once the agent ran, only its own verdict counts (a verity line later cannot make it "refused").
    expect(
      consoleVerdict('enclaivelet: {"event":"start"}\ndevice-mapper: verity: 252:0: data block 1 is corrupted'),
    ).toBeUndefined();
  });
});

describe("QemuGuest inputs", () => {
  const good = {
    name: "web",
    platformDir: "/tmp/p",
    stateDir: "/tmp/s/web",
    baseImage: "/tmp/root.img",
    argv: ["qemu-system-x86_64", "-bios", "/usr/share/ovmf/OVMF.fd"],
    userData: "#cloud-config\n",
    metaData: "instance-id: x\n",
    sshPort: 2222,
    bootInputsSha256: "00",
  };
  it("accepts a QEMU command line and absolute paths", () => {
    expect(check("qemu", good).failures).toEqual([]);
  });
  it.each([
    ["argv", { argv: ["sh", "-c", "id"] }],
    ["argv", { argv: "qemu-system-x86_64 -bios x" }],
    ["stateDir", { stateDir: "relative/web" }],
    ["stateDir", { stateDir: "/tmp/../etc" }],
    ["baseImage", { baseImage: "root.img" }],
    ["name", { name: "Web;rm" }],
    ["sshPort", { sshPort: 70000 }],
    ["dataDiskGb", { dataDiskGb: 0.5 }],
    ["timeoutSeconds", { timeoutSeconds: 1 }],
  ])("refuses a bad %s, naming it", (field, bad) => {
    const f = check("qemu", { ...good, ...bad }).failures;
    expect(f.map((x) => x.property)).toContain(field);
  });
});

describe("the real guest's command line", () => {
  const inputs = {
    name: "web",
    vcpus: 1,
    memoryMb: 1024,
    cpuModel: "EPYC-Milan",
    firmware: "/usr/share/ovmf/OVMF.fd",
    kernel: "/k/vmlinuz",
    initrd: "/k/initrd.img",
    append: "console=ttyS0 root=LABEL=bkroot rw quiet",
    stateDir: "/s/web",
    runtimePort: 8200,
    sshPort: 2222,
    dataDisk: true,
  };
  it("has no SEV object, the data disk third, only the runtime forward and the ssh forward out", () => {
    const a = realGuestArgv(inputs);
    expect(a.join(" ")).not.toMatch(/sev-snp-guest|confidential-guest-support/);
    expect(a.filter((x) => x.startsWith("file=")).map((x) => x.split(",")[0])).toEqual([
      "file=/s/web/root.qcow2",
      "file=/s/web/seed.iso",
      "file=/s/web/data.qcow2",
    ]);
    const net = a[a.indexOf("-netdev") + 1];
    expect(net).toContain("restrict=on");
    expect(net).toContain("guestfwd=tcp:10.0.2.100:8200-cmd:socat - TCP:127.0.0.1:8200");
    expect(net).toContain("hostfwd=tcp:127.0.0.1:2222-:22");
  });
  it("the measured flags do not depend on the runtime port (the registration is computed before it is known)", () => {
    expect(bootInputsOf(realGuestArgv({ ...inputs, runtimePort: 1 }))).toEqual(bootInputsOf(realGuestArgv(inputs)));
  });
  it("the guest reaches the runtime at the forward's address, on the runtime's port", () => {
    expect(guestRuntimeUrl("https://127.0.0.1:8200")).toBe("https://10.0.2.100:8200");
  });
});

describe("a QEMU that cannot start", () => {
  const haveQemu = spawnSync("qemu-system-x86_64", ["--version"]).status === 0;
  if (!haveQemu) console.warn("SKIP a QEMU that cannot start: qemu-system-x86_64 is not installed");
  it.skipIf(!haveQemu)(
    "fails with QEMU's own reason (a busy ssh forward port), not a bare exit code",
    async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), "bk-qemu-busy-"));
      const busy = createServer();
      try {
        const port = await freePort();
        await new Promise<void>((r) => busy.listen(port, "127.0.0.1", r));
        await initPlatform(path.join(dir, "platform"));
        for (const f of ["vmlinuz", "initrd.img"]) writeFileSync(path.join(dir, f), `not a ${f}\n`);
        writeFileSync(path.join(dir, "root.img"), Buffer.alloc(1 << 20));
        const stateDir = path.join(dir, "web");
        const argv = realGuestArgv({
          name: "web",
          vcpus: 1,
          memoryMb: 256,
          cpuModel: "EPYC-Milan",
          firmware: "/usr/share/ovmf/OVMF.fd",
          kernel: path.join(dir, "vmlinuz"),
          initrd: path.join(dir, "initrd.img"),
          append: "console=ttyS0",
          stateDir,
          runtimePort: 8200,
          sshPort: port,
          dataDisk: false,
        });
        const cfg = path.join(dir, "guest.json");
        writeFileSync(
          cfg,
          JSON.stringify({
            name: "web",
            platformDir: path.join(dir, "platform"),
            stateDir,
            argv,
            baseImage: path.join(dir, "root.img"),
            userData: "#cloud-config\n",
            metaData: "instance-id: web\n",
            sshPort: port,
            timeoutSeconds: 60,
          }),
        );
        const r = spawnSync(process.execPath, [CLI, "simulate", "qemu-guest", "--config", cfg], {
          encoding: "utf8",
          timeout: 60_000,
        });
        expect(r.status).toBe(1);
        const status = JSON.parse(readFileSync(path.join(stateDir, "status.json"), "utf8"));
        expect(status.state).toBe("failed");
        expect(status.reason).toMatch(/^QEMU exited \(1\) before the enclaivelet finished: .*host forwarding rule/);
        expect(status.reason).toContain(String(port));
      } finally {
        busy.close();
        rmSync(dir, { recursive: true, force: true });
      }
    },
    90_000,
  );
});
