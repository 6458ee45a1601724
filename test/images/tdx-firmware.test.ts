// Backs the known-firmware note: Debian bookworm's OVMF.fd has no TdTcg2Dxe (the driver that extends
// RTMRs), found by LZMA-decompressing its firmware volumes with Python's stdlib and reading the UI names.
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { hasShared, noteIfSharedMissing, sharedPath } from "../support/shared.js";
import { haveCommand, requireTool } from "../support/prereq.js";
import { KNOWN_TDX_FIRMWARE, measureTdx } from "../../images/tdx/index.js";

const SCAN = `
import lzma, re, sys, uuid
fw = open(sys.argv[1], "rb").read()
lzma_guid = uuid.UUID("ee4e5898-3914-4259-9d6e-dc7bd79403cf").bytes_le
blob = b""
for m in re.finditer(re.escape(lzma_guid), fw):
    hdr = m.start() - 4
    if fw[hdr + 3] != 2:  # EFI_SECTION_GUID_DEFINED
        continue
    size = int.from_bytes(fw[hdr:hdr + 3], "little")
    off = int.from_bytes(fw[m.end():m.end() + 2], "little")
    blob += lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(fw[hdr + off:hdr + size])
for name in sys.argv[2:]:
    print(name, (name + "\\0").encode("utf-16-le") in blob)
`;

describe.skipIf(!noteIfSharedMissing("TDX firmware facts"))("Debian OVMF.fd CC-measurement drivers", () => {
  it("contains TdxDxe and Tcg2Dxe but not TdTcg2Dxe", () => {
    if (!requireTool("python3", haveCommand("python3", ["--version"]))) return;
    const r = spawnSync(
      "python3",
      ["-c", SCAN, sharedPath("vectors/debian-bookworm-ovmf/OVMF.fd"), "TdxDxe", "Tcg2Dxe", "TdTcg2Dxe"],
      { encoding: "utf8" },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim().split("\n")).toEqual(["TdxDxe True", "Tcg2Dxe True", "TdTcg2Dxe False"]);
  });

  it("puts the note into the measurement output for that firmware only", () => {
    const fw = hasShared ? readFileSync(sharedPath("vectors/debian-bookworm-ovmf/OVMF.fd")) : Buffer.alloc(0);
    expect(Object.values(KNOWN_TDX_FIRMWARE)[0].extendsRtmrs).toBe(false);
    expect(measureTdx({ firmware: fw }).notes.join(" ")).toMatch(/no TdTcg2Dxe driver/);
    const other = Buffer.from(fw);
    other[0x100] ^= 1; // CFV byte: still valid TDVF, different SHA-256
    expect(measureTdx({ firmware: other }).notes.join(" ")).not.toMatch(/TdTcg2Dxe/);
  });
});
