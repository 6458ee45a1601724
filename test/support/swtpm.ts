// A real software TPM 2.0 (swtpm, libtpms) on loopback ports for tests: quotes and PCRs come from a genuine
// TPM implementation, driven through tpm2-tools exactly as the enclaivelet drives /dev/tpmrm0.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort } from "./net.js";
import { haveCommand, requireTool } from "./prereq.js";

export function haveSwtpm(): boolean {
  return requireTool(
    "swtpm + tpm2-tools (apt-get install swtpm swtpm-tools tpm2-tools)",
    haveCommand("swtpm", ["--version"]) && haveCommand("tpm2_quote", ["--version"]),
  );
}

export class SwTpm {
  private constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
    readonly tcti: string,
  ) {}

  /** Starts swtpm on free loopback ports; a port taken in between (parallel tests) means another try. */
  static async start(): Promise<SwTpm> {
    let why = "";
    for (let attempt = 0; attempt < 5; attempt++) {
      const r = await SwTpm.tryStart();
      if (r instanceof SwTpm) return r;
      why = r;
      if (!/Address already in use/.test(r)) break;
    }
    throw new Error(`swtpm did not come up: ${why}`);
  }

  private static async tryStart(): Promise<SwTpm | string> {
    const dir = mkdtempSync(path.join(tmpdir(), "bp-swtpm-"));
    // The swtpm TCTI talks to the control channel on port + 1.
    const port = await freePort();
    const ctrl = port + 1;
    const child = spawn(
      "swtpm",
      [
        "socket",
        "--tpm2",
        "--tpmstate",
        `dir=${dir}`,
        "--server",
        `type=tcp,port=${port},bindaddr=127.0.0.1`,
        "--ctrl",
        `type=tcp,port=${ctrl},bindaddr=127.0.0.1`,
        "--flags",
        "not-need-init,startup-clear",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const tpm = new SwTpm(child, dir, `swtpm:host=127.0.0.1,port=${port}`);
    let last = "";
    for (let i = 0; i < 50 && child.exitCode === null; i++) {
      const r = tpm.tool(["tpm2_getcap", "properties-fixed"]);
      if (r.status === 0) return tpm;
      last = r.stderr?.toString() ?? String(r.error);
      await new Promise((r) => setTimeout(r, 100));
    }
    await tpm.stop();
    return `${stderr.trim()} ${last.trim().split("\n").slice(-2).join(" / ")}`;
  }

  tool(argv: string[]) {
    return spawnSync(argv[0], argv.slice(1), { env: { ...process.env, TPM2TOOLS_TCTI: this.tcti } });
  }

  /** PCR_Extend(pcr, sha256 digest) — what firmware and boot loaders do for each logged event. */
  extend(pcr: number, sha256: Uint8Array): void {
    const r = this.tool(["tpm2_pcrextend", `${pcr}:sha256=${Buffer.from(sha256).toString("hex")}`]);
    if (r.status !== 0) throw new Error(`tpm2_pcrextend: ${r.stderr.toString()}`);
  }

  /**
   * Replays a boot's PCR extends into both banks at once (SHA-256 and SHA-384, one event each), as firmware does
   * on a TPM with both banks active — a NitroTPM's document reads the SHA-384 one. `extends384[i]` is the same
   * event as `extends[i]`.
   */
  extendBothBanks(boot: { extends: Array<[number, Buffer]>; extends384: Array<[number, Buffer]> }): void {
    for (let i = 0; i < boot.extends.length; i++) {
      const [pcr, d256] = boot.extends[i];
      const d384 = boot.extends384[i][1];
      const r = this.tool(["tpm2_pcrextend", `${pcr}:sha256=${d256.toString("hex")},sha384=${d384.toString("hex")}`]);
      if (r.status !== 0) throw new Error(r.stderr.toString());
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) {
      const done = new Promise((r) => this.child.once("exit", r));
      this.child.kill("SIGTERM");
      await done;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
