// The runtime's own entry point, for the guest artifact (runtime/guest/artifact.ts, kind "runtime"):
// `node main.js CONFIG` starts one in-process server from a config file and stays up until SIGTERM.
// The CLI's `buckypaper runtime server` does the same with the whole kit behind it (cluster workers,
// the simulated evidence source); this entry carries only the server's import closure, so what runs
// in a confidential VM is the server and its npm dependencies, nothing else of the kit.
import { readFileSync } from "node:fs";
import path from "node:path";
import { parseConfig } from "./config.js";
import { startServer } from "./server.js";

const file = process.argv[2];
if (!file) {
  process.stderr.write("usage: bk-runtime CONFIG\n");
  process.exit(2);
}
const cfg = parseConfig(readFileSync(file, "utf8"), path.dirname(path.resolve(file)));
if (cfg.workers > 1 || cfg.attestation?.type === "simulated") {
  process.stderr.write("bk-runtime: one worker and a hardware (or virtio-psp) attestation source only\n");
  process.exit(2);
}
const log = (level: string) => (msg: string) => process.stderr.write(`bk-runtime: ${level}: ${msg}\n`);
const srv = await startServer(cfg, { logger: { info: log("info"), warn: log("warn"), error: log("error") } });
// One line for the console: where it listens, whether it unsealed by itself, the attested key's hash.
process.stdout.write(
  `bk-runtime: listening on ${srv.url} sealed=${srv.core.sealed} initialized=${await srv.core.initialized()}` +
    `${srv.attestedSpkiSha256 ? ` attested_spki_sha256=${srv.attestedSpkiSha256}` : ""}\n`,
);
const stop = () => void srv.close().then(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
