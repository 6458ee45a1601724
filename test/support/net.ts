// Small helpers shared by tests that run real servers and engines.
import { createServer } from "node:net";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
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
