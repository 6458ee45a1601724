// The other-language SDKs are generated from a schema Pulumi's analyzer infers from the component args'
// TypeScript declarations; it accepts only plain interfaces (no mapped types). This checks the analyzer
// still understands every exported component and that the shared types kept their SDK names.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import { Analyzer } from "@pulumi/pulumi/provider/experimental/analyzer.js";
import { exportedComponents, PACKAGE_NAME, PACKAGE_ROOT } from "../../component-provider.js";

describe("component schema", () => {
  it("every exported component's args are analyzable; the one SSH target and connection types appear under their SDK names", () => {
    const pkg = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, "package.json"), "utf8"));
    const names = new Set(exportedComponents().map((c) => c.name));
    const schema = new Analyzer(PACKAGE_ROOT, PACKAGE_NAME, pkg, names).analyze() as {
      components: Record<string, unknown>;
      typeDefinitions: Record<string, { properties: Record<string, { optional?: boolean }> }>;
    };
    expect(Object.keys(schema.components).sort()).toEqual([...names].sort());
    for (const t of ["SshHostArgs", "VhsmSshArgs"]) {
      expect(Object.keys(schema.typeDefinitions[t].properties).sort()).toEqual([
        "host",
        "hostKey",
        "port",
        "privateKey",
        "user",
      ]);
    }
    const conn = schema.typeDefinitions.VhsmConnectionArgs.properties;
    expect(Object.keys(conn)).toEqual(expect.arrayContaining(["url", "token", "caPem", "caFingerprint"]));
    expect(conn.caFingerprint.optional).toBeFalsy();
  }, 300_000);
});
