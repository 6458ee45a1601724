// Evidence providers: configfs-tsm against a configfs-shaped directory whose reports come from the
// SNP simulator; the /dev/sev-guest python3 helper (layout, error path); the Azure vTPM provider's
// tpm2-tools command lines and HCL parsing (real HCL reports from ../shared); auto-detection.
import { describe, expect, it, beforeAll, afterAll } from "vitest";
import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { createHash, randomBytes } from "node:crypto";
import { watch } from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import path from "node:path";
import { createSnpSimulator, type SnpSimulator } from "../../../runtime/sim/snp.js";
import { parseReport } from "../../../runtime/attestation/snp/abi.js";
import { configfsTsmProvider } from "../../../runtime/guest/evidence/configfs-tsm.js";
import { sevGuestProvider } from "../../../runtime/guest/evidence/sev-guest.js";
import { SEV_GUEST_HELPER } from "../../../runtime/guest/evidence/sev-guest-helper.js";
import {
  azureProvider,
  parseHclReport,
  AZURE_AK_HANDLE,
  PCR_SELECTION,
} from "../../../runtime/guest/evidence/azure.js";
import { selectProvider } from "../../../runtime/guest/evidence/detect.js";
import { EvidenceError } from "../../../runtime/guest/evidence/types.js";
import { parseConfig } from "../../../runtime/guest/config.js";
import type { CommandRunner } from "../../../runtime/guest/exec.js";
import { startFakeConfigfsTsm, type FakeConfigfs } from "./fake-configfs.js";
import { noteIfSharedMissing, sharedPath } from "../../support/shared.js";
import { haveCommand, requireTool } from "../../support/prereq.js";

const MEASUREMENT = "5a".repeat(48);

describe("configfs-tsm provider (simulated SNP behind a configfs-shaped directory)", () => {
  let sim: SnpSimulator;
  let fake: FakeConfigfs;
  beforeAll(async () => {
    sim = await createSnpSimulator({ rsaBits: 2048 });
    fake = await startFakeConfigfsTsm(async (inblob) => {
      const r = await sim.report({ measurement: MEASUREMENT, reportData: inblob });
      return { outblob: Buffer.from(r.report), auxblob: Buffer.from(r.certTable) };
    });
  });
  afterAll(async () => fake?.close());

  it("writes REPORT_DATA to inblob and returns the report for exactly those bytes, with the cert table", async () => {
    const p = configfsTsmProvider({ root: fake.root });
    expect(await p.available()).toBe(true);
    const reportData = randomBytes(64);
    const ev = await p.collect(reportData);
    expect(ev.kind).toBe("snp");
    if (ev.kind !== "snp") return;
    const report = parseReport(Buffer.from(ev.report, "base64"));
    expect(Buffer.from(report.reportData).equals(reportData)).toBe(true);
    expect(Buffer.from(report.measurement).toString("hex")).toBe(MEASUREMENT);
    expect(ev.cert_table && Buffer.from(ev.cert_table, "base64").length).toBeGreaterThan(0);
    expect(fake.inblobs.at(-1)!.equals(reportData)).toBe(true);
  });

  it("uses a fresh entry per request and removes it afterwards", async () => {
    const p = configfsTsmProvider({ root: fake.root });
    const a = randomBytes(64),
      b = randomBytes(64);
    const [ea, eb] = await Promise.all([p.collect(a), p.collect(b)]);
    const rd = (e: typeof ea) =>
      Buffer.from(parseReport(Buffer.from((e as { report: string }).report, "base64")).reportData);
    expect(rd(ea).equals(a)).toBe(true);
    expect(rd(eb).equals(b)).toBe(true);
    const { readdir } = await import("node:fs/promises");
    expect(await readdir(fake.root)).toEqual([]);
  });

  it("refuses REPORT_DATA that is not 64 bytes", async () => {
    await expect(configfsTsmProvider({ root: fake.root }).collect(Buffer.alloc(32))).rejects.toThrow(/64 bytes/);
  });

  it("is absent when the root does not exist", async () => {
    expect(await configfsTsmProvider({ root: "/nonexistent/tsm/report" }).available()).toBe(false);
  });
});

describe("configfs-tsm provider: provider attribute and generation check", () => {
  // A plain-file emulation whose attributes never react: lets us drive provider/generation values.
  async function emulate(provider: string, generation: (n: number) => string) {
    const root = await mkdtemp(path.join(tmpdir(), "bk-tsm-static-"));
    let n = 0;
    const w = watch(root, async (_e, name) => {
      if (!name) return;
      const entry = path.join(root, name);
      try {
        await writeFile(path.join(entry, "outblob"), Buffer.alloc(100, 1));
        await writeFile(path.join(entry, "generation"), generation(n++));
        await writeFile(path.join(entry, "provider"), provider);
      } catch {
        /* entry already gone */
      }
    });
    return {
      root,
      close: async () => {
        w.close();
        await rm(root, { recursive: true, force: true });
      },
    };
  }

  it("a generation that does not advance by exactly our write is a race: retried, then a clear error", async () => {
    const e = await emulate("sev_guest\n", () => "0");
    try {
      // In a plain directory generation never moves, so every attempt looks raced.
      await expect(configfsTsmProvider({ root: e.root, maxRaces: 1 }).collect(randomBytes(64))).rejects.toThrow(
        /kept changing/,
      );
    } finally {
      await e.close();
    }
  });

  it("rejects an unknown TSM provider", async () => {
    const fake = await startFakeConfigfsTsm(async () => ({ outblob: Buffer.alloc(64, 7) }), "cca_guest");
    try {
      await expect(configfsTsmProvider({ root: fake.root }).collect(randomBytes(64))).rejects.toThrow(
        /unsupported TSM provider 'cca_guest'/,
      );
    } finally {
      await fake.close();
    }
  });

  it("returns a TDX quote from tdx_guest", async () => {
    const fake = await startFakeConfigfsTsm(
      async (inblob) => ({ outblob: Buffer.concat([Buffer.from("quote:"), inblob]) }),
      "tdx_guest",
    );
    try {
      const rd = randomBytes(64);
      const ev = await configfsTsmProvider({ root: fake.root }).collect(rd);
      expect(ev).toEqual({ kind: "tdx", quote: Buffer.concat([Buffer.from("quote:"), rd]).toString("base64") });
    } finally {
      await fake.close();
    }
  });
});

describe("/dev/sev-guest provider (python3 ioctl helper)", () => {
  const py = haveCommand("python3", ["-c", "0"]);

  it("the helper's structures match include/uapi/linux/sev-guest.h", (ctx) => {
    if (!requireTool("python3", py)) return ctx.skip();
    const r = spawnSync("python3", ["-c", SEV_GUEST_HELPER, "--layout"], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      report_req: 96,
      ext_report_req: 112,
      guest_request: 32,
      SNP_GET_EXT_REPORT: 0xc0205302,
    });
  });

  it("a device that does not speak the ioctl gives a clear EvidenceError (ENOTTY), not a crash", async (ctx) => {
    if (!requireTool("python3", py)) return ctx.skip();
    const p = sevGuestProvider({ device: "/dev/null" });
    expect(await p.available()).toBe(true); // a character device
    const err = await p.collect(randomBytes(64)).catch((e) => e);
    expect(err).toBeInstanceOf(EvidenceError);
    expect(err.message).toMatch(/sev-guest: ioctl: SNP_GET_EXT_REPORT: ENOTTY/);
  });

  it("a missing device is absent, and opening it is a clear error", async (ctx) => {
    if (!requireTool("python3", py)) return ctx.skip();
    const p = sevGuestProvider({ device: "/nonexistent/sev-guest" });
    expect(await p.available()).toBe(false);
    await expect(p.collect(randomBytes(64))).rejects.toThrow(/open \/nonexistent\/sev-guest: ENOENT/);
  });
});

describe("Azure CVM provider (vTPM NV indices + quote via tpm2-tools)", () => {
  it("parses real HCL reports (SNP and TDX) from ../shared", async (ctx) => {
    if (!noteIfSharedMissing("Azure HCL reports")) return ctx.skip();
    const snp = parseHclReport(await readFile(sharedPath("evidence/cloud/azure-snp-vtpm-trustee/hcl-report.bin")));
    expect(snp.reportType).toBe("snp");
    expect(snp.hardwareReport.length).toBe(1184);
    expect(JSON.stringify(snp.runtimeClaims)).toContain("HCLAkPub");
    const tdx = parseHclReport(await readFile(sharedPath("evidence/cloud/azure-tdx-vtpm-trustee/hcl-report.bin")));
    expect(tdx.reportType).toBe("tdx");
  });

  it("rejects what is not an HCL report", () => {
    expect(() => parseHclReport(Buffer.alloc(2000))).toThrow(/HCLA/);
  });

  // The vTPM is a cloud device: a scripted runner stands in for tpm2-tools, and we assert the command
  // lines, the NV write of REPORT_DATA and the quote's qualifying data.
  function scripted(reportData: Buffer, opts: { staleReads?: number; type?: number } = {}) {
    const calls: { argv: string[]; stdin?: Buffer }[] = [];
    let reads = 0;
    const hcl = (userData: string) => {
      const claims = Buffer.from(JSON.stringify({ keys: [{ kid: "HCLAkPub" }], "user-data": userData }));
      const b = Buffer.alloc(0x4d4 + claims.length);
      b.write("HCLA", 0, "latin1");
      b.writeUInt32LE(opts.type ?? 2, 0x4c0 + 8);
      b.writeUInt32LE(claims.length, 0x4c0 + 16);
      claims.copy(b, 0x4d4);
      return b;
    };
    const runner: CommandRunner = {
      async run(argv, o) {
        calls.push({ argv, stdin: o?.stdin });
        const out = (flag: string) => argv[argv.indexOf(flag) + 1];
        if (argv[0] === "tpm2_nvread")
          await writeFile(
            out("-o"),
            hcl(reads++ < (opts.staleReads ?? 0) ? "00".repeat(64) : reportData.toString("hex").toUpperCase()),
          );
        if (argv[0] === "tpm2_quote") {
          await writeFile(out("-m"), Buffer.from("ff54434780180000", "hex"));
          await writeFile(out("-s"), Buffer.alloc(256, 9));
        }
        if (argv[0] === "tpm2_pcrread") await writeFile(out("-o"), Buffer.alloc(24 * 32, 3));
        return { code: 0, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };
      },
    };
    return { runner, calls };
  }

  it("writes REPORT_DATA to NV 0x01400002, waits for the refreshed HCL report, quotes with SHA-256(REPORT_DATA)", async () => {
    const rd = randomBytes(64);
    const { runner, calls } = scripted(rd, { staleReads: 2 });
    const ev = await azureProvider({ tpmDevice: "/dev/tpmrm0", runner, refreshDelayMs: 1 }).collect(rd);
    expect(ev.kind).toBe("azure-snp");
    const names = calls.map((c) => c.argv[0]);
    expect(names).toEqual([
      "tpm2_nvreadpublic",
      "tpm2_nvwrite",
      "tpm2_nvread",
      "tpm2_nvread",
      "tpm2_nvread",
      "tpm2_quote",
      "tpm2_pcrread",
    ]);
    const write = calls[1];
    expect(write.argv).toEqual(["tpm2_nvwrite", "-T", "device:/dev/tpmrm0", "-C", "o", "-i", "-", "0x01400002"]);
    expect(write.stdin!.equals(rd)).toBe(true);
    const quote = calls.find((c) => c.argv[0] === "tpm2_quote")!.argv;
    expect(quote).toContain(AZURE_AK_HANDLE);
    expect(quote[quote.indexOf("-q") + 1]).toBe(createHash("sha256").update(rd).digest("hex"));
    expect(quote[quote.indexOf("-l") + 1]).toBe(PCR_SELECTION);
    if (ev.kind === "azure-snp") {
      expect(Object.keys(ev.tpm_quote.pcrs)).toHaveLength(24);
      expect(parseHclReport(Buffer.from(ev.hcl_report, "base64")).runtimeClaims["user-data"]).toBe(
        rd.toString("hex").toUpperCase(),
      );
    }
  });

  it("fails clearly when the paravisor never reflects our user data", async () => {
    const rd = randomBytes(64);
    const { runner } = scripted(rd, { staleReads: 99 });
    await expect(
      azureProvider({ tpmDevice: "/dev/tpmrm0", runner, refreshAttempts: 3, refreshDelayMs: 1 }).collect(rd),
    ).rejects.toThrow(/did not refresh the report/);
  });

  it("TDX: pairs the HCL report with a TD quote for its TDREPORT", async () => {
    const rd = randomBytes(64);
    const { runner } = scripted(rd, { type: 4 });
    let asked: Buffer | undefined;
    const ev = await azureProvider({
      tpmDevice: "/dev/tpmrm0",
      runner,
      refreshDelayMs: 1,
      fetchTdQuote: async (r) => ((asked = r), Buffer.from("td-quote")),
    }).collect(rd);
    expect(ev.kind).toBe("azure-tdx");
    expect(asked!.length).toBe(1024);
    if (ev.kind === "azure-tdx") expect(Buffer.from(ev.td_quote!, "base64").toString()).toBe("td-quote");
  });
});

describe("provider selection", () => {
  const cfg = (evidence: Record<string, unknown>) =>
    parseConfig({ runtimeUrl: "https://rt:8200", runtimeCaSha256: "0".repeat(64), workloadId: "w", evidence }).evidence;
  const noTpm: CommandRunner = { run: async () => ({ code: 1, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) }) };

  it("auto picks configfs-tsm when the report directory exists", async () => {
    const root = await mkdtemp(path.join(tmpdir(), "bk-auto-"));
    try {
      await mkdir(path.join(root, "report"));
      const p = await selectProvider(cfg({ configfsRoot: path.join(root, "report"), sevGuestDevice: "/nonexistent" }), {
        runner: noTpm,
      });
      expect(p.name).toBe("configfs-tsm");
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it("auto with nothing present names what it tried; an explicit absent provider is an error", async () => {
    await expect(
      selectProvider(cfg({ configfsRoot: "/nonexistent/r", sevGuestDevice: "/nonexistent/d" }), { runner: noTpm }),
    ).rejects.toThrow(/no evidence source found/);
    await expect(
      selectProvider(cfg({ provider: "sev-guest", sevGuestDevice: "/nonexistent/d" }), { runner: noTpm }),
    ).rejects.toThrow(/sev-guest: select: configured provider is not present/);
    await expect(selectProvider(cfg({ provider: "simulator" }))).rejects.toThrow(/simulator/);
  });
});

describe("buckypaper enclaivelet detect", () => {
  it("lists each evidence source as available or absent, honouring the config's paths", async () => {
    const { main } = await import("../../../cli/main.js");
    const dir = await mkdtemp(path.join(tmpdir(), "bk-detect-"));
    try {
      await mkdir(path.join(dir, "report"));
      const cfg = path.join(dir, "c.json");
      await writeFile(
        cfg,
        JSON.stringify({
          runtimeUrl: "https://rt:8200",
          runtimeCaSha256: "0".repeat(64),
          workloadId: "w",
          evidence: {
            configfsRoot: path.join(dir, "report"),
            sevGuestDevice: "/nonexistent/sev",
            tpmDevice: "/nonexistent/tpm",
          },
        }),
      );
      const out: string[] = [];
      const code = await main(["enclaivelet", "detect", "--config", cfg], {
        out: (t) => void out.push(t),
        err: (t) => void out.push(t),
      });
      expect(code).toBe(0);
      expect(out).toEqual([
        expect.stringMatching(/^configfs-tsm\s+available$/),
        expect.stringMatching(/^sev-guest\s+absent$/),
        expect.stringMatching(/^azure\s+absent$/),
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
