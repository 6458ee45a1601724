// What a local real guest needs around its QEMU command line: the guest's only way out (user-mode
// networking with restrict=on, one forward from a fixed guest address to the runtime on the host's
// loopback, one forward of the host's loopback to the guest's sshd), and its disks — a copy-on-write
// overlay of the root image, the NoCloud seed with the rendered user-data, the data disk.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";

/** The address guests reach the runtime at (QEMU guestfwd → host 127.0.0.1). */
export const GUEST_RUNTIME_ADDR = "10.0.2.100";

/** User-mode network options: nothing but the runtime forward (and an optional SSH forward in). */
export function guestNetOptions(o: { runtimePort: number; guestPort?: number; sshHostPort?: number }): string[] {
  for (const [k, v] of Object.entries(o))
    if (v !== undefined && (!Number.isInteger(v) || v < 1 || v > 65535))
      throw new Error(`${k}: ${v} is not a TCP port`);
  return [
    "restrict=on",
    // One socat per guest connection (a chardev forward carries only one connection).
    `guestfwd=tcp:${GUEST_RUNTIME_ADDR}:${o.guestPort ?? o.runtimePort}-cmd:socat - TCP:127.0.0.1:${o.runtimePort}`,
    ...(o.sshHostPort ? [`hostfwd=tcp:127.0.0.1:${o.sshHostPort}-:22`] : []),
  ];
}

/** User-mode network of the runtime's own guest: nothing out, one forward of a host loopback port in to
 *  the runtime's listener (clients verify it over attested TLS; the forward itself carries no trust). */
export function runtimeGuestNetOptions(o: { hostPort: number; guestPort: number }): string[] {
  for (const [k, v] of Object.entries(o))
    if (!Number.isInteger(v) || v < 1 || v > 65535) throw new Error(`${k}: ${v} is not a TCP port`);
  return ["restrict=on", `hostfwd=tcp:127.0.0.1:${o.hostPort}-:${o.guestPort}`];
}

function must(argv: string[]): void {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${argv[0]} failed (${r.status ?? r.error?.message}): ${r.stderr}`);
}

export interface GuestDisks {
  diskPath: string;
  seedIsoPath: string;
  dataDiskPath?: string;
}

/** Creates the guest's disks in `dir` (the overlay and seed anew; the data disk only if missing). */
export function prepareGuestDisks(o: {
  dir: string;
  baseImage: string;
  userData: string;
  metaData: string;
  dataDiskGb?: number;
  /**
   * Hostile-host simulation only: a NoCloud `vendor-data` file on the seed. The kit never writes one; a host can,
   * and the kit image must not execute it (images/guest/configure.ts disables vendor-data).
   */
  hostileVendorData?: string;
}): GuestDisks {
  mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  const diskPath = path.join(o.dir, "root.qcow2");
  rmSync(diskPath, { force: true });
  must(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", o.baseImage, diskPath]);
  const seed = path.join(o.dir, "seed");
  rmSync(seed, { recursive: true, force: true });
  mkdirSync(seed);
  writeFileSync(path.join(seed, "user-data"), o.userData);
  writeFileSync(path.join(seed, "meta-data"), o.metaData);
  if (o.hostileVendorData !== undefined) writeFileSync(path.join(seed, "vendor-data"), o.hostileVendorData);
  const seedIsoPath = path.join(o.dir, "seed.iso");
  must([
    "genisoimage",
    "-quiet",
    "-output",
    seedIsoPath,
    "-volid",
    "cidata",
    "-joliet",
    "-rock",
    path.join(seed, "user-data"),
    path.join(seed, "meta-data"),
    ...(o.hostileVendorData !== undefined ? [path.join(seed, "vendor-data")] : []),
  ]);
  let dataDiskPath: string | undefined;
  if (o.dataDiskGb) {
    dataDiskPath = path.join(o.dir, "data.qcow2");
    if (!existsSync(dataDiskPath)) must(["qemu-img", "create", "-q", "-f", "qcow2", dataDiskPath, `${o.dataDiskGb}G`]);
  }
  return { diskPath, seedIsoPath, dataDiskPath };
}
