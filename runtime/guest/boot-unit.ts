// The systemd unit a kit image carries to run the enclaivelet BEFORE cloud-init executes any of the
// user-data (measured user-data, docs/attestation-chain.md):
//   - After the network is up (systemd-networkd-wait-online: network-online.target itself is ordered
//     after cloud-init.service, so it cannot be used here) and strictly after (Requires + After)
//     cloud-init-local, which fetches the user-data once and caches it (obj.pkl) but runs no user modules:
//     the agent hashes that cached copy, the one the later stages execute;
//   - Before, and required by, cloud-init.service (bootcmd, write_files, …), cloud-config.service and
//     cloud-final.service (runcmd): if attestation fails, no user-data code runs at all, and none runs
//     before the agent has read and measured the user-data;
//   - Before, and required by, sshd (ssh.service): sshd starts only once the agent has installed the
//     CA-signed host key; a refused guest (the unit failed) never answers ssh, so no host key the
//     runtime's CA did not sign is ever offered to a client.
// The agent reads the user-data itself (`--user-data <source>`, from cloud-init's cache) and takes its config from it.
import type { UserDataSource } from "./userdata.js";

export const MEASURED_UNIT_NAME = "enclaivelet-measured.service";
export const AGENT_BIN = "/opt/buckypaper/enclaivelet/bin/enclaivelet";
const CLOUD_INIT_STAGES = ["cloud-init.service", "cloud-config.service", "cloud-final.service"];

export function renderMeasuredUnit(source: UserDataSource): string {
  return [
    "[Unit]",
    "Description=Buckypaper enclaivelet: measure the user-data, attest, provision — before cloud-init runs any of it",
    "DefaultDependencies=no",
    "Wants=systemd-networkd-wait-online.service",
    // cloud-init-local must have cached the datasource the agent reads (cloud-init-cache.ts); if it failed, the
    // agent does not run, and without the cache the agent refuses: either way no user stage starts.
    "Requires=cloud-init-local.service",
    "After=systemd-networkd-wait-online.service cloud-init-local.service local-fs.target",
    `Before=${[...CLOUD_INIT_STAGES, "ssh.service", "sshd.service"].join(" ")}`,
    "",
    "[Service]",
    "Type=oneshot",
    "RemainAfterExit=yes",
    `ExecStart=${AGENT_BIN} run --user-data ${source}`,
    "TimeoutStartSec=20min",
    "StandardOutput=journal+console",
    "StandardError=journal+console",
    "",
    "[Install]",
    `RequiredBy=${[...CLOUD_INIT_STAGES, "ssh.service"].join(" ")}`,
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
}
