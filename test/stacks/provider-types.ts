// Checks recorded cloud resource inputs against the providers' published TypeScript declarations
// (@pulumi/aws, @pulumi/gcp, @pulumi/azure-native): every property name, at every nesting level, must
// exist on the resource's `<Name>Args` interface. tsc already checks what the code spells out; this
// catches what only exists at run time (spreads, computed keys, values built from config).
import path from "node:path";
import ts from "typescript";
import type { Recorded } from "./mock-program.js";

const PACKAGES = ["aws", "gcp", "azure-native"];

/** "aws:ec2/instance:Instance" → @pulumi/aws/ec2/instance.d.ts, InstanceArgs; "azure-native:compute:VirtualMachine" → compute/virtualMachine.d.ts. */
function declarationOf(root: string, token: string): { file: string; iface: string } | undefined {
  const [pkg, mod, name] = token.split(":");
  if (!PACKAGES.includes(pkg) || !mod || !name) return undefined;
  const [dir, file] = mod.includes("/") ? mod.split("/") : [mod, name[0].toLowerCase() + name.slice(1)];
  return { file: path.join(root, "node_modules", "@pulumi", pkg, dir, `${file}.d.ts`), iface: `${name}Args` };
}

const isSecret = (v: unknown) =>
  typeof v === "object" &&
  v !== null &&
  (v as Record<string, unknown>)["4dabf18193072939515e22adb298388d"] === "1b47061264138c4ac30d75fd1eb44270";

/** Returns one message per input property the provider's types do not have (empty: all known). */
export function unknownInputProperties(root: string, resources: Recorded[]): string[] {
  const targets = resources.map((r) => ({ r, d: declarationOf(root, r.type) })).filter((x) => x.d !== undefined);
  if (targets.length === 0) return [];
  const files = [...new Set(targets.map((x) => x.d!.file))];
  const program = ts.createProgram(files, {
    noEmit: true,
    skipLibCheck: true,
    types: [],
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
  });
  const checker = program.getTypeChecker();
  const problems: string[] = [];

  // Input<T> = T | Promise<T> | OutputInstance<T>: keep the T's.
  const constituents = (t: ts.Type): ts.Type[] => {
    const parts = t.isUnion() ? t.types : [t];
    return parts.flatMap((p) => {
      const sym = p.getSymbol()?.getName();
      if (sym === "Promise" || sym === "OutputInstance" || sym === "Output") {
        const args = checker.getTypeArguments(p as ts.TypeReference);
        return args.length ? constituents(args[0]) : [];
      }
      return [p];
    });
  };

  const check = (value: unknown, type: ts.Type, where: string, depth: number): void => {
    if (isSecret(value)) return check((value as { value: unknown }).value, type, where, depth);
    if (value === null || value === undefined || typeof value !== "object" || depth > 12) return;
    const types = constituents(type);
    if (types.some((t) => t.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown))) return;
    if (Array.isArray(value)) {
      const arr = types.find((t) => checker.isArrayType(t));
      if (!arr) {
        problems.push(`${where}: an array, where the provider expects ${checker.typeToString(type)}`);
        return;
      }
      const el = checker.getTypeArguments(arr as ts.TypeReference)[0];
      value.forEach((v, i) => check(v, el, `${where}[${i}]`, depth + 1));
      return;
    }
    const objects = types.filter((t) => t.flags & ts.TypeFlags.Object && !checker.isArrayType(t));
    if (objects.length === 0) {
      problems.push(`${where}: an object, where the provider expects ${checker.typeToString(type)}`);
      return;
    }
    const index = objects.map((t) => t.getStringIndexType()).find((t) => t !== undefined);
    for (const [k, v] of Object.entries(value)) {
      const prop = objects.map((t) => t.getProperty(k)).find((p) => p !== undefined);
      if (prop) check(v, checker.getTypeOfSymbol(prop), `${where}.${k}`, depth + 1);
      else if (index) check(v, index, `${where}.${k}`, depth + 1);
      else problems.push(`${where}.${k}: not a property of ${checker.typeToString(objects[0])}`);
    }
  };

  for (const { r, d } of targets) {
    const sf = program.getSourceFile(d!.file);
    const decl = sf?.statements.find(
      (s): s is ts.InterfaceDeclaration => ts.isInterfaceDeclaration(s) && s.name.text === d!.iface,
    );
    if (!decl) {
      problems.push(`${r.type}: ${d!.iface} not found in ${d!.file}`);
      continue;
    }
    check(r.inputs, checker.getTypeAtLocation(decl.name), `${r.type} ${r.name}`, 0);
  }
  return problems;
}
