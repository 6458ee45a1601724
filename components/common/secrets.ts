// Secrets handed to components must already be Pulumi secrets: a plain string would be written to the
// state file and shown in previews in clear. A literal string is refused at once; an Output that is not
// secret fails the preview when it resolves.
import * as pulumi from "@pulumi/pulumi";
import { ConfigError } from "./errors.js";

export function requireSecretInput(
  component: string,
  field: string,
  value: pulumi.Input<string>,
): pulumi.Output<string> {
  if (typeof value === "string") {
    throw new ConfigError(
      component,
      field,
      "is a plain string; pass a Pulumi secret (pulumi.secret(...) or config.requireSecret(...))",
    );
  }
  const out = pulumi.output(value);
  const checked = out.apply(async (v) => {
    if (!(await pulumi.isSecret(out))) {
      throw new ConfigError(
        component,
        field,
        "is not marked secret; wrap it with pulumi.secret(...) or read it with config.requireSecret(...)",
      );
    }
    return v;
  });
  return pulumi.secret(checked);
}

/** Validates a map of secrets (name → value) and returns them as secret outputs. */
export function requireSecretMap(
  component: string,
  field: string,
  values: Record<string, pulumi.Input<string>> | undefined,
): Record<string, pulumi.Output<string>> {
  const out: Record<string, pulumi.Output<string>> = {};
  for (const [k, v] of Object.entries(values ?? {})) {
    if (!/^[a-zA-Z0-9_.-]{1,128}$/.test(k))
      throw new ConfigError(component, `${field}.${k}`, "has an invalid name (letters, digits, _ . - only)");
    out[k] = requireSecretInput(component, `${field}.${k}`, v);
  }
  return out;
}
