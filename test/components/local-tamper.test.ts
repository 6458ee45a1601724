// Where the tamper demonstrations change a firmware byte (components/local/tamper.ts): in the middle of the
// longest erased (0xFF) run, flash no firmware code reads, so the guest boots the same and measures differently.
import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { erasedByte, firmwareWithOneByteChanged, longestErasedRun } from "../../components/local/tamper.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "bk-tamper-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// 4 code bytes, a 3-byte erased run, 2 code bytes, a 6-byte erased run (the longest), 1 code byte.
const fw = Buffer.from([1, 2, 3, 4, 0xff, 0xff, 0xff, 5, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 7]);

describe("tamper: the firmware byte", () => {
  it("finds the longest erased run and its middle", () => {
    expect(longestErasedRun(fw)).toEqual({ start: 9, len: 6 });
    expect(erasedByte(fw)).toBe(12);
  });
  it("without an erased run: no run, and the middle of the file", () => {
    const code = Buffer.from([1, 2, 3, 4, 5, 6]);
    expect(longestErasedRun(code)).toEqual({ start: 0, len: 0 });
    expect(erasedByte(code)).toBe(3);
  });
  it("the copy differs from the original in that one byte only", () => {
    const src = path.join(tmp, "fw.fd");
    writeFileSync(src, fw);
    const out = readFileSync(firmwareWithOneByteChanged(src, path.join(tmp, "fw-modified.fd")));
    const changed = [...out].flatMap((b, i) => (b !== fw[i] ? [i] : []));
    expect(changed).toEqual([12]);
    expect(out[12]).toBe(0xfe);
    expect(readFileSync(src).equals(fw)).toBe(true);
  });
});
