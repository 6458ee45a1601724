// A Unified Kernel Image's PCR 11, predicted from the UKI file the way systemd-stub measures it (UAPI "Unified
// Kernel Image" spec, "UKI TPM PCR Measurements"; systemd src/fundamental/uki.h): for every measured section
// present, in the stub's canonical order (not file order), two EV_IPL extends of PCR 11 — the section name in
// ASCII with one trailing NUL, then the section's contents. `.pcrsig` is never measured (it signs the result).
//
// Which sections a stub measures depends on its version (the list grew over time), so the stub's version is read
// from its `.sdmagic` section ("#### LoaderInfo: systemd-stub 252.39-1~deb12u2 ####") and the matching list is
// used; a UKI whose stub cannot be identified, or that has sections whose selection depends on the hardware
// (.dtbauto, .hwids) or on the boot entry (.profile), is refused rather than guessed at.
// Contents are what the stub hashes from memory: VirtualSize bytes at the section's address, i.e. the raw data
// zero-filled up to VirtualSize (or cut to it).
import { createHash } from "node:crypto";
import { parsePe, sectionContents, type PeSection } from "../pe.js";
import { BootPredictionError } from "./errors.js";

/** The PE/COFF section table of a UKI (../pe.ts), malformed images reported against `field`. */
export function peSections(img: Buffer, field = "uki"): PeSection[] {
  return parsePe(img, (why) => new BootPredictionError(field, `not a PE/COFF image (${why})`)).sections;
}

export { sectionContents, type PeSection };

/** systemd-stub's measured sections in canonical order, by the stub's major version (.pcrsig excluded). */
export function stubMeasuredSections(major: number): string[] {
  if (major < 250) throw new BootPredictionError("uki", `systemd-stub ${major} predates PCR 11 measurements (250+)`);
  const list = [".linux", ".osrel", ".cmdline", ".initrd"];
  if (major >= 256) list.push(".ucode");
  list.push(".splash", ".dtb");
  if (major >= 254) list.push(".uname", ".sbat");
  list.push(".pcrpkey");
  if (major >= 257) list.push(".profile", ".dtbauto", ".hwids");
  if (major >= 258) list.push(".efifw");
  return list;
}

/** The systemd-stub version in a UKI's .sdmagic section, e.g. 252. */
export function ukiStubVersion(img: Buffer, sections = peSections(img)): number {
  const magic = sections.find((s) => s.name === ".sdmagic");
  const m = magic && /systemd-stub (\d+)/.exec(sectionContents(img, magic).toString("latin1"));
  if (!m)
    throw new BootPredictionError(
      "uki",
      "no systemd-stub .sdmagic section: cannot tell which sections the stub measures into PCR 11",
    );
  return Number(m[1]);
}

const REFUSED = [".profile", ".dtbauto", ".hwids"];

/** The (name, contents) pairs systemd-stub extends into PCR 11, in order. */
export function ukiMeasurements(img: Buffer, stubVersion?: number): { name: string; data: Buffer }[] {
  const sections = peSections(img);
  if (!sections.some((s) => s.name === ".linux")) throw new BootPredictionError("uki", "no .linux section: not a UKI");
  for (const r of REFUSED)
    if (sections.some((s) => s.name === r))
      throw new BootPredictionError("uki", `a ${r} section selects contents at boot time: PCR 11 is not predictable`);
  const order = stubMeasuredSections(stubVersion ?? ukiStubVersion(img, sections));
  const out: { name: string; data: Buffer }[] = [];
  for (const name of order) {
    const found = sections.filter((s) => s.name === name);
    if (found.length > 1 && name !== ".dtb") throw new BootPredictionError("uki", `${found.length} ${name} sections`);
    for (const s of found) out.push({ name, data: sectionContents(img, s) });
  }
  return out;
}

/** PCR 11 after systemd-stub measured the UKI (from all zeros; nothing else extends PCR 11 before the kernel). */
export function predictUkiPcr11(img: Buffer, bank: "sha1" | "sha256" | "sha384" | "sha512", stubVersion?: number) {
  let pcr = Buffer.alloc(createHash(bank).digest().length);
  const extend = (d: Buffer) =>
    (pcr = createHash(bank).update(pcr).update(createHash(bank).update(d).digest()).digest());
  for (const m of ukiMeasurements(img, stubVersion)) {
    extend(Buffer.from(m.name + "\0", "latin1"));
    extend(m.data);
  }
  return pcr;
}

/** The UKI's built-in command line (.cmdline, without trailing NULs), if it has one. */
export function ukiCmdline(img: Buffer): string | undefined {
  const s = peSections(img).find((x) => x.name === ".cmdline");
  return s ? sectionContents(img, s).toString("utf8").replace(/\0+$/, "") : undefined;
}
