// What the kit bakes into the root filesystem beyond the locked packages, so a guest booted from the
// image attests before cloud-init runs any user-data (docs/attestation-chain.md):
//   - the measured boot unit, as the enclaivelet artifact ships it (share/systemd/<source>/, rendered by
//     runtime/guest/boot-unit.ts — images/ does not import the agent): the enclaivelet reads the NoCloud user-data
//     itself, binds its SHA-256 into the evidence; cloud-init's user stages are ordered after it and
//     require it (a refused guest runs none of the user-data); sshd too is ordered after and requires it,
//     so a refused guest never answers ssh (no host key the runtime's CA did not sign is ever offered);
//   - cloud-init limited to the one user-data source the image is built for (`--cloud`: the NoCloud seed
//     for QEMU/Proxmox, EC2's IMDS, GCE's metadata server) — the very source the boot unit reads, with no
//     fallback to another one (a fallback would let a host or network party inject user-data the agent never
//     measured) — and with its network rendering off;
//   - for NoCloud, the datasource itself pinned to cloud-init's network mode (DataSourceBuckypaperNoCloud below):
//     whatever dsmode the host puts in the seed's meta-data or the DMI serial, cloud-init-local only caches the
//     user-data and runs none of it before the agent;
//   - vendor-data (NoCloud's vendor-data file, EC2's and the others' vendor data) never consumed: the agent
//     measures the user-data only, so cloud-init executes nothing else the host or operator supplies;
//   - DHCP on the one NIC by systemd-networkd, which the boot unit waits for (wait-online) — only when
//     the VM has a network controller at all: without one, wait-online would hold the boot for its
//     full 2-minute timeout waiting for a link that cannot appear.
import { copyFile, mkdir, rm, symlink, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import path from "node:path";

/**
 * The user-data sources an image can be built for (runtime/guest/userdata.ts UserDataSource, spelled here
 * because images/ does not import the agent): the NoCloud seed (QEMU/Proxmox), EC2 IMDSv2, the GCE metadata server,
 * Azure's OVF CustomData (as cloud-init-local copies it to the datasource's data dir).
 */
export type ImageUserDataSource = "nocloud" | "ec2" | "gce" | "azure";
export const IMAGE_USER_DATA_SOURCES: readonly ImageUserDataSource[] = ["nocloud", "ec2", "gce", "azure"];
/** The default user-data source of the image's boot unit (QEMU/Proxmox: the NoCloud seed). */
export const IMAGE_USER_DATA_SOURCE: ImageUserDataSource = "nocloud";
/** runtime/guest/boot-unit.ts MEASURED_UNIT_NAME (test/images/guest/configure.test.ts keeps them equal). */
export const IMAGE_AGENT_UNIT = "enclaivelet-measured.service";
/** Where the unpacked enclaivelet artifact keeps its units (finishTree unpacks it under /opt/buckypaper). */
const ARTIFACT_UNITS = "opt/buckypaper/enclaivelet/share/systemd";

const NETWORK = "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n";
// ExecCondition (skip, not fail): a PCI device of class 0x02 (network controller) exists from the first
// instant — PCI is enumerated before userspace — while its netdev appears only when udev loads the driver.
const WAIT_ONLINE_DROPIN = "[Service]\nExecCondition=/bin/sh -c 'grep -qs ^0x02 /sys/bus/pci/devices/*/class'\n";
// cloud-init's datasource per source: exactly the one the agent reads. `None` is cloud-init's empty
// datasource (no user-data, no metadata): it lets cloud-init finish when the source is absent, it injects
// nothing. Ec2: the kit's pinned Ec2Local (PINNED_EC2: IMDS crawled once per boot; its config stays under
// `datasource: Ec2:`), strict_id (only on a platform that identifies as EC2) and only the link-local IMDS address
// (no DNS name a resolver could point elsewhere); cloud-init 22.4 fetches it with an IMDSv2 token.
// GCE: the metadata server by its link-local address (not metadata.google.internal), as the agent reads it.
// Azure: the OVF environment's CustomData (IMDS userData only when there is none, which the agent refuses); the data
// dir pinned to where the agent reads cloud-init's copy of that OVF (runtime/guest/azure-ovf.ts AZURE_OVF_PATH).
const DATASOURCES: Record<ImageUserDataSource, string> = {
  nocloud: "datasource_list: [ BuckypaperNoCloud, None ]\n",
  ec2:
    "datasource_list: [ BuckypaperEc2, None ]\n" +
    "datasource:\n  Ec2:\n    strict_id: true\n    metadata_urls: [ 'http://169.254.169.254' ]\n",
  gce:
    "datasource_list: [ GCE, None ]\n" +
    "datasource:\n  GCE:\n    metadata_url: 'http://169.254.169.254/computeMetadata/v1/'\n",
  azure: "datasource_list: [ Azure, None ]\n" + "datasource:\n  Azure:\n    data_dir: /var/lib/waagent\n",
};
// cloud-init 22.4 consumes vendor-data after the user-data (stages.Init._consume_vendordata) unless the merged
// config says `vendor_data: {enabled: false}` / `vendor_data2: {enabled: false}` (its built-in default is enabled).
// The agent binds only the user-data's hash, so vendor-data would be code the registration never saw: off, for
// every source. Only the measured user-data itself can turn it back on.
const NO_VENDOR_DATA = "vendor_data: {enabled: false}\nvendor_data2: {enabled: false}\n";
// Logins come only from the measured user-data. cloud-init 22.4's cc_ssh installs the datasource's `public-keys`
// (NoCloud seed meta-data, EC2/GCE metadata, Azure's OVF: all written by the host or the cloud) for the default
// user unless `allow_public_ssh_keys` is false — a host key that logs in after the agent provisioned the secrets.
// Passwords are refused by sshd's drop-in (SSHD_KEYS_ONLY) whatever cloud-init writes; no `ssh_pwauth: false` here:
// cloud-init would rewrite sshd_config and restart the running sshd in cloud-config.service, after the agent —
// a restart under clients' feet that bought nothing the drop-in does not already enforce.
const NO_HOST_LOGINS = "allow_public_ssh_keys: false\n";
function cloudCfg(source: ImageUserDataSource): string {
  return DATASOURCES[source] + "network: {config: disabled}\n" + NO_VENDOR_DATA + NO_HOST_LOGINS;
}
// Debian's sshd_config includes sshd_config.d/*.conf first and sshd keeps the first value it reads, so this
// outranks what cloud-init's cc_set_passwords writes into sshd_config itself.
export const SSHD_KEYS_ONLY = {
  file: "etc/ssh/sshd_config.d/10-buckypaper-keys-only.conf",
  text: "PasswordAuthentication no\nKbdInteractiveAuthentication no\n",
};

/**
 * The kit's NoCloud datasource: cloud-init's own DataSourceNoCloud (same seeds, same meta-data, same
 * `datasource: NoCloud:` config) with dsmode pinned to "net". Stock NoCloud takes dsmode from the meta-data — the
 * seed's meta-data file, the kernel command line and the DMI system serial (`ds=nocloud;dsmode=local`, which
 * outranks even the command line) — and with "local" cloud-init-local.service runs boothooks and the init modules
 * (bootcmd, write_files, …) as root before the agent attests (cmd/main.py main_init). Pinned, the local stage only
 * fetches and caches (obj.pkl, which the agent reads); cloud-init.service, ordered after the agent and requiring
 * it, runs the user-data. Only the filesystem (local-stage) variant is offered: no network-stage NoCloudNet, so a
 * `seedfrom` URL never brings user-data either. cloud-init loads `cloudinit.sources.DataSource<name>` for each name
 * in datasource_list (sources.list_sources). runtime/guest/cloud-init-cache.ts EXPECTED_DATASOURCE names this
 * class (test/images/guest/configure.test.ts keeps them equal).
 */
export const PINNED_NOCLOUD = {
  /** The datasource_list entry. */
  name: "BuckypaperNoCloud",
  module: "cloudinit.sources.DataSourceBuckypaperNoCloud",
  cls: "DataSourceBuckypaperNoCloud",
  /** In the tree: Debian's cloud-init package lives in /usr/lib/python3/dist-packages (every python3 version). */
  file: "usr/lib/python3/dist-packages/cloudinit/sources/DataSourceBuckypaperNoCloud.py",
  source: `# Buckypaper kit image (images/guest/configure.ts): NoCloud with dsmode pinned to "net".
# The host controls the seed's meta-data and the DMI serial, either of which can ask for dsmode "local":
# cloud-init-local would then run boothooks and bootcmd before the enclaivelet attests. Never here.
from cloudinit import log as logging
from cloudinit import sources
from cloudinit.sources import DataSourceNoCloud as nocloud

LOG = logging.getLogger(__name__)


class DataSourceBuckypaperNoCloud(nocloud.DataSourceNoCloud):
    def _get_data(self):
        if not super()._get_data():
            return False
        if self.dsmode != sources.DSMODE_NETWORK:
            LOG.warning(
                "dsmode %r from the host's meta-data ignored: pinned to %r",
                self.dsmode,
                sources.DSMODE_NETWORK,
            )
        self.dsmode = sources.DSMODE_NETWORK
        return True


# The local stage's datasource only (cloud-init-local.service): no network-stage variant.
datasources = [(DataSourceBuckypaperNoCloud, (sources.DEP_FILESYSTEM,))]


def get_datasource_list(depends):
    return sources.list_from_depends(depends, datasources)
`,
} as const;
/**
 * The kit's EC2 datasource: cloud-init's own DataSourceEc2Local (same IMDSv2 crawl, same `datasource: Ec2:` config,
 * strict_id) that crawls IMDS once per boot. Stock DataSourceEc2.network_config re-crawls IMDS — the user-data
 * included — whenever the crawled meta-data has no "network" key ("Refreshing stale metadata from prior to
 * upgrade"), and cloud-init evaluates it in every stage's apply_network_config, even with `network: {config:
 * disabled}`: in the network stage too, after the agent measured the cached user-data, and the user stages then
 * execute whatever IMDS answered that time. IMDS is the cloud operator's: an IMDS that omits "network" and changes
 * the user-data after cloud-init-local would run code the agent never measured (seen in
 * test/images/guest/cloud-disk-boot.test.ts). The image renders no network config from the datasource, so this
 * one never offers any and never re-crawls. Only the local-stage variant is offered (no network-stage DataSourceEc2
 * fetching after the agent). runtime/guest/cloud-init-cache.ts EXPECTED_DATASOURCE names this class
 * (test/images/guest/configure.test.ts keeps them equal).
 */
export const PINNED_EC2 = {
  /** The datasource_list entry. */
  name: "BuckypaperEc2",
  module: "cloudinit.sources.DataSourceBuckypaperEc2",
  cls: "DataSourceBuckypaperEc2Local",
  file: "usr/lib/python3/dist-packages/cloudinit/sources/DataSourceBuckypaperEc2.py",
  source: `# Buckypaper kit image (images/guest/configure.ts): Ec2Local, IMDS crawled once per boot.
# Stock network_config re-crawls IMDS (user-data included) when the meta-data has no "network" key, in the
# network stage too — after the enclaivelet measured the cached user-data. Never here: no network config from
# the datasource (the image disables cloud-init's network rendering), so no second crawl.
from cloudinit import sources
from cloudinit.sources import DataSourceEc2 as ec2


class DataSourceBuckypaperEc2Local(ec2.DataSourceEc2Local):
    @property
    def network_config(self):
        return None


# The local stage's datasource only (cloud-init-local.service): no network-stage variant.
datasources = [(DataSourceBuckypaperEc2Local, (sources.DEP_FILESYSTEM,))]


def get_datasource_list(depends):
    return sources.list_from_depends(depends, datasources)
`,
} as const;
// The clouds hand the MTU out by DHCP (GCE: 1460; EC2: 9001 inside a VPC): taken, so that large metadata and
// runtime responses are not black-holed. QEMU's user/tap networking gives none, so the NoCloud image has no drop-in.
const CLOUD_DHCP_DROPIN = "[DHCPv4]\nUseMTU=yes\n";

/** `systemctl enable` by hand: fixed symlinks, no dependence on the host's systemctl. */
async function enable(root: string, unitFile: string, by: string[]): Promise<void> {
  for (const dir of by) {
    const d = path.join(root, "etc/systemd/system", dir);
    await mkdir(d, { recursive: true });
    await rm(path.join(d, path.basename(unitFile)), { force: true });
    await symlink(unitFile, path.join(d, path.basename(unitFile)));
  }
}

/** The user-data source named by `--cloud`, or an error naming the option and the allowed values. */
export function imageUserDataSource(v: unknown, field = "cloud"): ImageUserDataSource {
  if (v === undefined) return IMAGE_USER_DATA_SOURCE;
  if (typeof v !== "string" || !(IMAGE_USER_DATA_SOURCES as readonly string[]).includes(v))
    throw new Error(`image build: ${field} is '${String(v)}'; must be one of ${IMAGE_USER_DATA_SOURCES.join(", ")}`);
  return v as ImageUserDataSource;
}

/**
 * DHCP on the one NIC by systemd-networkd, cloud-init limited to the one user-data source (both roles of the
 * image; the runtime role masks cloud-init and keeps the NoCloud default).
 */
export async function configureNetwork(
  root: string,
  source: ImageUserDataSource = IMAGE_USER_DATA_SOURCE,
): Promise<void> {
  await mkdir(path.join(root, "etc/systemd/network"), { recursive: true });
  await writeFile(path.join(root, "etc/systemd/network/10-dhcp.network"), NETWORK);
  await enable(root, "/lib/systemd/system/systemd-networkd.service", ["multi-user.target.wants"]);
  await enable(root, "/lib/systemd/system/systemd-networkd.socket", ["sockets.target.wants"]);
  await enable(root, "/lib/systemd/system/systemd-networkd-wait-online.service", ["network-online.target.wants"]);
  const dropins = path.join(root, "etc/systemd/system/systemd-networkd-wait-online.service.d");
  await mkdir(dropins, { recursive: true });
  await writeFile(path.join(dropins, "10-buckypaper-nic.conf"), WAIT_ONLINE_DROPIN);
  const networkDropins = path.join(root, "etc/systemd/network/10-dhcp.network.d");
  if (source === "nocloud") await rm(networkDropins, { recursive: true, force: true });
  else {
    await mkdir(networkDropins, { recursive: true });
    await writeFile(path.join(networkDropins, "10-buckypaper-cloud.conf"), CLOUD_DHCP_DROPIN);
  }
  await mkdir(path.join(root, "etc/cloud/cloud.cfg.d"), { recursive: true });
  await writeFile(path.join(root, "etc/cloud/cloud.cfg.d/90-buckypaper.cfg"), cloudCfg(source));
  await mkdir(path.dirname(path.join(root, SSHD_KEYS_ONLY.file)), { recursive: true });
  await writeFile(path.join(root, SSHD_KEYS_ONLY.file), SSHD_KEYS_ONLY.text, { mode: 0o644 });
  for (const [pin, forSource] of [
    [PINNED_NOCLOUD, "nocloud"],
    [PINNED_EC2, "ec2"],
  ] as const) {
    const pinned = path.join(root, pin.file);
    if (source !== forSource) await rm(pinned, { force: true });
    else {
      await mkdir(path.dirname(pinned), { recursive: true });
      await writeFile(pinned, pin.source, { mode: 0o644 });
    }
  }
}

export async function configureGuest(
  root: string,
  source: ImageUserDataSource = IMAGE_USER_DATA_SOURCE,
): Promise<{ unit: string; userDataSource: ImageUserDataSource }> {
  source = imageUserDataSource(source);
  await configureNetwork(root, source);

  // The unit the artifact renders for this source runs `enclaivelet run --user-data <source>`.
  const shipped = path.join(root, ARTIFACT_UNITS, source, IMAGE_AGENT_UNIT);
  if (!existsSync(shipped))
    throw new Error(`the enclaivelet artifact has no ${source} boot unit (${shipped}): rebuild it`);
  await copyFile(shipped, path.join(root, "etc/systemd/system", IMAGE_AGENT_UNIT));
  await enable(root, `/etc/systemd/system/${IMAGE_AGENT_UNIT}`, [
    "cloud-init.service.requires",
    "cloud-config.service.requires",
    "cloud-final.service.requires",
    "ssh.service.requires",
    "multi-user.target.wants",
  ]);
  return { unit: IMAGE_AGENT_UNIT, userDataSource: source };
}
