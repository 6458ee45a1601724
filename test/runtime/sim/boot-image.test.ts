// What the local stack's workload image and the vHSM runtime's image share (runtime/sim/qemu/boot-image.ts),
// without building or booting either: the memo that spares a second pack of the artifact, the boot files a
// manifest names, and the refusal to digest an unbuilt tree.
import { afterAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { ImageManifest } from "../../../images/guest/manifest.js";
import { bootFiles, hashImportClosure, memoizedImage } from "../../../runtime/sim/qemu/boot-image.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "bk-boot-image-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("memoizedImage", () => {
  it("builds when there is no memo, writes the build's record, and reuses it the next time", async () => {
    const memo = path.join(tmp, "a", "images", "local-k1.json");
    let builds = 0;
    const build = async () => ({ image: `img-${++builds}`, memo: { dir: `/cache/img-${builds}` } });
    const reuse = async (m: { dir: string }) => `reused ${m.dir}`;
    expect(await memoizedImage(memo, reuse, build)).toBe("img-1");
    expect(JSON.parse(readFileSync(memo, "utf8"))).toEqual({ dir: "/cache/img-1" });
    expect(await memoizedImage(memo, reuse, build)).toBe("reused /cache/img-1");
    expect(builds).toBe(1);
  });

  it.each([
    ["finds the image changed (undefined)", async () => undefined],
    [
      "throws (the cached image was removed)",
      async () => {
        throw new Error("gone");
      },
    ],
  ])("builds again and rewrites the memo when reuse %s", async (_what, reuse) => {
    const memo = path.join(tmp, `b-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(memo, `${JSON.stringify({ dir: "/cache/old" })}\n`);
    const img = await memoizedImage<{ dir: string }, string>(memo, reuse, async () => ({
      image: "new",
      memo: { dir: "/cache/new" },
    }));
    expect(img).toBe("new");
    expect(JSON.parse(readFileSync(memo, "utf8"))).toEqual({ dir: "/cache/new" });
  });

  it("a failed build writes no memo (the next call builds again)", async () => {
    const memo = path.join(tmp, "c.json");
    await expect(
      memoizedImage(
        memo,
        async () => "never",
        async () => Promise.reject(new Error("build failed")),
      ),
    ).rejects.toThrow("build failed");
    expect(existsSync(memo)).toBe(false);
  });
});

describe("bootFiles", () => {
  it("names kernel, initrd and root disk inside the image directory and boots the manifest's command line", () => {
    const m = {
      cmdline: "console=ttyS0 roothash=ab12",
      files: { kernel: { path: "vmlinuz" }, initrd: { path: "initrd.img" }, rootfs: { path: "root.verity" } },
    } as unknown as ImageManifest;
    expect(bootFiles("/cache/images/x", m)).toEqual({
      kernel: "/cache/images/x/vmlinuz",
      initrd: "/cache/images/x/initrd.img",
      append: "console=ttyS0 roothash=ab12",
      rootImage: "/cache/images/x/root.verity",
    });
  });
});

describe("hashImportClosure", () => {
  it("covers every file the entry imports (transitively) and the manifests of the packages they name", async () => {
    const root = mkdtempSync(path.join(tmp, "pkg-"));
    const entry = path.join(root, "dist/main.js");
    mkdirSync(path.join(root, "dist/lib"), { recursive: true });
    mkdirSync(path.join(root, "node_modules/@peculiar/x509"), { recursive: true });
    writeFileSync(entry, 'import { b } from "./lib/b.js";\nimport "node:fs";\nexport const a = b;\n');
    writeFileSync(path.join(root, "dist/lib/b.js"), 'import { X } from "@peculiar/x509/extra";\nexport const b = X;\n');
    writeFileSync(path.join(root, "dist/unrelated.js"), "export const u = 1;\n");
    writeFileSync(path.join(root, "node_modules/@peculiar/x509/package.json"), '{"version":"2.2.0"}\n');
    const digest = async () => {
      const h = createHash("sha256");
      await hashImportClosure(h, root, entry);
      return h.digest("hex");
    };
    const first = await digest();
    expect(await digest()).toBe(first);
    writeFileSync(path.join(root, "dist/unrelated.js"), "export const u = 2;\n");
    expect(await digest()).toBe(first);
    writeFileSync(
      path.join(root, "dist/lib/b.js"),
      'import { X } from "@peculiar/x509/extra";\nexport const b = !X;\n',
    );
    const second = await digest();
    expect(second).not.toBe(first);
    writeFileSync(path.join(root, "node_modules/@peculiar/x509/package.json"), '{"version":"2.2.1"}\n');
    expect(await digest()).not.toBe(second);
  });

  it("refuses an entry that was not built, naming it and what to run", async () => {
    const entry = path.join(tmp, "dist/runtime/guest/main.js");
    await expect(hashImportClosure(createHash("sha256"), tmp, entry)).rejects.toThrow(
      `${entry} is missing: build first (npm run build)`,
    );
  });
});
