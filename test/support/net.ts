// Small helpers shared by tests that run real servers and engines.
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer, type AddressInfo } from "node:net";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";

/**
 * A TCP port free on 127.0.0.1 right now, chosen below the kernel's ephemeral range (32768–60999).
 * Why not listen(0): that hands out an ephemeral port, and tests bind theirs minutes later (a stack
 * deploys a runtime first, then QEMU forwards the guest's sshd) — by then any outgoing connection on
 * the machine, or another test file's listen(0), may hold it, and QEMU exits 1 on the busy hostfwd
 * (CI: "QEMU guest web did not come up: QEMU exited (1)"). Random picks in 20000–32767 collide with
 * neither; the bind check rules out what is listening now.
 */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const port = 20000 + Math.floor(Math.random() * (32768 - 20000));
    if (await bindable(port)) return port;
  }
  throw new Error("no free TCP port in 20000–32767 after 200 tries");
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

/** Every file under dir, concatenated as latin1 (state files, backups, history), for plaintext greps. */
export function allText(dir: string): string {
  let out = "";
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    out += statSync(p).isDirectory() ? allText(p) : readFileSync(p, "latin1");
  }
  return out;
}

/** One request a recording server answered: what a test reads to say what a guest asked, and when. */
export interface RecordedRequest {
  method: string;
  path: string;
  status: number;
  at: number;
}

/**
 * An HTTP server on 127.0.0.1 (port chosen by the kernel) that records every request: `handle` answers it and returns
 * its status and whatever else the test wants recorded (`failed` when it throws: a 500 with the message).
 */
export async function startRecordingServer<X extends object>(
  handle: (req: IncomingMessage, res: ServerResponse) => Promise<{ status: number } & X>,
  failed: X,
): Promise<{ port: number; requests: (RecordedRequest & X)[]; close(): Promise<void> }> {
  const requests: (RecordedRequest & X)[] = [];
  const server = createHttpServer((req, res) => {
    const at = Date.now();
    const base = { method: req.method ?? "?", path: req.url ?? "/", at };
    handle(req, res).then(
      (r) => requests.push({ ...base, ...r }),
      (e: Error) => {
        requests.push({ ...base, ...failed, status: 500 });
        if (!res.headersSent) res.writeHead(500);
        res.end(e.message);
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
