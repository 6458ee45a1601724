// Vault clients (vault CLI, hvac, node-vault) send the non-standard HTTP verb LIST, which Node's
// HTTP parser rejects before any handler runs. Vault treats `LIST p` as `GET p?list=true`, so we
// rewrite the request line on the way in: each accepted socket is wrapped in a Duplex that edits a
// chunk starting with "LIST " (clients write a request line at the start of a write) and passes
// everything else through untouched.
import { Duplex } from "node:stream";
import type { Socket } from "node:net";

const LIST_LINE = /^LIST ([^ \r\n]+) (HTTP\/1\.[01])\r\n/;

export function rewriteListRequestLine(chunk: Buffer): Buffer {
  if (chunk.length < 5 || chunk[0] !== 0x4c || chunk.subarray(0, 5).toString("latin1") !== "LIST ") return chunk;
  const head = chunk.subarray(0, Math.min(chunk.length, 8192)).toString("latin1");
  const m = LIST_LINE.exec(head);
  if (!m) return chunk;
  const target = m[1] + (m[1].includes("?") ? "&" : "?") + "list=true";
  return Buffer.concat([Buffer.from(`GET ${target} ${m[2]}\r\n`, "latin1"), chunk.subarray(Buffer.byteLength(m[0], "latin1"))]);
}

/** A Duplex over `socket` that rewrites LIST request lines; looks enough like a Socket for node:http. */
export function wrapSocket(socket: Socket): Duplex {
  const d = new Duplex({
    read() { socket.resume(); },
    write(chunk, enc, cb) { socket.write(chunk, enc, cb); },
    final(cb) { socket.end(); cb(); },
    destroy(err, cb) { socket.destroy(err ?? undefined); cb(err); },
  });
  socket.on("data", (c: Buffer) => { if (!d.push(rewriteListRequestLine(c))) socket.pause(); });
  socket.on("end", () => d.push(null));
  socket.on("error", (e) => d.destroy(e));
  socket.on("close", () => d.destroy());
  const s = socket as unknown as Record<string, unknown>;
  for (const prop of ["remoteAddress", "remotePort", "remoteFamily", "localAddress", "localPort", "encrypted", "authorized"]) {
    Object.defineProperty(d, prop, { get: () => s[prop] });
  }
  const fwd = d as unknown as Record<string, unknown>;
  fwd.setTimeout = (ms: number, cb?: () => void) => { socket.setTimeout(ms, cb); return d; };
  fwd.setNoDelay = (v?: boolean) => { socket.setNoDelay(v); return d; };
  fwd.setKeepAlive = (e?: boolean, ms?: number) => { socket.setKeepAlive(e, ms); return d; };
  fwd.address = () => socket.address();
  fwd.getPeerCertificate = (detailed?: boolean) => (socket as unknown as { getPeerCertificate?: (d?: boolean) => unknown }).getPeerCertificate?.(detailed);
  socket.on("timeout", () => d.emit("timeout"));
  return d;
}
