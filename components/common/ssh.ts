// SSH connections for @pulumi/command remote resources, kept secret end to end (the command provider
// itself marks `connection` secret; we do it before it ever reaches an Output).
import * as pulumi from "@pulumi/pulumi";
import type * as command from "@pulumi/command";
import type { SshHostArgs } from "./types.js";
import { requireSecretInput } from "./secrets.js";

export function sshConnection(
  component: string,
  field: string,
  t: SshHostArgs,
): pulumi.Output<command.types.input.remote.ConnectionArgs> {
  const key = requireSecretInput(component, `${field}.privateKey`, t.privateKey);
  return pulumi.secret(
    pulumi
      .all([t.host, t.port ?? 22, t.user ?? "root", key])
      .apply(([host, port, user, privateKey]) => ({ host, port, user, privateKey })),
  );
}
