// Vault clients (vault CLI, hvac, node-vault) send the non-standard HTTP verb LIST, which Node's HTTP
// parser rejects (HPE_INVALID_METHOD) before any route runs. Vault treats `LIST p` as
// `GET p?list=true`; so do we: the parser error hands us the raw bytes, we parse the request line
// and headers, replay the request in-process as a GET with list=true (fastify inject), write the
// response and close the connection. Regular requests keep Node's native parser fast path.
import type { Socket } from "node:net";
import { STATUS_CODES } from "node:http";
import type { FastifyInstance } from "fastify";

const MAX_HEAD = 64 * 1024;

export interface ParsedListRequest {
  url: string;
  headers: Record<string, string>;
}

/** Parses a complete LIST request head (request line + headers); undefined if it is not one. */
export function parseListRequest(raw: Buffer): ParsedListRequest | undefined {
  const text = raw.subarray(0, MAX_HEAD).toString("latin1");
  const end = text.indexOf("\r\n\r\n");
  if (!text.startsWith("LIST ") || end === -1) return undefined;
  const [line, ...headerLines] = text.slice(0, end).split("\r\n");
  const m = /^LIST (\/[^ ]*) HTTP\/1\.[01]$/.exec(line);
  if (!m) return undefined;
  const headers: Record<string, string> = {};
  for (const h of headerLines) {
    const i = h.indexOf(":");
    if (i <= 0) return undefined;
    headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
  }
  if (headers["content-length"] && headers["content-length"] !== "0") return undefined; // LIST has no body
  if (headers["transfer-encoding"]) return undefined;
  const url = m[1] + (m[1].includes("?") ? "&" : "?") + "list=true";
  return { url, headers };
}

function writeAndClose(
  socket: Socket,
  status: number,
  headers: Record<string, string | number | string[] | undefined>,
  body: string,
) {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}`];
  for (const [k, v] of Object.entries(headers)) {
    if (
      v === undefined ||
      ["connection", "content-length", "transfer-encoding", "keep-alive"].includes(k.toLowerCase())
    )
      continue;
    for (const x of Array.isArray(v) ? v : [v]) lines.push(`${k}: ${x}`);
  }
  const payload = Buffer.from(body, "utf8");
  lines.push(`content-length: ${payload.length}`, "connection: close", "", "");
  socket.end(Buffer.concat([Buffer.from(lines.join("\r\n"), "latin1"), payload]));
}

/** fastify `clientErrorHandler`: serves LIST, otherwise answers 400 like Node's default. */
export function listAwareClientErrorHandler(getApp: () => FastifyInstance) {
  return (error: Error, socket: Socket) => {
    const err = error as Error & { code?: string; rawPacket?: Buffer };
    const parsed = err.code === "HPE_INVALID_METHOD" && err.rawPacket ? parseListRequest(err.rawPacket) : undefined;
    if (!parsed) {
      if (socket.writable)
        writeAndClose(socket, 400, { "content-type": "application/json" }, JSON.stringify({ errors: ["bad request"] }));
      else socket.destroy();
      return;
    }
    getApp()
      .inject({
        method: "GET",
        url: parsed.url,
        headers: parsed.headers,
        remoteAddress: socket.remoteAddress ?? "127.0.0.1",
      })
      .then((res) => writeAndClose(socket, res.statusCode, res.headers, res.body))
      .catch(() => socket.destroy());
  };
}
