// The simulated PSP of a real QEMU guest, outside the guest: a Unix socket that QEMU connects a
// virtio-serial port to (the guest sees /dev/virtio-ports/org.buckypaper.psp.0). One JSON line per
// request:
//   {"report_data": hex(64 bytes)}  → {"report", "cert_table"}: MSG_REPORT_REQ, signed by the simulated
//                                     platform key
//   {"key_request": hex(32 bytes)}  → {"key": hex(32 bytes)}: MSG_KEY_REQ (the SNP_GET_DERIVED_KEY
//                                     request layout), derived by the simulated chip (snp.ts deriveKey)
// The MEASUREMENT is fixed when the PSP is created, from the files QEMU is started with (launch.ts), and
// with it what the host passed at launch: POLICY (sev-snp-guest policy=) and HOST_DATA (host-data=);
// nothing the guest sends can change them. Every report carries all three.
// MSG_KEY_REQ is answered only for a kernel-measured launch (the firmware has the SNP kernel-hashes
// table, so MEASUREMENT covers kernel, initrd and the command line with the dm-verity root hash): with
// Debian's OVMF the MEASUREMENT covers firmware and vCPUs only, and a key "bound to the measurement" would
// open for any root disk booted that way — the PSP refuses rather than hand out that false promise.
// (A real PSP would answer; the simulator is stricter on purpose.) The key mixes what the request selects
// (snp.ts deriveKey): the runtime asks for MEASUREMENT + POLICY under the chip's VCEK root. HOST_DATA is
// not a derived-key field on SEV-SNP: it binds the instance in reports, not in sealing.
import net from "node:net";
import { rmSync } from "node:fs";
import type { SnpSimulator } from "../snp.js";

export interface PspRequestLog {
  at: string;
  kind?: "report" | "key";
  ok: boolean;
  error?: string;
}

export interface SimulatedPsp {
  socketPath: string;
  measurement: string;
  policy: bigint;
  /** HOST_DATA, hex (64 digits). */
  hostData: string;
  kernelMeasured: boolean;
  /** Requests answered so far (neither REPORT_DATA nor derived keys are kept). */
  readonly requests: PspRequestLog[];
  close(): Promise<void>;
}

const MAX_LINE = 4096;

export async function startSimulatedPsp(o: {
  sim: SnpSimulator;
  measurement: string;
  socketPath: string;
  /** The guest POLICY the launch was made with (default 0x30000, as the simulator's reports). */
  policy?: bigint;
  /** HOST_DATA the host launched with (32 bytes; default zeros, as a launch without host-data=). */
  hostData?: Uint8Array;
  /**
   * Whether MEASUREMENT covers the kernel, initrd and command line (a kernel-hashes firmware). Without
   * it the PSP refuses derived keys (reports are still answered: they say what was measured).
   */
  kernelMeasured: boolean;
}): Promise<SimulatedPsp> {
  const policy = o.policy ?? 0x30000n;
  const measurementBytes = Buffer.from(o.measurement, "hex");
  if (measurementBytes.length !== 48) throw new RangeError("measurement: must be 48 bytes, hex");
  if (o.hostData !== undefined && o.hostData.length !== 32) throw new RangeError("hostData: must be 32 bytes");
  const hostData = Buffer.from(o.hostData ?? new Uint8Array(32));
  rmSync(o.socketPath, { force: true });
  const requests: PspRequestLog[] = [];
  const sockets = new Set<net.Socket>();
  const answer = async (line: string): Promise<string> => {
    let msg: { report_data?: unknown; key_request?: unknown };
    let kind: PspRequestLog["kind"];
    try {
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        throw new Error("the request is not JSON");
      }
      if (msg === null || typeof msg !== "object") throw new Error("the request is not a JSON object");
      if (msg.key_request !== undefined) {
        kind = "key";
        if (typeof msg.key_request !== "string" || !/^[0-9a-f]{64}$/i.test(msg.key_request))
          throw new Error("key_request must be 32 bytes, hex");
        // deriveKey checks the request as the firmware would (reserved bits, VMPL, GUEST_SVN).
        const key = o.sim.deriveKey(Buffer.from(msg.key_request, "hex"), {
          measurement: measurementBytes,
          policy,
          kernelMeasured: o.kernelMeasured,
        });
        requests.push({ at: new Date().toISOString(), kind, ok: true });
        return JSON.stringify({ key: Buffer.from(key).toString("hex") });
      }
      kind = "report";
      if (typeof msg.report_data !== "string" || !/^[0-9a-f]{128}$/i.test(msg.report_data))
        throw new Error("report_data must be 64 bytes, hex");
      const r = await o.sim.report({
        measurement: o.measurement,
        reportData: Buffer.from(msg.report_data, "hex"),
        policy,
        hostData,
      });
      requests.push({ at: new Date().toISOString(), kind, ok: true });
      return JSON.stringify({
        report: Buffer.from(r.report).toString("base64"),
        cert_table: Buffer.from(r.certTable).toString("base64"),
      });
    } catch (e) {
      const error = (e as Error).message;
      requests.push({ at: new Date().toISOString(), ...(kind ? { kind } : {}), ok: false, error });
      return JSON.stringify({ error });
    }
  };
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on("close", () => sockets.delete(sock));
    sock.on("error", () => {});
    let pending = "";
    // Requests on one connection are answered in order.
    let chain = Promise.resolve();
    sock.on("data", (d) => {
      pending += d.toString("utf8");
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, nl).trim();
        pending = pending.slice(nl + 1);
        if (!line) continue;
        chain = chain.then(async () => {
          const out = await answer(line).catch((e: Error) => JSON.stringify({ error: e.message }));
          if (!sock.destroyed) sock.write(`${out}\n`);
        });
      }
      if (pending.length > MAX_LINE) {
        pending = "";
        requests.push({ at: new Date().toISOString(), ok: false, error: "request too long" });
        sock.write(`${JSON.stringify({ error: "request too long" })}\n`);
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.socketPath, () => resolve());
  });
  return {
    socketPath: o.socketPath,
    measurement: o.measurement,
    policy,
    hostData: hostData.toString("hex"),
    kernelMeasured: o.kernelMeasured,
    requests,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(o.socketPath, { force: true });
    },
  };
}
