// Pinning by CA fingerprint (runtime/tls-pin.ts) as the runtime CLI uses it: the pinned certificate
// must be the trust anchor of a fully verified chain, and nothing (unseal keys!) is sent before that.
// An impostor that appends the public runtime CA certificate to its own chain must be refused.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { runtimeRequest } from "../../../runtime/client/request.js";
import { sha256Hex } from "../../../runtime/client/tls-pin.js";
import { X509Certificate } from "node:crypto";

const dir = mkdtempSync(path.join(tmpdir(), "bk-pin-"));
const f = (n: string) => path.join(dir, n);
const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });

function ca(name: string) {
  openssl(
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    f(`${name}.key`),
    "-out",
    f(`${name}.pem`),
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign",
  );
}
function leaf(name: string, issuer: string) {
  openssl(
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    f(`${name}.key`),
    "-out",
    f(`${name}.csr`),
    "-subj",
    `/CN=${name}`,
  );
  writeFileSync(f(`${name}.ext`), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n");
  openssl(
    "x509",
    "-req",
    "-in",
    f(`${name}.csr`),
    "-CA",
    f(`${issuer}.pem`),
    "-CAkey",
    f(`${issuer}.key`),
    "-CAcreateserial",
    "-out",
    f(`${name}.pem`),
    "-days",
    "1",
    "-extfile",
    f(`${name}.ext`),
  );
}

let hits = 0;
const servers: https.Server[] = [];
async function serve(certChainPem: string, keyFile: string): Promise<string> {
  const s = https.createServer({ cert: certChainPem, key: readFileSync(keyFile) }, (_req, res) => {
    hits++;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ sealed: false }));
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return `https://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

let pin: string;
beforeAll(() => {
  ca("runtime-ca");
  ca("attacker-ca");
  leaf("genuine", "runtime-ca");
  leaf("impostor", "attacker-ca");
  pin = sha256Hex(new X509Certificate(readFileSync(f("runtime-ca.pem"))).raw);
});
afterAll(() => {
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("runtime CLI client: TLS pinned by the runtime CA fingerprint", () => {
  it("talks to a server whose chain verifies up to the pinned CA", async () => {
    const url = await serve(
      readFileSync(f("genuine.pem"), "utf8") + readFileSync(f("runtime-ca.pem"), "utf8"),
      f("genuine.key"),
    );
    const before = hits;
    const r = await runtimeRequest(url, "PUT", "sys/unseal", { key: "share" }, { caFingerprint: pin });
    expect(r.status).toBe(200);
    expect(hits).toBe(before + 1);
  });

  it("refuses an impostor that appends the public runtime CA to its own chain, before sending anything", async () => {
    const url = await serve(
      readFileSync(f("impostor.pem"), "utf8") + readFileSync(f("runtime-ca.pem"), "utf8"),
      f("impostor.key"),
    );
    const before = hits;
    await expect(runtimeRequest(url, "PUT", "sys/unseal", { key: "share" }, { caFingerprint: pin })).rejects.toThrow(
      /cannot reach|certificate|verify|signature/i,
    );
    expect(hits).toBe(before); // the unseal key never left the client
  });

  it("refuses a server that does not present the pinned CA at all", async () => {
    const url = await serve(readFileSync(f("impostor.pem"), "utf8"), f("impostor.key"));
    const before = hits;
    await expect(runtimeRequest(url, "GET", "sys/health", undefined, { caFingerprint: pin })).rejects.toThrow(
      /matches the pinned runtime CA/,
    );
    expect(hits).toBe(before);
  });
});
