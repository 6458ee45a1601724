// What every VM on a Proxmox VE node needs there (over SSH as root: amd-sev / intel-tdx are root@pam only):
// created with `pvesh` from its API parameters and started, replaced when a trigger changes, destroyed with
// its disks. Shared by the workload component (ProxmoxConfidentialVm) and the vHSM runtime's guest
// (components/proxmox/vhsm-guest.ts); boot files are uploaded with components/qemu/host.ts uploadToHost.
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { pveshCreateCommand } from "./settings.js";

export function pveVm(
  parent: pulumi.Resource,
  name: string,
  connection: pulumi.Output<command.types.input.remote.ConnectionArgs>,
  node: string,
  vmid: number,
  params: Record<string, string | number>,
  triggers: pulumi.Input<unknown>[],
  dependsOn: pulumi.Input<pulumi.Resource>[],
  /** Run after `qm start` succeeded (its output is the resource's stdout). */
  started?: string,
): command.remote.Command {
  return new command.remote.Command(
    `${name}-vm`,
    {
      connection,
      create: `${pveshCreateCommand(node, params)} && qm start ${vmid}${started ? ` && ${started}` : ""}`,
      delete: `qm stop ${vmid} --skiplock 1 || true; qm destroy ${vmid} --purge 1 --destroy-unreferenced-disks 1`,
      triggers: [JSON.stringify(params), ...triggers],
    },
    { parent, dependsOn, replaceOnChanges: ["triggers[*]"], deleteBeforeReplace: true },
  );
}
