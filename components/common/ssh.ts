// SSH connections for @pulumi/command remote resources, kept secret end to end (the command provider
// itself marks `connection` secret; we do it before it ever reaches an Output).
import * as pulumi from "@pulumi/pulumi";
import type * as command from "@pulumi/command";
import type { SshHostArgs } from "./types.js";
import { requireSecretInput } from "./secrets.js";
import { ConfigError } from "./errors.js";
import { SSH_DEFAULT_PORT, SSH_DEFAULT_USER } from "../../provider/ssh-target.js";

export function sshConnection(
  component: string,
  field: string,
  t: SshHostArgs,
): pulumi.Output<command.types.input.remote.ConnectionArgs> {
  // @pulumi/command cannot pin a host key: refuse one rather than appear to check it.
  if (t.hostKey !== undefined)
    throw new ConfigError(
      component,
      `${field}.hostKey`,
      "is not supported for this host: @pulumi/command connections cannot pin host keys",
    );
  const key = requireSecretInput(component, `${field}.privateKey`, t.privateKey);
  return pulumi.secret(
    pulumi
      .all([t.host, t.port ?? SSH_DEFAULT_PORT, t.user ?? SSH_DEFAULT_USER, key])
      .apply(([host, port, user, privateKey]) => ({ host, port, user, privateKey })),
  );
}
