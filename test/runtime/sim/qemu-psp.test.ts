// The virtio-serial simulated PSP (runtime/sim/qemu/psp.ts) answering MSG_KEY_REQ as well as
// MSG_REPORT_REQ, reached the way a guest reaches it: a character device (here a PTY that socat joins
// to the PSP's Unix socket, as QEMU's virtserialport does) opened by the in-guest clients — the
// `snp-derived-key` seal over virtio-psp (guest/sealing.ts) and the virtio-psp evidence provider.
// The runtime's own config path (seal transport "virtio-psp") auto-unseals a real SQLite file with it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createSnpSimulator, type SnpSimulator } from "../../../runtime/sim/snp.js";
import { startSimulatedPsp, type SimulatedPsp } from "../../../runtime/sim/qemu/psp.js";
import { virtioPspDerivedKey, DerivedKeyError } from "../../../runtime/guest/sealing.js";
import { virtioPspProvider } from "../../../runtime/guest/evidence/virtio-psp.js";
import { AUTO_UNSEAL_KEY_REQUEST, encodeKeyRequest } from "../../../runtime/attestation/snp/derived-key.js";
import { parseConfig } from "../../../runtime/server/http/config.js";
import { autoUnsealFromConfig } from "../../../runtime/server/http/server.js";
import { SqliteStorage } from "../../../runtime/server/storage/sqlite.js";
import { Core } from "../../../runtime/server/vault/core.js";
import { builtinRegistry } from "../../../runtime/server/engines.js";
import { haveCommand, requireTool } from "../../support/prereq.js";

const ok = requireTool("socat", haveCommand("socat", ["-V"]));
const M_A = "a1".repeat(48);
const M_B = "b2".repeat(48);
const REQ = encodeKeyRequest(AUTO_UNSEAL_KEY_REQUEST, "Milan");

interface Channel {
  psp: SimulatedPsp;
  port: string;
  socat: ChildProcess;
}

let dir: string;
let chipA: SnpSimulator;
let chipB: SnpSimulator;
const channels: Channel[] = [];

/** A PSP for one launch, and the "guest device" joined to it. */
async function channel(
  name: string,
  sim: SnpSimulator,
  measurement: string,
  policy?: bigint,
  launch: { kernelMeasured?: boolean; hostData?: Uint8Array } = {},
): Promise<Channel> {
  const psp = await startSimulatedPsp({
    sim,
    measurement,
    socketPath: path.join(dir, `${name}.sock`),
    policy,
    kernelMeasured: launch.kernelMeasured ?? true,
    ...(launch.hostData ? { hostData: launch.hostData } : {}),
  });
  const port = path.join(dir, `${name}.port`);
  const socat = spawn("socat", [`UNIX-CONNECT:${psp.socketPath}`, `PTY,link=${port},raw,echo=0`], { stdio: "ignore" });
  for (let i = 0; i < 100 && !existsSync(port); i++) await new Promise((r) => setTimeout(r, 50));
  if (!existsSync(port)) throw new Error("socat did not create the PTY");
  const c = { psp, port, socat };
  channels.push(c);
  return c;
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "bk-qemu-psp-"));
  [chipA, chipB] = await Promise.all([createSnpSimulator({ rsaBits: 1024 }), createSnpSimulator({ rsaBits: 1024 })]);
});
afterAll(async () => {
  for (const c of channels) {
    c.socat.kill();
    await c.psp.close();
  }
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!ok)("simulated PSP over virtio-serial: derived keys", () => {
  it("answers MSG_KEY_REQ with the chip's key for the launch's measurement and policy", async () => {
    const c = await channel("a", chipA, M_A);
    const key = await virtioPspDerivedKey(REQ, { port: c.port, timeoutMs: 10_000 });
    const expected = chipA.deriveKey(REQ, { measurement: Buffer.from(M_A, "hex"), policy: 0x30000n });
    expect(Buffer.from(key).equals(Buffer.from(expected))).toBe(true);
    // Deterministic across requests on the same launch.
    expect(Buffer.from(await virtioPspDerivedKey(REQ, { port: c.port })).equals(Buffer.from(key))).toBe(true);
    expect(c.psp.requests.filter((r) => r.kind === "key" && r.ok)).toHaveLength(2);
    // The same channel still serves reports, with the launch's measurement and policy.
    const ev = await virtioPspProvider({ port: c.port, timeoutMs: 10_000 }).collect(Buffer.alloc(64, 7));
    const report = Buffer.from(ev.kind === "snp" ? ev.report : "", "base64");
    expect(report.subarray(0x90, 0x90 + 48).toString("hex")).toBe(M_A);
    expect(report.readBigUInt64LE(0x08)).toBe(0x30000n);
  });

  it("concurrent report requests of one process take turns on the port: each gets the report for its own data", async () => {
    // The runtime answers several attested-TLS clients at once (a `pulumi destroy` deletes resources in
    // parallel); a virtio-serial port has one opener at a time, so the requests are serialised per port.
    const c = await channel("concurrent", chipA, M_A);
    const p = virtioPspProvider({ port: c.port, timeoutMs: 20_000 });
    const evs = await Promise.all([1, 2, 3, 4, 5].map((i) => p.collect(Buffer.alloc(64, i))));
    evs.forEach((ev, n) => {
      const report = Buffer.from(ev.kind === "snp" ? ev.report : "", "base64");
      expect(report.subarray(0x50, 0x50 + 64).equals(Buffer.alloc(64, n + 1)), `request ${n + 1}`).toBe(true);
    });
  });

  it("another measurement, another policy, another chip or another root key derive another key", async () => {
    const a = await virtioPspDerivedKey(REQ, { port: (await channel("a2", chipA, M_A)).port });
    const otherMeasurement = await virtioPspDerivedKey(REQ, { port: (await channel("b", chipA, M_B)).port });
    const otherChip = await virtioPspDerivedKey(REQ, { port: (await channel("c", chipB, M_A)).port });
    const debugPolicy = await virtioPspDerivedKey(REQ, {
      port: (await channel("d", chipA, M_A, 0x30000n | (1n << 19n))).port,
    });
    const vmrk = await virtioPspDerivedKey(encodeKeyRequest({ ...AUTO_UNSEAL_KEY_REQUEST, rootKey: "vmrk" }, "Milan"), {
      port: (await channel("e", chipA, M_A)).port,
    });
    const hex = [a, otherMeasurement, otherChip, debugPolicy, vmrk].map((k) => Buffer.from(k).toString("hex"));
    expect(new Set(hex).size).toBe(5);
  });

  it("refuses MSG_KEY_REQ for a launch that is not kernel-measured (Debian's OVMF), still answering reports", async () => {
    const c = await channel("unbound", chipA, M_A, undefined, { kernelMeasured: false });
    await expect(virtioPspDerivedKey(REQ, { port: c.port, timeoutMs: 10_000 })).rejects.toThrow(
      /the PSP refused: .*not kernel-measured.*kernel-hashes/,
    );
    expect(() =>
      chipA.deriveKey(REQ, { measurement: Buffer.from(M_A, "hex"), policy: 0x30000n, kernelMeasured: false }),
    ).toThrow(/MSG_KEY_REQ refused/);
    const ev = await virtioPspProvider({ port: c.port, timeoutMs: 10_000 }).collect(Buffer.alloc(64, 7));
    expect(
      Buffer.from(ev.kind === "snp" ? ev.report : "", "base64")
        .subarray(0x90, 0x90 + 48)
        .toString("hex"),
    ).toBe(M_A);
    expect(c.psp.requests.map((r) => `${r.kind}:${r.ok}`)).toEqual(["key:false", "report:true"]);
  });

  it("reports carry the launch's POLICY and HOST_DATA, as the host passed them", async () => {
    const hostData = Buffer.alloc(32, 0x5a);
    const policy = 0x30000n | (1n << 20n); // single socket
    const c = await channel("hd", chipA, M_A, policy, { hostData });
    const ev = await virtioPspProvider({ port: c.port, timeoutMs: 10_000 }).collect(Buffer.alloc(64, 7));
    const report = Buffer.from(ev.kind === "snp" ? ev.report : "", "base64");
    expect(report.readBigUInt64LE(0x08)).toBe(policy);
    expect(report.subarray(0xc0, 0xe0).equals(hostData)).toBe(true);
    expect(c.psp.hostData).toBe(hostData.toString("hex"));
  });

  it("refuses malformed key requests by name and stays up", async () => {
    const c = await channel("f", chipA, M_A);
    const bad = Buffer.from(REQ);
    bad[4] = 1; // reserved bytes
    await expect(virtioPspDerivedKey(bad, { port: c.port })).rejects.toThrow(/the PSP refused: .*reserved/);
    await expect(virtioPspDerivedKey(new Uint8Array(31), { port: c.port })).rejects.toThrow(DerivedKeyError);
    // The guest may not ask for a more privileged VMPL's key than its own (VMPL 0 is the most privileged,
    // so this asks for a GUEST_SVN above the guest's 0 instead).
    const svn = encodeKeyRequest({ ...AUTO_UNSEAL_KEY_REQUEST, guestSvn: 1 }, "Milan");
    await expect(virtioPspDerivedKey(svn, { port: c.port })).rejects.toThrow(/GUEST_SVN/);
    expect(c.psp.requests.filter((r) => r.kind === "key" && !r.ok)).toHaveLength(2);
    expect(Buffer.from(await virtioPspDerivedKey(REQ, { port: c.port })).length).toBe(32);
    await expect(virtioPspDerivedKey(REQ, { port: path.join(dir, "nope"), timeoutMs: 1000 })).rejects.toThrow(
      /virtio-psp: open: .*ENOENT/,
    );
  });

  it('the runtime\'s seal "snp-derived-key" { transport = "virtio-psp" } auto-unseals a restart of the same launch only', async () => {
    const file = path.join(dir, "rt.db");
    const cfg = (port: string) =>
      parseConfig(
        `storage "sqlite" { path = "${file}" }\nlistener "tcp" { address = "127.0.0.1:0" }\n` +
          `seal "snp-derived-key" { transport = "virtio-psp"  port = "${port}" }\n`,
        dir,
      );
    const a = await channel("g", chipA, M_A);
    expect(cfg(a.port).seal).toEqual({ type: "snp-derived-key", transport: "virtio-psp", port: a.port });
    const open = async (port: string) => {
      const physical = new SqliteStorage(file);
      const core = new Core({ physical, registry: builtinRegistry(), autoUnseal: autoUnsealFromConfig(cfg(port)) });
      await core.start();
      return { core, physical };
    };
    const first = await open(a.port);
    const init = await first.core.initialize(3, 2);
    await first.core.unsealWith(init.keys.slice(0, 2));
    await first.core.seal();
    await first.physical.close();

    const again = await open(a.port);
    expect(again.core.sealed).toBe(false);
    await again.core.seal();
    await again.physical.close();

    for (const other of [await channel("h", chipB, M_A), await channel("i", chipA, M_B)]) {
      const o = await open(other.port);
      expect(o.core.sealed).toBe(true);
      await o.physical.close();
    }
    expect(readFileSync(file).includes(Buffer.from(init.root_token))).toBe(false);
  });

  it("the config names the field and the allowed values", () => {
    const base = 'storage "sqlite" { path = "x" }\nlistener "tcp" {}\n';
    expect(() => parseConfig(base + 'seal "snp-derived-key" { transport = "tpm" }')).toThrow(
      /seal.snp-derived-key.transport: unknown transport 'tpm' \(sev-guest, virtio-psp\)/,
    );
    expect(() => parseConfig(base + 'seal "snp-derived-key" { transport = "virtio-psp"  device = "/x" }')).toThrow(
      /unknown setting 'device' \(transport, port\)/,
    );
    expect(parseConfig(base + 'seal "snp-derived-key" { transport = "virtio-psp" }').seal).toEqual({
      type: "snp-derived-key",
      transport: "virtio-psp",
      port: "/dev/virtio-ports/org.buckypaper.psp.0",
    });
  });
});
