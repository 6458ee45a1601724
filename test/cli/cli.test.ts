import { describe, expect, it } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import path from "node:path";
import { repoRoot } from "../support/shared.js";
import { main } from "../../cli/main.js";

function capture() {
  const out: string[] = [],
    err: string[] = [];
  return { io: { out: (t: string) => out.push(t), err: (t: string) => err.push(t) }, out, err };
}

describe("buckypaper CLI", () => {
  it("lists commands and exits 2 without one", async () => {
    const c = capture();
    expect(await main([], c.io)).toBe(2);
    expect(c.out.join("")).toContain("measure");
  });
  it("rejects an unknown command with exit 2", async () => {
    const c = capture();
    expect(await main(["frobnicate"], c.io)).toBe(2);
    expect(c.err.join("")).toContain("unknown command 'frobnicate'");
  });
  it("runs as a real process through bin/buckypaper.js", () => {
    const r = spawnSync(process.execPath, [path.join(repoRoot, "bin/buckypaper.js"), "--help"], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("usage: buckypaper");
    expect(execFileSync(process.execPath, ["-p", "process.versions.node"]).toString().split(".")[0]).toBe("22");
  });
});
