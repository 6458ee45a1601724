// Evidence from the local stack's simulated PSP, which lives OUTSIDE the guest (runtime/sim/qemu/psp.ts)
// and is reached over a virtio-serial port — the stand-in for the SNP guest request channel that QEMU
// under TCG cannot offer. One request per open: the guest writes a JSON line with the 64-byte
// REPORT_DATA, the host answers with a report signed by the simulated platform key, whose MEASUREMENT
// the host computed from the files QEMU was started with (the guest cannot choose it).
// Never auto-detected: a host can attach any channel it likes, and only a runtime configured to trust
// the simulated platform accepts what comes back (its verdicts are then marked simulated).
import { open } from "node:fs/promises";
import { EvidenceError, type EvidenceProvider } from "./types.js";

export const VIRTIO_PSP_PORT_NAME = "org.buckypaper.psp.0";
export const VIRTIO_PSP_PORT = `/dev/virtio-ports/${VIRTIO_PSP_PORT_NAME}`;
const NAME = "virtio-psp";
const MAX_ANSWER = 64 * 1024;

export interface VirtioPspOptions {
  port?: string;
  timeoutMs?: number;
}

export function virtioPspProvider(o: VirtioPspOptions = {}): EvidenceProvider {
  const port = o.port ?? VIRTIO_PSP_PORT;
  const timeoutMs = o.timeoutMs ?? 60_000;
  return {
    name: NAME,
    async available() {
      try {
        await (await open(port, "r")).close();
        return true;
      } catch {
        return false;
      }
    },
    async collect(reportData) {
      if (reportData.length !== 64)
        throw new EvidenceError(NAME, "report", `REPORT_DATA must be 64 bytes, got ${reportData.length}`);
      const msg = await virtioPspExchange(
        port,
        { report_data: reportData.toString("hex") },
        { timeoutMs, fail: (stage, m) => new EvidenceError(NAME, stage === "open" ? stage : "report", m) },
      );
      if (typeof msg.report !== "string" || (msg.cert_table !== undefined && typeof msg.cert_table !== "string"))
        throw new EvidenceError(NAME, "report", "the answer has no report");
      return {
        kind: "snp",
        report: msg.report,
        ...(msg.cert_table !== undefined ? { cert_table: msg.cert_table as string } : {}),
      };
    },
  };
}

/**
 * One request on the virtio-serial PSP port: writes `request` as a JSON line, reads one JSON line
 * back. An `{"error"}` answer (the PSP refused) becomes an error like any other failure. The port is
 * opened per request, as the guest request device is.
 */
export function virtioPspExchange(
  port: string,
  request: Record<string, string>,
  o: { timeoutMs: number; fail: (stage: string, message: string) => Error },
): Promise<Record<string, unknown>> {
  // A virtio-serial port has one opener at a time (a second open is EBUSY): concurrent requests of this
  // process — the runtime answering several attested-TLS clients at once — wait their turn.
  const turn = (queues.get(port) ?? Promise.resolve()).then(() => exchangeOnce(port, request, o));
  const settled = turn.then(
    () => undefined,
    () => undefined,
  );
  queues.set(port, settled);
  void settled.then(() => {
    if (queues.get(port) === settled) queues.delete(port);
  });
  return turn;
}

const queues = new Map<string, Promise<void>>();

async function exchangeOnce(
  port: string,
  request: Record<string, string>,
  o: { timeoutMs: number; fail: (stage: string, message: string) => Error },
): Promise<Record<string, unknown>> {
  let fh;
  try {
    fh = await open(port, "r+");
  } catch (e) {
    throw o.fail("open", `${port}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let timer: NodeJS.Timeout | undefined;
  try {
    await fh.write(`${JSON.stringify(request)}\n`);
    const answer = await Promise.race([
      readLine(fh, o.fail),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(o.fail("request", `no answer on ${port} within ${o.timeoutMs} ms`)),
          o.timeoutMs,
        );
      }),
    ]);
    let msg: unknown;
    try {
      msg = JSON.parse(answer);
    } catch {
      throw o.fail("request", "the answer is not JSON");
    }
    if (msg === null || typeof msg !== "object" || Array.isArray(msg))
      throw o.fail("request", "the answer is not a JSON object");
    const m = msg as Record<string, unknown>;
    if (typeof m.error === "string") throw o.fail("request", `the PSP refused: ${m.error}`);
    return m;
  } finally {
    clearTimeout(timer);
    await fh.close().catch(() => {});
  }
}

async function readLine(
  fh: import("node:fs/promises").FileHandle,
  fail: (stage: string, message: string) => Error,
): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for (;;) {
    const buf = Buffer.alloc(8192);
    const { bytesRead } = await fh.read(buf, 0, buf.length, null);
    if (bytesRead === 0) throw fail("request", "the channel closed before an answer");
    const part = buf.subarray(0, bytesRead);
    const nl = part.indexOf(0x0a);
    chunks.push(nl >= 0 ? part.subarray(0, nl) : part);
    size += part.length;
    if (nl >= 0) return Buffer.concat(chunks).toString("utf8");
    if (size > MAX_ANSWER) throw fail("request", "the answer is too long");
  }
}
