// `buckypaper measure tdx` in-process and as a real process: JSON output, exit codes and messages.
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { hasShared, noteIfSharedMissing, repoRoot, sharedPath } from "../support/shared.js";
import { main } from "../../cli/main.js";

function capture() {
  const out: string[] = [],
    err: string[] = [];
  return { io: { out: (t: string) => out.push(t), err: (t: string) => err.push(t) }, out, err };
}
async function runCli(args: string[]) {
  const c = capture();
  const code = await main(["measure", "tdx", ...args], c.io);
  return { code, out: c.out.join(""), err: c.err.join("") };
}

describe.skipIf(!noteIfSharedMissing("measure tdx CLI"))("buckypaper measure tdx", () => {
  const ovmf = hasShared ? sharedPath("vectors/debian-bookworm-ovmf/OVMF.fd") : "";
  const tmp = mkdtempSync(path.join(tmpdir(), "bk-tdx-cli-"));

  it("prints MRTD (both orders) as JSON and names what RTMRs are missing", async () => {
    const r = await runCli(["--firmware", ovmf]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.mrtd).toBe(
      "4c7206f0f483c524f12c366c711e9049030a8d47c471ee5aa9c4999a08de4057fb887fed0744d5631a212967fb231c47",
    );
    expect(j.rtmr0).toBeNull();
    expect(j.registers.rtmr1.missing).toEqual(["kernel"]);
    expect(r.err).toMatch(/rtmr0 not computed; missing: memory/);
    const two = JSON.parse((await runCli(["--firmware", ovmf, "--mrtd-order", "two-pass"])).out);
    expect(two.mrtd).toMatch(/^acccbcc8.*f7e1$/);
    expect(two.mrtdOrder).toBe("two-pass");
  });

  it("computes RTMR[0] with memory and ACPI blob files", async () => {
    for (const n of ["loader", "rsdp", "tables"]) writeFileSync(path.join(tmp, n), `blob-${n}`);
    const r = await runCli([
      "--firmware",
      ovmf,
      "--memory",
      "2048",
      "--acpi-loader",
      path.join(tmp, "loader"),
      "--acpi-rsdp",
      path.join(tmp, "rsdp"),
      "--acpi-tables",
      path.join(tmp, "tables"),
    ]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.rtmr0).toMatch(/^[0-9a-f]{96}$/);
    expect(j.registers.rtmr0.events[0].event).toBe("TD HOB");
  });

  it.each([
    [["--firmware", "OVMF_CODE_4M"], /--firmware: no TDX \(TDVF\) metadata/],
    [
      ["--firmware", "TRUNCATED"],
      /--firmware: firmware\.sections\[0\]: BFV raw data .* beyond the 524288-byte image \(truncated\?\)/,
    ],
    [["--firmware", "OVMF", "--memory", "lots"], /--memory: 'lots' is not a size/],
    [["--firmware", "OVMF", "--memory", "8M"], /--memory: '8M' is outside/],
    [["--firmware", "OVMF", "--mrtd-order", "zigzag"], /--mrtd-order: 'zigzag' is not one of single, two-pass/],
    [["--firmware", "OVMF", "--initrd", "OVMF"], /--initrd\/--append need --kernel/],
    [["--firmware", "OVMF", "--kernel", "OVMF"], /--kernel: not a (Linux bzImage|PE\/COFF EFI image)/],
    [["--firmware", "OVMF", "--acpi-loader", "OVMF"], /--acpi-rsdp: the three ACPI blobs go together/],
    [["--firmware", "/nonexistent/OVMF.fd"], /--firmware \/nonexistent\/OVMF.fd: ENOENT/],
    [[], /--firmware is required/],
    [["--firmware", "OVMF", "--bogus"], /Unknown option '--bogus'/],
  ])("exits 2 with a clear message for %j", async (args, message) => {
    const truncated = path.join(tmp, "truncated.fd");
    writeFileSync(truncated, readFileSync(ovmf).subarray(0x180000));
    const files: Record<string, string> = {
      OVMF: ovmf,
      OVMF_CODE_4M: sharedPath("vectors/debian-bookworm-ovmf/OVMF_CODE_4M.fd"),
      TRUNCATED: truncated,
    };
    const r = await runCli(args.map((a) => files[a] ?? a));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.out).toBe("");
  });

  it("runs as a real process", () => {
    const r = spawnSync(
      process.execPath,
      [path.join(repoRoot, "bin/buckypaper.js"), "measure", "tdx", "--firmware", ovmf],
      { encoding: "utf8" },
    );
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).mrtd).toMatch(/^4c7206f0/);
  });
});
