// What the local stack's real guests need from this machine, and the image they boot. One place decides
// "can this machine run real guests?" (the stack falls back to process-tree VMs with the printed
// reason when not) and one place builds the boot files, so the image can change (the dev guest today,
// the kit's verity image next) without touching the components.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { buildArtifact, importClosure } from "../../guest/artifact.js";
import { devGuestDir, devRootImage, ensureDevGuest, defaultCacheDir, type Progress } from "./dev-image.js";

function have(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { stdio: "ignore" });
  return r.error === undefined && r.status !== null && r.status !== 127;
}

export interface RealGuestSupport {
  ok: boolean;
  /** Why not (every missing piece), empty when ok. */
  reason: string;
}

/** Can this machine boot the local stack's real guests? (QEMU, the firmware, root and the image tooling.) */
export function realGuestSupport(firmware = "/usr/share/ovmf/OVMF.fd"): RealGuestSupport {
  const missing: string[] = [];
  if (!have("qemu-system-x86_64", ["--version"])) missing.push("qemu-system-x86_64 (apt-get install qemu-system-x86)");
  if (!have("qemu-img", ["--version"])) missing.push("qemu-img (apt-get install qemu-utils)");
  if (!existsSync(firmware)) missing.push(`the firmware ${firmware} (apt-get install ovmf)`);
  if (!have("genisoimage", ["--version"])) missing.push("genisoimage (the NoCloud seed)");
  if (!have("socat", ["-V"])) missing.push("socat (the guest's forward to the runtime)");
  if (!have("mkfs.ext4", ["-V"])) missing.push("mkfs.ext4 (e2fsprogs)");
  // The image is built once with mmdebstrap as root; a cached image needs neither.
  const cached = existsSync(path.join(devGuestDir(), "done"));
  if (!cached && !have("mmdebstrap", ["--version"])) missing.push("mmdebstrap (builds the guest image once)");
  if (process.getuid?.() !== 0) missing.push("root (the guest image holds root-owned files)");
  return { ok: missing.length === 0, reason: missing.length ? `missing: ${missing.join("; ")}` : "" };
}

export interface LocalGuestImage {
  kernel: string;
  initrd: string;
  /** The kernel command line the image boots with. */
  append: string;
  /** Root filesystem image with this build's enclaivelet (guests boot copy-on-write overlays of it). */
  rootImage: string;
  /** SHA-256 of the enclaivelet artifact inside. */
  agentSha256: string;
}

/** Builds (first time: minutes, with progress) or finds the local guests' image. `packageRoot` holds dist/. */
export async function ensureLocalGuestImage(o: { packageRoot: string; progress?: Progress }): Promise<LocalGuestImage> {
  const dev = await ensureDevGuest({ ...(o.progress ? { progress: o.progress } : {}) });
  // Packing the enclaivelet (Node binary included) takes most of a minute on a busy machine: remember
  // which root image a given agent build went into, keyed by everything the artifact is made of.
  const key = await artifactInputsKey(o.packageRoot);
  const memo = path.join(dev.dir, `agent-${key}.json`);
  try {
    const m = JSON.parse(readFileSync(memo, "utf8")) as { rootImage: string; agentSha256: string };
    if (existsSync(m.rootImage)) return { kernel: dev.kernel, initrd: dev.initrd, append: dev.append, ...m };
  } catch {
    // not built yet
  }
  const out = path.join(defaultCacheDir(), "dev-guest", `enclaivelet-${process.pid}.tgz`);
  o.progress?.("enclaivelet: packing the agent and its Node runtime…");
  const artifact = await buildArtifact({ repoRoot: o.packageRoot, out });
  let rootImage: string;
  try {
    rootImage = await devRootImage(dev, artifact, o.progress);
  } finally {
    rmSync(out, { force: true });
  }
  writeFileSync(memo, `${JSON.stringify({ rootImage, agentSha256: artifact.sha256 })}\n`);
  return { kernel: dev.kernel, initrd: dev.initrd, append: dev.append, rootImage, agentSha256: artifact.sha256 };
}

/** SHA-256 over the agent's compiled import closure, its packages' manifests, the lock file and the Node binary. */
async function artifactInputsKey(packageRoot: string): Promise<string> {
  const entry = path.join(packageRoot, "dist/runtime/guest/main.js");
  if (!existsSync(entry)) throw new Error(`${entry} is missing: build first (npm run build)`);
  const { files, packages } = await importClosure(entry);
  const h = createHash("sha256");
  for (const f of files) h.update(f.slice(packageRoot.length)).update(readFileSync(f));
  for (const p of packages) {
    const manifest = path.join(packageRoot, "node_modules", p, "package.json");
    h.update(p).update(existsSync(manifest) ? readFileSync(manifest) : "");
  }
  // The lock file pins the versions of the dependencies the artifact carries (direct and nested).
  const lock = path.join(packageRoot, "package-lock.json");
  h.update(existsSync(lock) ? readFileSync(lock) : "");
  const node = statSync(process.execPath);
  h.update(`${process.execPath} ${node.size} ${node.mtimeMs} ${process.version}`);
  return h.digest("hex").slice(0, 16);
}
