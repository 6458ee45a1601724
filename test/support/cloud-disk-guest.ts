// Booting the kit's cloud disk the way EC2 and GCE do, shared by the cloud-disk boot tests (the workload disk:
// test/images/guest/cloud-disk-boot.test.ts; the runtime's: runtime-cloud-disk-boot.test.ts): UEFI firmware
// (Debian's OVMF.fd, no direct kernel boot) loading \EFI\BOOT\BOOTX64.EFI from the disk's ESP, a real software TPM
// (swtpm) as the instance's vTPM, the disk on NVMe (EC2 Nitro) or virtio-scsi (GCE), and the simulated PSP on its
// virtio-serial port (runtime/sim/qemu/psp.ts).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import path from "node:path";
import { VIRTIO_PSP_PORT_NAME } from "../../runtime/guest/evidence/virtio-psp.js";
import { KIT_GUEST_CPU } from "./kit-guest.js";
import { freePort } from "./net.js";

/** Debian's OVMF with the SEV metadata the PSP measures (OVMF_CODE_4M.fd has none), a TPM 2.0 driver and event log. */
export const DEBIAN_OVMF = "/usr/share/ovmf/OVMF.fd";

export type DiskShape = "nvme" | "virtio-scsi";

/** The instance's vTPM for one boot: swtpm on a UNIX control socket QEMU's tpm-emulator connects to (state kept in
 *  `tpmDir` across boots of the same instance). */
export async function startInstanceTpm(
  tpmDir: string,
  scratch: string,
): Promise<{ sock: string; child: ChildProcess }> {
  const sock = path.join(mkdtempSync(path.join(scratch, "tpmsock-")), "sock");
  const child = spawn(
    "swtpm",
    ["socket", "--tpm2", "--tpmstate", `dir=${tpmDir}`, "--ctrl", `type=unixio,path=${sock}`, "--terminate"],
    { stdio: "ignore" },
  );
  for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
  return { sock, child };
}

/**
 * QEMU's argv for one boot of a cloud disk: q35 under TCG, the kit's guest CPU, 1 vCPU (the firmware-only launch
 * digest is per vCPU count), the boot disk read-only in `shape`, `dataDisks` as further blank volumes of the same
 * shape (EBS data volumes: more NVMe controllers; GCE: more SCSI disks), user-mode networking with `netOptions`
 * (restrict=on plus the one forward the test needs), and the PSP's port.
 */
export function cloudDiskArgv(o: {
  disk: string;
  shape: DiskShape;
  tpmSock: string;
  netOptions: string[];
  pspSocket: string;
  dataDisks?: string[];
  memoryMb?: number;
  /** Further QEMU arguments, appended (e.g. the SMBIOS strings a cloud's VMs carry). */
  extra?: string[];
}): string[] {
  const drives: string[] =
    o.shape === "nvme"
      ? ["-drive", `file=${o.disk},if=none,id=d0,format=raw,readonly=on`, "-device", "nvme,drive=d0,serial=bkdisk"]
      : [
          "-device",
          "virtio-scsi-pci,id=scsi0",
          "-drive",
          `file=${o.disk},if=none,id=d0,format=raw,readonly=on`,
          "-device",
          "scsi-hd,drive=d0,bus=scsi0.0",
        ];
  (o.dataDisks ?? []).forEach((f, i) => {
    drives.push("-drive", `file=${f},if=none,id=data${i},format=raw`);
    drives.push(
      "-device",
      o.shape === "nvme" ? `nvme,drive=data${i},serial=bkdata${i}` : `scsi-hd,drive=data${i},bus=scsi0.0`,
    );
  });
  return [
    "-machine",
    "q35,accel=tcg",
    "-cpu",
    KIT_GUEST_CPU,
    "-m",
    String(o.memoryMb ?? 1024),
    "-smp",
    "1",
    "-nographic",
    "-no-reboot",
    "-bios",
    DEBIAN_OVMF,
    "-chardev",
    `socket,id=chrtpm,path=${o.tpmSock}`,
    "-tpmdev",
    "emulator,id=tpm0,chardev=chrtpm",
    "-device",
    "tpm-crb,tpmdev=tpm0",
    ...drives,
    "-netdev",
    ["user", "id=n0", ...o.netOptions].join(","),
    "-device",
    "virtio-net-pci,netdev=n0",
    "-chardev",
    `socket,id=bkpsp,path=${o.pspSocket}`,
    "-device",
    "virtio-serial-pci,id=bkvser",
    "-device",
    `virtserialport,chardev=bkpsp,name=${VIRTIO_PSP_PORT_NAME}`,
    ...(o.extra ?? []),
  ];
}

/**
 * Runs `fn` against the instance's vTPM state before (or between) boots, over a TCP swtpm (tpm2-tools' swtpm TCTI):
 * what the cloud's API reads of the instance's TPM (EC2 GetInstanceTpmEkPub) or provisions in it.
 */
export async function withInstanceTpm<T>(tpmDir: string, fn: (tcti: string) => Promise<T>): Promise<T> {
  const port = await freePort();
  const child = spawn(
    "swtpm",
    [
      "socket",
      "--tpm2",
      "--tpmstate",
      `dir=${tpmDir}`,
      "--server",
      `type=tcp,port=${port},bindaddr=127.0.0.1`,
      "--ctrl",
      `type=tcp,port=${port + 1},bindaddr=127.0.0.1`,
      "--flags",
      "not-need-init,startup-clear",
    ],
    { stdio: "ignore" },
  );
  const exited = new Promise((r) => child.once("exit", r));
  const tcti = `swtpm:host=127.0.0.1,port=${port}`;
  try {
    for (let i = 0; i < 50; i++) {
      if (
        spawnSync("tpm2_getcap", ["properties-fixed"], { env: { ...process.env, TPM2TOOLS_TCTI: tcti } }).status === 0
      )
        break;
      await new Promise((res) => setTimeout(res, 100));
    }
    return await fn(tcti);
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
}

/**
 * The instance's EK as EC2's GetInstanceTpmEkPub returns it (`--key-format tpmt`): the TCG default RSA EK of the
 * swtpm whose state the guest will boot with, derived from its endorsement seed before the first boot (nothing is
 * persisted: the agent creates its own EK and AK in the guest).
 */
export function instanceEkTpmt(tpmDir: string, scratch: string): Promise<string> {
  return withInstanceTpm(tpmDir, async (tcti) => {
    const env = { ...process.env, TPM2TOOLS_TCTI: tcti };
    const dir = mkdtempSync(path.join(scratch, "ek-"));
    const r = spawnSync(
      "tpm2_createek",
      ["-c", path.join(dir, "ek.ctx"), "-G", "rsa", "-u", path.join(dir, "ek.pub")],
      {
        env,
      },
    );
    if (r.status !== 0) throw new Error(`tpm2_createek: ${r.stderr?.toString()}`);
    // TPM2B_PUBLIC → TPMT_PUBLIC
    return readFileSync(path.join(dir, "ek.pub")).subarray(2).toString("base64");
  });
}
