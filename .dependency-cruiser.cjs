// One-way dependencies between the rooms of the kit (docs/ARCHITECTURE.md draws them), checked by
// `npm run lint` (`depcruise`), so a back-arrow fails CI. Type-only imports count: a type that crosses a
// wall couples the rooms as much as a value does.
//
//   index.ts, component-provider.ts (package root), cli/   — entry points, may import anything below
//   components/                                           — Pulumi ComponentResources
//   provider/   images/                                   — Pulumi resources / measurement engines
//   runtime/    server/ guest/ client/ sim/ attestation/ protocol/
//
// Known violations: each offending (from, to) pair, with why it is there and what removes it. The list may
// only shrink: a pair not on it fails, and an entry whose import is gone should be deleted with it.
/** @type {{ rule: string; from: string; to: string; why: string }[]} */
const KNOWN_VIOLATIONS = [
  {
    rule: "images-not-server-guest",
    from: "^images/guest/build\\.ts$",
    to: "^runtime/guest/artifact\\.ts$",
    why:
      "the guest image builder bundles the enclaivelet itself; to remove, let its caller (cli/) build the " +
      "artifact and pass it in (images/ then computes, runtime/guest ships).",
  },
];

const NODE_BUILTIN = { dependencyTypes: ["core"] };

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "no-circular",
      severity: "error",
      comment: "No cycles anywhere: every module can be read after the ones it imports.",
      from: {},
      to: { circular: true },
    },
    {
      name: "no-unresolvable",
      severity: "error",
      comment: "An import that does not resolve hides an arrow from these rules.",
      from: {},
      to: { couldNotResolve: true },
    },
    {
      name: "nothing-imports-the-package-root",
      severity: "error",
      comment:
        "index.ts and component-provider.ts are the package's entry points; only the component provider " +
        "reads the index (components → provider is the direction, never back up through the index).",
      from: { pathNot: "^component-provider\\.ts$" },
      to: { path: "^(index|component-provider)\\.ts$" },
    },
    {
      name: "nothing-imports-cli",
      severity: "error",
      comment: "cli/ is an entry point: libraries never depend on the command line.",
      from: { pathNot: "^cli/" },
      to: { path: "^cli/" },
    },
    {
      name: "runtime-images-not-components-provider",
      severity: "error",
      comment: "runtime/ and images/ sit below components/ and provider/.",
      from: { path: "^(runtime|images)/" },
      to: { path: "^(components|provider)/" },
    },
    {
      name: "provider-not-components",
      severity: "error",
      comment: "components → provider, never the reverse.",
      from: { path: "^provider/" },
      to: { path: "^components/" },
    },
    {
      name: "images-not-server-guest",
      severity: "error",
      comment: "The measurement engines compute; they never reach into a deployable.",
      from: { path: "^images/" },
      to: { path: "^runtime/(server|guest)/" },
    },
    {
      name: "runtime-images-no-pulumi",
      severity: "error",
      comment: "runtime/ and images/ run without Pulumi (in the vHSM, in the guest, in the CLI).",
      from: { path: "^(runtime|images)/" },
      to: { path: "(^|/)node_modules/@pulumi/|^@pulumi/" },
    },
    {
      name: "vault-framework-not-nitride",
      severity: "error",
      comment: "Nitride is built on the Vault framework; the framework knows no engine in particular.",
      from: { path: "^runtime/server/vault/" },
      to: { path: "^runtime/server/nitride/" },
    },
    {
      name: "guest-not-server",
      severity: "error",
      comment: "The enclaivelet ships inside the VM: it talks to the server over the wire, never by import.",
      from: { path: "^runtime/guest/" },
      to: { path: "^runtime/server/" },
    },
    {
      name: "guest-not-sim",
      severity: "error",
      comment: "The agent deployed into a VM never carries simulators.",
      from: { path: "^runtime/guest/" },
      to: { path: "^runtime/sim/" },
    },
    {
      name: "server-not-sim",
      severity: "error",
      comment: "Simulated roots reach the server only as trust configuration, never as code.",
      from: { path: "^runtime/server/" },
      to: { path: "^runtime/sim/" },
    },
    {
      name: "client-not-server-guest-sim",
      severity: "error",
      comment: "The runtime client (CLI, provider) speaks HTTP; it does not embed a deployable.",
      from: { path: "^runtime/client/" },
      to: { path: "^runtime/(server|guest|sim)/" },
    },
    {
      name: "attestation-is-shared",
      severity: "error",
      comment: "runtime/attestation is used by server, guest, CLI and sim; it imports none of them.",
      from: { path: "^runtime/attestation/" },
      to: { path: "^runtime/(server|guest|sim|client|protocol)/" },
    },
    {
      name: "protocol-is-shared",
      severity: "error",
      comment: "runtime/protocol (wire formats) imports nothing but node builtins and runtime/attestation.",
      from: { path: "^runtime/protocol/" },
      to: {
        pathNot: "^runtime/(protocol|attestation)/",
        dependencyTypesNot: NODE_BUILTIN.dependencyTypes,
      },
    },
  ].flatMap((rule) => withKnownViolations(rule)),
  options: {
    tsConfig: { fileName: "tsconfig.json" },
    tsPreCompilationDeps: true,
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^(dist|\\.tools)/" },
    enhancedResolveOptions: { exportsFields: ["exports"], conditionNames: ["import", "require", "node", "default"] },
  },
};

/** Exempts the listed (from, to) pairs of a rule, and nothing else. */
function withKnownViolations(rule) {
  const known = KNOWN_VIOLATIONS.filter((v) => v.rule === rule.name);
  if (known.length === 0) return [rule];
  // dependency-cruiser matches from and to separately; one rule per pair keeps the exemption exact.
  const others = known.map((v) => v.from);
  return [
    { ...rule, from: { ...rule.from, pathNot: [rule.from.pathNot, ...others].filter(Boolean) } },
    ...known.map((v) => ({
      ...rule,
      from: { ...rule.from, path: v.from },
      to: { ...rule.to, pathNot: [rule.to.pathNot, v.to].filter(Boolean) },
    })),
  ];
}
