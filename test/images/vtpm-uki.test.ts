// UKI PCR 11 prediction (images/vtpm/uki.ts) against systemd's own calculator: a UKI built with objcopy from
// Debian's real systemd-stub (systemd-boot-efi) and section files; systemd-measure (shipped with systemd)
// computes PCR 11 from the same files; the prediction reads the sections back out of the UKI and must agree,
// in the sha256 and sha384 banks. Then the UKI prediction as a measured-boot policy, and what is refused.
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  bootApplicationDigest,
  peSections,
  predictMeasuredBoot,
  predictUkiPcr11,
  stubMeasuredSections,
  ukiCmdline,
  ukiMeasurements,
  ukiStubVersion,
} from "../../images/index.js";
import { buildUki, haveUkiTools } from "../support/uki.js";

const MEASURE = "/usr/lib/systemd/systemd-measure";
const ready = haveUkiTools(existsSync(MEASURE));

const CMDLINE = "console=ttyS0 bk.root=/dev/vda bk.roothash=4f1e0c6b2a9d8e7f bk.hashoffset=4096";

function systemdMeasure(dir: string, names: string[], bank: string): string {
  const r = spawnSync(MEASURE, [
    "calculate",
    ...names.map((n) => `--${n.slice(1)}=${path.join(dir, n.slice(1))}`),
    `--bank=${bank}`,
    "--phase=",
  ]);
  if (r.status !== 0) throw new Error(`systemd-measure: ${r.stderr}`);
  const m = new RegExp(`11:${bank}=([0-9a-f]+)`).exec(r.stdout.toString());
  if (!m) throw new Error(`systemd-measure printed ${r.stdout}`);
  return m[1];
}

describe.runIf(ready)("UKI PCR 11 prediction vs systemd-measure (Debian systemd-stub)", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bp-uki-"));
  const sections = {
    ".osrel": Buffer.from('ID=buckypaper\nVERSION_ID="1"\n'),
    ".cmdline": Buffer.from(CMDLINE),
    ".linux": randomBytes(200_000),
    ".initrd": randomBytes(30_001),
  };
  const uki = ready ? buildUki(dir, sections) : Buffer.alloc(0);

  it("reads the stub's version and the sections back out of the UKI", () => {
    expect(ukiStubVersion(uki)).toBe(252);
    const got = ukiMeasurements(uki);
    expect(got.map((m) => m.name)).toEqual([".linux", ".osrel", ".cmdline", ".initrd"]);
    for (const m of got) expect(m.data.equals(sections[m.name as keyof typeof sections])).toBe(true);
    expect(ukiCmdline(uki)).toBe(CMDLINE);
    // The stub's own .sbat is present but a 252 stub does not measure it.
    expect(peSections(uki).some((s) => s.name === ".sbat")).toBe(true);
    expect(stubMeasuredSections(252)).not.toContain(".sbat");
  });

  for (const bank of ["sha256", "sha384"] as const)
    it(`${bank}: equals systemd-measure's PCR 11 for the same sections`, () => {
      const want = systemdMeasure(dir, Object.keys(sections), bank);
      expect(predictUkiPcr11(uki, bank).toString("hex")).toBe(want);
    });

  it("changes with one byte of the command line", () => {
    const other = mkdtempSync(path.join(tmpdir(), "bp-uki-"));
    const uki2 = buildUki(other, { ...sections, ".cmdline": Buffer.from(CMDLINE.replace("ttyS0", "ttyS1")) });
    expect(predictUkiPcr11(uki2, "sha256").equals(predictUkiPcr11(uki, "sha256"))).toBe(false);
  });

  it("as a measured-boot policy: the UKI's Authenticode digest required, its .cmdline, PCR 11", () => {
    const p = predictMeasuredBoot({
      bootApplications: [{ name: "uki", image: uki }],
      uki: {},
      mustContain: ["bk.roothash=4f1e0c6b"],
      bank: "sha384",
    });
    expect(p.bank).toBe("sha384");
    // Firmware measures the UKI's exact bytes (no padding); the placeholder .linux is no PE, so no kernel event.
    expect(p.bootApplications!.required).toEqual([bootApplicationDigest(uki, "sha384")]);
    expect(p.kernelCmdline).toEqual({ allowed: [CMDLINE], mustContain: ["bk.roothash=4f1e0c6b"], boundByUki: true });
    expect(p.pcrs).toEqual({ "11": predictUkiPcr11(uki, "sha384").toString("hex") });
  });

  it("refuses a multi-profile UKI and a PE without systemd-stub", () => {
    const other = mkdtempSync(path.join(tmpdir(), "bp-uki-"));
    const profiled = buildUki(other, { ...sections, ".profile": Buffer.from("ID=a") });
    expect(() => predictUkiPcr11(profiled, "sha256")).toThrow(/\.profile section/);
    const plain = Buffer.from(uki);
    const magic = peSections(plain).find((s) => s.name === ".sdmagic")!;
    plain.fill(0, magic.rawPointer, magic.rawPointer + magic.rawSize);
    expect(() => predictUkiPcr11(plain, "sha256")).toThrow(/cannot tell which sections/);
  });
});
