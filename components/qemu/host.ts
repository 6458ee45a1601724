// What every guest on a plain QEMU/KVM host needs there, reached over SSH: its boot files uploaded, a NoCloud
// seed built from the rendered user-data, and QEMU started as a transient systemd unit. Shared by the workload
// component (QemuConfidentialVm) and the vHSM runtime's guest (components/qemu/vhsm-guest.ts).
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { shellQuote } from "../../provider/shell.js";
import { shellJoin } from "./settings.js";

type Connection = pulumi.Output<command.types.input.remote.ConnectionArgs>;

/** Uploads `local` to `<dir>/<file>` on the host (resource `<name>-<file>`); the remote path, or undefined. */
export function uploadToHost(
  parent: pulumi.Resource,
  name: string,
  connection: Connection,
  dir: string,
  local: string | undefined,
  file: string,
  deps?: pulumi.Resource[],
): string | undefined {
  if (!local) return undefined;
  const r = new command.remote.CopyToRemote(
    `${name}-${file}`,
    { connection, source: new pulumi.asset.FileAsset(local), remotePath: `${dir}/${file}` },
    { parent },
  );
  deps?.push(r);
  return `${dir}/${file}`;
}

/** The NoCloud seed (`<dir>/seed.iso`, resource `<name>-seed`) built on the host from `userData`. */
export function noCloudSeed(
  parent: pulumi.Resource,
  name: string,
  connection: Connection,
  dir: string,
  userData: pulumi.Input<string>,
): command.remote.Command {
  return new command.remote.Command(
    `${name}-seed`,
    {
      connection,
      create: `mkdir -p ${shellQuote(dir)}/seed && cat > ${shellQuote(dir)}/seed/user-data && printf 'instance-id: ${name}\\nlocal-hostname: ${name}\\n' > ${shellQuote(dir)}/seed/meta-data && genisoimage -quiet -output ${shellQuote(dir)}/seed.iso -volid cidata -joliet -rock ${shellQuote(dir)}/seed/user-data ${shellQuote(dir)}/seed/meta-data`,
      stdin: userData,
      delete: `rm -rf ${shellQuote(dir)}/seed ${shellQuote(dir)}/seed.iso`,
      triggers: [userData],
    },
    { parent },
  );
}

/**
 * QEMU with `argv` as the transient systemd unit `unit` (resource `<name>-vm`), replaced when a trigger
 * changes. `before`/`after` run in the same shell before systemd-run / after the unit is stopped (e.g. disks
 * that live and die with this guest); `started` after systemd-run succeeded (its output is the resource's stdout).
 */
export function systemdRunGuest(
  parent: pulumi.Resource,
  name: string,
  connection: Connection,
  unit: string,
  argv: string[],
  triggers: pulumi.Input<unknown>[],
  dependsOn: pulumi.Input<pulumi.Resource>[],
  o: { before?: string; after?: string; started?: string } = {},
): command.remote.Command {
  return new command.remote.Command(
    `${name}-vm`,
    {
      connection,
      create: `${o.before ? `${o.before} && ` : ""}systemd-run --unit=${unit} --collect --property=Restart=no ${shellJoin(argv)}${o.started ? ` && ${o.started}` : ""}`,
      delete: `systemctl stop ${unit} || true${o.after ? `; ${o.after}` : ""}`,
      triggers: [shellJoin(argv), ...triggers],
    },
    { parent, dependsOn, replaceOnChanges: ["triggers[*]"], deleteBeforeReplace: true },
  );
}
