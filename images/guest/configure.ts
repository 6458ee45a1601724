// What the kit bakes into the root filesystem beyond the locked packages, so a guest booted from the
// image attests before cloud-init runs any user-data (docs/attestation-chain.md):
//   - the measured boot unit, as the enclaivelet artifact ships it (share/systemd/<source>/, rendered by
//     runtime/guest/boot-unit.ts — images/ does not import the agent): the enclaivelet reads the NoCloud user-data
//     itself, binds its SHA-256 into the evidence; cloud-init's user stages are ordered after it and
//     require it (a refused guest runs none of the user-data); sshd too is ordered after and requires it,
//     so a refused guest never answers ssh (no host key the runtime's CA did not sign is ever offered);
//   - cloud-init limited to the NoCloud seed (no network datasources to probe: a host cannot slip in
//     another source) and with its network rendering off;
//   - DHCP on the one NIC by systemd-networkd, which the boot unit waits for (wait-online) — only when
//     the VM has a network controller at all: without one, wait-online would hold the boot for its
//     full 2-minute timeout waiting for a link that cannot appear.
import { copyFile, mkdir, rm, symlink, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import path from "node:path";

/** The user-data source the image's boot unit reads (QEMU/Proxmox: the NoCloud seed). */
export const IMAGE_USER_DATA_SOURCE = "nocloud";
/** runtime/guest/boot-unit.ts MEASURED_UNIT_NAME (test/images/guest/configure.test.ts keeps them equal). */
export const IMAGE_AGENT_UNIT = "enclaivelet-measured.service";
/** Where the unpacked enclaivelet artifact keeps its units (finishTree unpacks it under /opt/buckypaper). */
const ARTIFACT_UNITS = "opt/buckypaper/enclaivelet/share/systemd";

const NETWORK = "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n";
// ExecCondition (skip, not fail): a PCI device of class 0x02 (network controller) exists from the first
// instant — PCI is enumerated before userspace — while its netdev appears only when udev loads the driver.
const WAIT_ONLINE_DROPIN = "[Service]\nExecCondition=/bin/sh -c 'grep -qs ^0x02 /sys/bus/pci/devices/*/class'\n";
const CLOUD_CFG = "datasource_list: [ NoCloud, None ]\nnetwork: {config: disabled}\n";

/** `systemctl enable` by hand: fixed symlinks, no dependence on the host's systemctl. */
async function enable(root: string, unitFile: string, by: string[]): Promise<void> {
  for (const dir of by) {
    const d = path.join(root, "etc/systemd/system", dir);
    await mkdir(d, { recursive: true });
    await rm(path.join(d, path.basename(unitFile)), { force: true });
    await symlink(unitFile, path.join(d, path.basename(unitFile)));
  }
}

/** DHCP on the one NIC by systemd-networkd, cloud-init limited to NoCloud (both roles of the image). */
export async function configureNetwork(root: string): Promise<void> {
  await mkdir(path.join(root, "etc/systemd/network"), { recursive: true });
  await writeFile(path.join(root, "etc/systemd/network/10-dhcp.network"), NETWORK);
  await enable(root, "/lib/systemd/system/systemd-networkd.service", ["multi-user.target.wants"]);
  await enable(root, "/lib/systemd/system/systemd-networkd.socket", ["sockets.target.wants"]);
  await enable(root, "/lib/systemd/system/systemd-networkd-wait-online.service", ["network-online.target.wants"]);
  const dropins = path.join(root, "etc/systemd/system/systemd-networkd-wait-online.service.d");
  await mkdir(dropins, { recursive: true });
  await writeFile(path.join(dropins, "10-buckypaper-nic.conf"), WAIT_ONLINE_DROPIN);
  await writeFile(path.join(root, "etc/cloud/cloud.cfg.d/90-buckypaper.cfg"), CLOUD_CFG);
}

export async function configureGuest(root: string): Promise<{ unit: string; userDataSource: string }> {
  await configureNetwork(root);

  const shipped = path.join(root, ARTIFACT_UNITS, IMAGE_USER_DATA_SOURCE, IMAGE_AGENT_UNIT);
  if (!existsSync(shipped))
    throw new Error(`the enclaivelet artifact has no ${IMAGE_USER_DATA_SOURCE} boot unit (${shipped}): rebuild it`);
  await copyFile(shipped, path.join(root, "etc/systemd/system", IMAGE_AGENT_UNIT));
  await enable(root, `/etc/systemd/system/${IMAGE_AGENT_UNIT}`, [
    "cloud-init.service.requires",
    "cloud-config.service.requires",
    "cloud-final.service.requires",
    "ssh.service.requires",
    "multi-user.target.wants",
  ]);
  return { unit: IMAGE_AGENT_UNIT, userDataSource: IMAGE_USER_DATA_SOURCE };
}
