// Runs every ```sh example of README.md as written, block by block, in one scratch directory with
// `bin/` on PATH — what a newcomer would paste. Only these rewrites happen: the runtime's example
// ports (8200, 8210) become free ports (several test files run at once), and the few examples in SKIP
// print why they do not run here. Files the examples name (report.bin, quote.bin, evidence.json…) are
// real evidence from ../shared, linked into the scratch directory under those names.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { freePort } from "../support/net.js";
import { repoRoot, sharedDir, hasShared } from "../support/shared.js";
import { shellBlocks } from "../support/markdown.js";

/** Examples that cannot run on a CI machine, and why. Keep this short: everything else must run. */
const SKIP: Array<{ match: RegExp; reason: string }> = [
  {
    match: /^npm run local$/,
    reason: "the local stack end to end (real QEMU guests): test/stacks/local/ runs it on the real engine",
  },
  { match: /^npm test$/, reason: "this test is part of it" },
  { match: /OVMF-AmdSev\.fd/, reason: "needs an OVMF AmdSevX64 build (kernel-hashes table); Debian ships none" },
  { match: /svsm_ovmf\.fd/, reason: "needs COCONUT-SVSM binaries; Debian ships none" },
  { match: /^buckypaper verify snp --report report\.bin$/, reason: "fetches from AMD KDS, not reachable from CI" },
  { match: /^buckypaper enclaivelet run /, reason: "runs in a provisioned guest: test/runtime/guest/ drives it" },
  {
    match: /^buckypaper enclaivelet vtpm-evidence /,
    reason: "needs a TPM 2.0 (/dev/tpmrm0): test/runtime/guest/vtpm-evidence-command.test.ts drives it against swtpm",
  },
];

/** README names → real evidence under ../shared. */
const FIXTURES: Record<string, string> = {
  "report.bin": "evidence/snp/virtee-sev-milan-v2/report.bin",
  "vcek.der": "evidence/snp/virtee-sev-milan-v2/vcek.der",
  "ask_ark.pem": "evidence/snp/virtee-sev-milan-v2/ask_ark.pem",
  "quote.bin": "evidence/tdx/go-tdx-guest-spr-e4-v4/quote.bin",
  pcs: "evidence/tdx/go-tdx-guest-collateral",
  "evidence.json": "evidence/cloud/azure-snp-vtpm-trustee/evidence-v1.json",
  trust: "evidence/trust",
  "hcl.bin": "evidence/cloud/azure-tdx-vtpm-trustee/hcl-report.bin",
  "tpm-quote.bin": "evidence/cloud/azure-tdx-vtpm-trustee/quote.bin",
  "td-quote.bin": "evidence/cloud/azure-tdx-vtpm-trustee/td-quote.bin",
};

/** The command without a trailing `# comment` (two spaces before the #, as the README writes them). */
function withoutComment(cmd: string): string {
  return cmd.replace(/\s{2,}#.*$/, "").trim();
}

function runBash(script: string, cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const p = spawn("bash", ["-c", script], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (out += d));
    p.on("close", (code) => resolve({ code: code ?? -1, out }));
  });
}

const readme = readFileSync(path.join(repoRoot, "README.md"), "utf8");
const blocks = shellBlocks(readme);
const work = mkdtempSync(path.join(tmpdir(), "bk-readme-"));
const missingFixtures = new Set<string>();
for (const [name, rel] of Object.entries(FIXTURES)) {
  if (hasShared) symlinkSync(path.join(sharedDir, rel), path.join(work, name));
  else missingFixtures.add(name);
}
// scripts/ and .bk/ as in a checkout (scripts/fetch-boot-inputs.sh writes the repository's .bk/boot).
mkdirSync(path.join(repoRoot, ".bk"), { recursive: true });
symlinkSync(path.join(repoRoot, "scripts"), path.join(work, "scripts"));
symlinkSync(path.join(repoRoot, ".bk"), path.join(work, ".bk"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("README.md shell examples, run as written", () => {
  it("finds the examples", () => {
    expect(blocks.length).toBeGreaterThanOrEqual(8);
    expect(blocks.flatMap((b) => b.commands).filter((c) => c.startsWith("buckypaper ")).length).toBeGreaterThan(25);
  });

  for (const block of blocks) {
    it(`README.md:${block.line}`, { timeout: 600_000 }, async () => {
      const devPort = await freePort();
      const serverPort = await freePort();
      const skipped: string[] = [];
      const script = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"];
      for (const raw of block.commands) {
        const cmd = withoutComment(raw);
        const skip = SKIP.find((s) => s.match.test(cmd));
        const fixture = [...missingFixtures].find((f) => new RegExp(`(^|\\s)${f}(\\s|/|$)`).test(cmd));
        const reason = skip?.reason ?? (fixture && `${fixture} comes from ../shared, which is not present`);
        if (reason) {
          skipped.push(`${cmd.slice(0, 70)}… — ${reason}`);
          continue;
        }
        const run = raw
          .replaceAll("127.0.0.1:8200", `127.0.0.1:${devPort}`)
          .replaceAll("127.0.0.1:8210", `127.0.0.1:${serverPort}`)
          .replace(/runtime dev(?= )/, `runtime dev --listen 127.0.0.1:${devPort}`);
        // "# exit 1: …" in the README marks an example that shows a rejection on purpose.
        if (/#\s*exit 1\b/.test(raw))
          script.push(
            `set +e; ${withoutComment(run)}; rc=$?; set -e; [ $rc -eq 1 ] || { echo "exit $rc, not 1" >&2; exit 99; }`,
          );
        else script.push(run);
      }
      for (const s of skipped) console.warn(`[skip] README.md:${block.line}: ${s}`);
      const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${path.join(repoRoot, "bin")}:${process.env.PATH}` };
      delete env.BUCKYPAPER_ADDR;
      delete env.VAULT_ADDR;
      const r = await runBash(script.join("\n"), work, env);
      expect(r.code, `README.md:${block.line} exited ${r.code}:\n${r.out.slice(-3000)}`).toBe(0);
    });
  }
});

describe("README examples harness", () => {
  it("joins continued lines and keeps blocks apart", () => {
    const b = shellBlocks("x\n```sh\na \\\n  b\nc\n```\n```sh\nd\n```\n");
    expect(b.map((x) => x.commands)).toEqual([["a   b", "c"], ["d"]]);
  });
  it("the skip list names only examples that exist (a stale entry is a defect)", () => {
    const cmds = blocks.flatMap((b) => b.commands.map(withoutComment));
    for (const s of SKIP)
      expect(
        cmds.some((c) => s.match.test(c)),
        String(s.match),
      ).toBe(true);
    expect(existsSync(path.join(repoRoot, "bin", "buckypaper"))).toBe(true);
  });
});
