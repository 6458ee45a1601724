// Component provider for other Pulumi languages: serves the package's exported ComponentResources
// (Vhsm, ConfidentialVm, the per-platform VMs) over Pulumi's provider gRPC protocol, so Python, Go,
// .NET, Java and YAML programs construct them through a generated SDK.
//
// Why a plugin of our own: the source-based route (`pulumi package add <repo>` with PulumiPlugin.yaml)
// needs a Node.js language host that implements RunPlugin; the one buildable here (sdk v3.68.0) does
// not. This file is what `@pulumi/pulumi/cmd/run-plugin` would do for such a package, started by the
// executable bin/pulumi-resource-buckypaper instead (docs/pulumi.md "Other languages").
//
// The schema is inferred by Pulumi's analyzer from the TypeScript source reachable from the package
// root's index.ts (with the root tsconfig.json), so the sources must ship next to dist/.
//
// Why at the package root: it serves the package's components, so it sits above components/ and imports
// them downward; provider/ (which components/ use) never imports the package index (docs/ARCHITECTURE.md).
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { componentProviderHost, getPulumiComponents } from "@pulumi/pulumi/provider/experimental/index.js";
import * as pkg from "./index.js";

// The package root in the sources, dist/ when compiled.
const HERE = path.dirname(fileURLToPath(import.meta.url));
export const PACKAGE_ROOT = path.basename(HERE) === "dist" ? path.resolve(HERE, "..") : HERE;

/** Pulumi package name: the `buckypaper` in `buckypaper:index:<Component>` type tokens. */
export const PACKAGE_NAME = "buckypaper";

/**
 * Exported components that other languages do not get: LocalConfidentialVm is the local stack's
 * demonstration VM (a process tree on this machine, ordered after other resources by `waitFor`), and
 * its args hold resource references and inline object types the schema analyzer cannot express.
 */
export const NODE_ONLY_COMPONENTS: readonly string[] = ["LocalConfidentialVm"];

/** The component classes the plugin serves: every ComponentResource the package root exports, minus the Node-only ones. */
export function exportedComponents(): ReturnType<typeof getPulumiComponents> {
  return getPulumiComponents(pkg).filter((c) => !NODE_ONLY_COMPONENTS.includes(c.name));
}

/** Serves the components until the engine disconnects (argv: the engine address, as Pulumi passes it). */
export function serveComponents(): Promise<void> {
  return componentProviderHost({ name: PACKAGE_NAME, dirname: PACKAGE_ROOT, components: exportedComponents() });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  serveComponents().catch((e: unknown) => {
    process.stderr.write(`pulumi-resource-buckypaper: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
