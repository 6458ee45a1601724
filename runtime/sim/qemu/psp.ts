// The simulated PSP of a real QEMU guest, outside the guest: a Unix socket that QEMU connects a
// virtio-serial port to (the guest sees /dev/virtio-ports/org.buckypaper.psp.0). It answers report
// requests — one JSON line {"report_data": hex(64 bytes)} each — with an SNP report signed by the
// simulated platform key. The MEASUREMENT is fixed when the PSP is created, from the files QEMU is
// started with (launch.ts); nothing the guest sends can change it.
import net from "node:net";
import { rmSync } from "node:fs";
import type { SnpSimulator } from "../snp.js";

export interface PspRequestLog {
  at: string;
  ok: boolean;
  error?: string;
}

export interface SimulatedPsp {
  socketPath: string;
  measurement: string;
  /** Report requests answered so far (REPORT_DATA is not secret but is not kept either). */
  readonly requests: PspRequestLog[];
  close(): Promise<void>;
}

const MAX_LINE = 4096;

export async function startSimulatedPsp(o: {
  sim: SnpSimulator;
  measurement: string;
  socketPath: string;
}): Promise<SimulatedPsp> {
  rmSync(o.socketPath, { force: true });
  const requests: PspRequestLog[] = [];
  const sockets = new Set<net.Socket>();
  const answer = async (line: string): Promise<string> => {
    let reportData: Buffer;
    try {
      const msg = JSON.parse(line) as { report_data?: unknown };
      if (typeof msg.report_data !== "string" || !/^[0-9a-f]{128}$/i.test(msg.report_data))
        throw new Error("report_data must be 64 bytes, hex");
      reportData = Buffer.from(msg.report_data, "hex");
    } catch (e) {
      const error = e instanceof SyntaxError ? "the request is not JSON" : (e as Error).message;
      requests.push({ at: new Date().toISOString(), ok: false, error });
      return JSON.stringify({ error });
    }
    const r = await o.sim.report({ measurement: o.measurement, reportData });
    requests.push({ at: new Date().toISOString(), ok: true });
    return JSON.stringify({
      report: Buffer.from(r.report).toString("base64"),
      cert_table: Buffer.from(r.certTable).toString("base64"),
    });
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
    requests,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(o.socketPath, { force: true });
    },
  };
}
