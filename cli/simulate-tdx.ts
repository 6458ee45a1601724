// `buckypaper simulate tdx`: a signed DCAP quote from a freshly generated, SIMULATED Intel hierarchy,
// with collateral signed by the same simulated TCB signing key.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseFlags, parseHexFlag } from "./args.js";
import { pemEncode } from "../runtime/attestation/pem.js";
import { Exit, UsageError, type CliIo } from "./io.js";
import { TdxSimulator } from "../runtime/sim/tdx.js";

const HELP = `usage: buckypaper simulate tdx --out DIR [--version 4|5] [--body-type 2|3] [--mrtd HEX] [--rtmr HEX ...]
                                [--report-data HEX] [--tee-tcb-svn HEX] [--debug] [--json]

  Writes DIR/quote.bin, DIR/root.pem and DIR/collateral/ (TCB info, QE identity, TCB signing chain).
  The Intel hierarchy is SIMULATED and generated afresh on every run; verify with:
    buckypaper verify tdx --quote DIR/quote.bin --collateral DIR/collateral --offline --simulated-root <printed fingerprint>`;

const pem = (der: Uint8Array) => pemEncode("CERTIFICATE", der);

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(argv, {
    out: { type: "string" },
    version: { type: "string" },
    "body-type": { type: "string" },
    mrtd: { type: "string" },
    rtmr: { type: "string", multiple: true },
    "report-data": { type: "string" },
    "tee-tcb-svn": { type: "string" },
    debug: { type: "boolean" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    io.out(HELP);
    return Exit.ok;
  }
  if (!values.out) throw new UsageError(`--out is required\n${HELP}`);
  const version = values.version === undefined ? 4 : Number(values.version);
  if (version !== 4 && version !== 5) throw new UsageError(`--version: 4 or 5, got '${values.version}'`);
  const bodyType = values["body-type"] === undefined ? 3 : Number(values["body-type"]);
  if (bodyType !== 2 && bodyType !== 3)
    throw new UsageError(`--body-type: 2 (TD report 1.0) or 3 (1.5), got '${values["body-type"]}'`);
  if ((values.rtmr?.length ?? 0) > 4) throw new UsageError("--rtmr: at most 4");
  const tdAttributes = Buffer.from("0000001000000000", "hex");
  if (values.debug) tdAttributes[0] |= 1;
  const sim = await TdxSimulator.create();
  const quote = sim.quote({
    version,
    bodyType,
    mrTd: values.mrtd ? parseHexFlag("--mrtd", values.mrtd, 48) : undefined,
    rtmrs: values.rtmr?.map((h) => parseHexFlag("--rtmr", h, 48)),
    reportData: values["report-data"] ? parseHexFlag("--report-data", values["report-data"], 64) : undefined,
    teeTcbSvn: values["tee-tcb-svn"] ? parseHexFlag("--tee-tcb-svn", values["tee-tcb-svn"], 16) : undefined,
    tdAttributes,
  });
  const col = sim.collateral();
  const dir = values.out;
  const colDir = path.join(dir, "collateral");
  mkdirSync(colDir, { recursive: true });
  writeFileSync(path.join(dir, "quote.bin"), quote);
  writeFileSync(path.join(dir, "root.pem"), pem(sim.rootDer));
  writeFileSync(path.join(colDir, "tcb_info.json"), col.tcbInfos[0]);
  writeFileSync(path.join(colDir, "qe_identity.json"), col.qeIdentities[0]);
  writeFileSync(path.join(colDir, "tcb_signing_chain.pem"), col.certificates.map(pem).join(""));
  const summary = {
    simulated: true,
    quote: path.join(dir, "quote.bin"),
    version,
    bodyType: version === 5 ? bodyType : 2,
    rootSha256: sim.rootFingerprint,
    collateral: colDir,
  };
  if (values.json) io.out(JSON.stringify(summary, null, 2));
  else {
    io.out(`SIMULATED TDX quote v${version} written to ${summary.quote}`);
    io.out(`simulated root SHA-256: ${sim.rootFingerprint}`);
    io.out(
      `verify: buckypaper verify tdx --quote ${summary.quote} --collateral ${colDir} --offline --simulated-root ${sim.rootFingerprint}`,
    );
  }
  return Exit.ok;
}
