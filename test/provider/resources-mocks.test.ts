// Unit tests of the provider/ resources and the Vhsm component with pulumi.runtime.setMocks: what the
// engine would receive (type tokens, inputs, secretness), no engine needed. setMocks runs BEFORE the
// code under test is imported: resources created earlier never resolve (a silent false green).
import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";

interface Registered {
  type: string;
  name: string;
  inputs: Record<string, unknown>;
}
const registered: Registered[] = [];

type Provider = typeof import("../../provider/resources.js");
type Components = typeof import("../../components/vhsm.js");
let P: Provider;
let C: Components;

const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const isSecretSentinel = (v: unknown) =>
  !!v && typeof v === "object" && (v as Record<string, unknown>)[SECRET_SIG] === "1b47061264138c4ac30d75fd1eb44270";
const value = <T>(o: pulumi.Output<T>) => new Promise<T>((r) => o.apply((v) => r(v)));

beforeAll(async () => {
  await pulumi.runtime.setMocks(
    {
      newResource(args) {
        registered.push({ type: args.type, name: args.name, inputs: args.inputs });
        // Echo inputs and fill the outputs the real provider computes.
        const outs: Record<string, unknown> = { ...args.inputs };
        if (args.type.endsWith(":RuntimeService")) {
          Object.assign(outs, {
            rootToken: "s.mock-root",
            unsealKeys: ["k1"],
            caPem: "",
            caFingerprint: "ab".repeat(32),
            running: true,
          });
        }
        return { id: `${args.name}-id`, state: outs };
      },
      call: (args) => args.inputs,
    },
    "buckypaper",
    "unit",
    true,
  );
  P = await import("../../provider/resources.js");
  C = await import("../../components/vhsm.js");
});

const connection = () => ({ url: "https://127.0.0.1:8200", token: pulumi.secret("s.admin-token") });
const find = (name: string) => {
  const r = registered.find((x) => x.name === name);
  if (!r) throw new Error(`resource ${name} was not registered`);
  return r;
};

describe("provider resources under mocks", () => {
  it("registers a Workload under the buckypaper dynamic type with the connection as a secret", async () => {
    const w = new P.Workload("w1", {
      connection: connection(),
      workloadId: "web-1",
      platforms: ["snp"],
      snpMeasurements: ["aa".repeat(48)],
      kvSecrets: ["secret/data/web"],
    });
    expect(await value(w.workloadId)).toBe("web-1");
    const r = find("w1");
    expect(r.type).toBe("pulumi-nodejs:dynamic/buckypaper:Workload");
    expect(isSecretSentinel(r.inputs.connection)).toBe(true);
    expect(r.inputs.snpMeasurements).toEqual(["aa".repeat(48)]);
    // The serialized provider is code only: no token, no captured secret.
    expect(typeof r.inputs.__provider).toBe("string");
    expect(String(r.inputs.__provider)).not.toContain("s.admin-token");
    expect(String(r.inputs.__provider)).toContain("handlers.js");
  });

  it("keeps Secret data secret and refuses plain strings", async () => {
    const s = new P.Secret("s1", {
      connection: connection(),
      path: "apps/web",
      data: { password: pulumi.secret("hunter2-not-in-state") },
    });
    expect(await pulumi.isSecret(s.data)).toBe(true);
    const r = find("s1");
    expect(r.type).toBe("pulumi-nodejs:dynamic/buckypaper:Secret");
    expect(isSecretSentinel(r.inputs.data)).toBe(true);
    expect(JSON.stringify(r.inputs.__provider)).not.toContain("hunter2");
    expect(
      () => new P.Secret("s2", { connection: connection(), path: "apps/web", data: { password: "plain" } }),
    ).toThrow(/data\.password is a plain string/);
  });

  it("registers PKI, SSH and JWT roles and a policy with their own type tokens", async () => {
    new P.PkiRole("pki1", {
      connection: connection(),
      name: "web",
      allowedDomains: ["example.internal"],
      allowSubdomains: true,
      ttl: "72h",
    });
    new P.SshRole("ssh1", { connection: connection(), name: "host", allowHostCertificates: true });
    new P.JwtRole("jwt1", {
      connection: connection(),
      name: "web",
      boundAudiences: ["buckypaper"],
      boundSubject: "web-1",
      tokenPolicies: ["web"],
    });
    new P.Policy("pol1", {
      connection: connection(),
      name: "web",
      policy: 'path "secret/data/web" { capabilities = ["read"] }',
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(find("pki1").type).toBe("pulumi-nodejs:dynamic/buckypaper:PkiRole");
    expect(find("pki1").inputs.allowedDomains).toEqual(["example.internal"]);
    expect(find("ssh1").type).toBe("pulumi-nodejs:dynamic/buckypaper:SshRole");
    expect(find("jwt1").type).toBe("pulumi-nodejs:dynamic/buckypaper:JwtRole");
    expect(find("pol1").type).toBe("pulumi-nodejs:dynamic/buckypaper:Policy");
  });
});

describe("Vhsm component under mocks", () => {
  it("local mode: a RuntimeService child with the server command, config and a secret root token", async () => {
    const v = new C.Vhsm("vh", { stateDir: "/tmp/bk-vhsm-unit", port: 18200 });
    expect(await value(v.url)).toBe("https://127.0.0.1:18200");
    expect(await value(v.caFingerprint)).toBe("ab".repeat(32));
    expect(await pulumi.isSecret(v.rootToken)).toBe(true);
    expect(find("vh").type).toBe("buckypaper:index:Vhsm");
    const svc = find("vh-runtime");
    expect(svc.type).toBe("pulumi-nodejs:dynamic/buckypaper:RuntimeService");
    const cmd = svc.inputs.serverCommand as string[];
    expect(cmd.slice(-4)).toEqual(["runtime", "server", "--config", "{config}"]);
    expect(cmd[1]).toMatch(/bin\/buckypaper\.js$/);
    expect(JSON.parse(String(svc.inputs.config))).toEqual({
      storage: { sqlite: { path: "/tmp/bk-vhsm-unit/runtime.db" } },
      listener: {
        tcp: {
          address: "127.0.0.1:18200",
          tls_disable: false,
          tls_dir: "/tmp/bk-vhsm-unit/tls",
          tls_hosts: ["127.0.0.1"],
        },
      },
      api_addr: "https://127.0.0.1:18200",
    });
  });

  it("ssh mode: requires ssh settings and a secret private key", () => {
    expect(() => new C.Vhsm("bad1", { mode: C.VhsmMode.Ssh })).toThrow(/ssh is required when mode is 'ssh'/);
    expect(
      () =>
        new C.Vhsm("bad2", {
          mode: C.VhsmMode.Ssh,
          ssh: { host: "10.0.0.5", user: "ops", privateKey: "-----BEGIN OPENSSH PRIVATE KEY-----" },
        }),
    ).toThrow(/ssh\.privateKey is a plain string/);
    expect(() => new C.Vhsm("bad3", { stateDir: "relative/dir" })).toThrow(
      /stateDir is 'relative\/dir'; must be an absolute path/,
    );
    expect(() => new C.Vhsm("bad4", { stateDir: "/tmp/bk-vhsm-unit", workers: 0 })).toThrow(
      /workers is 0; must be an integer from 1 to 64/,
    );
  });

  it("ssh mode: the URL uses the SSH host and the key stays secret", async () => {
    const v = new C.Vhsm("onprem", {
      mode: C.VhsmMode.Ssh,
      ssh: { host: "10.0.0.5", user: "ops", privateKey: pulumi.secret("KEY") },
    });
    expect(await value(v.url)).toBe("https://10.0.0.5:8200");
    const svc = find("onprem-runtime");
    expect(isSecretSentinel(svc.inputs.ssh)).toBe(true);
    expect(svc.inputs.stateDir).toBe("/var/lib/buckypaper/vhsm-unit");
    expect((svc.inputs.serverCommand as string[])[0]).toBe("buckypaper");
    // A dedicated host runs one server process per CPU by default; local mode stays at one.
    expect(JSON.parse(String(svc.inputs.config)).workers).toBe("auto");
    const two = new C.Vhsm("two", { stateDir: "/tmp/bk-vhsm-two", port: 18201, workers: 2 });
    await value(two.url);
    expect(JSON.parse(String(find("two-runtime").inputs.config)).workers).toBe(2);
  });
});

describe("Vhsm trust bootstrap and mode (under mocks)", () => {
  it("by default: deployer key and recovery key files under the user's config dir, no opt-out flag", async () => {
    const v = new C.Vhsm("boot", { stateDir: "/tmp/bk-vhsm-boot", port: 18210 });
    await value(v.url);
    const svc = find("boot-runtime");
    expect(svc.inputs.insecureKeepRootTokenInState).toBeUndefined();
    expect(String(svc.inputs.deployerKeyFile)).toMatch(/\/buckypaper\/deployer\/buckypaper-unit-boot\.pem$/);
    expect(String(svc.inputs.localRecoveryKeyFile)).toMatch(/\/buckypaper\/recovery\/buckypaper-unit-boot\.jwk$/);
    expect(svc.inputs.keyShares).toBe(1);
    // The old behaviour only when asked for by its loud name.
    new C.Vhsm("old", { stateDir: "/tmp/bk-vhsm-old", port: 18211, insecureKeepRootTokenInState: true });
    await new Promise((r) => setTimeout(r, 50));
    expect(find("old-runtime").inputs.insecureKeepRootTokenInState).toBe(true);
    expect(find("old-runtime").inputs.deployerKeyFile).toBeUndefined();
  });

  it("recovery keys: one share per operator key, a majority threshold; mismatches are refused at preview", async () => {
    const keys = [
      '{"kty":"OKP","crv":"X25519","x":"a"}',
      '{"kty":"OKP","crv":"X25519","x":"b"}',
      '{"kty":"OKP","crv":"X25519","x":"c"}',
    ];
    const v = new C.Vhsm("ops", { stateDir: "/tmp/bk-vhsm-ops", port: 18212, recoveryKeys: keys });
    await value(v.url);
    expect(find("ops-runtime").inputs).toMatchObject({ keyShares: 3, keyThreshold: 2, recoveryKeys: keys });
    expect(find("ops-runtime").inputs.localRecoveryKeyFile).toBeUndefined();
    expect(() => new C.Vhsm("mis", { stateDir: "/tmp/x", recoveryKeys: keys, keyShares: 5 })).toThrow(
      /recoveryKeys has 3 key\(s\) but keyShares is 5/,
    );
    expect(() => new C.Vhsm("many", { stateDir: "/tmp/x", keyShares: 3 })).toThrow(
      /keyShares is 3; more than one share needs recoveryKeys/,
    );
  });

  it("mode: process, its old name local, ssh; confidential-vm is validated, and refused on the platforms without a runtime image", async () => {
    const p = new C.Vhsm("proc", { mode: C.VhsmMode.Process, stateDir: "/tmp/bk-vhsm-proc", port: 18213 });
    expect(await value(p.url)).toBe("https://127.0.0.1:18213");
    const l = new C.Vhsm("loc", { mode: C.VhsmMode.Local, stateDir: "/tmp/bk-vhsm-loc", port: 18214 });
    expect(await value(l.url)).toBe("https://127.0.0.1:18214");
    expect(() => new C.Vhsm("bogus", { mode: "kubernetes" as never })).toThrow(
      /Vhsm bogus: mode is 'kubernetes', which is not supported; allowed: process, ssh, confidential-vm/,
    );
    expect(() => new C.Vhsm("cvm0", { mode: C.VhsmMode.ConfidentialVm })).toThrow(
      /Vhsm cvm0: platform is required when mode is 'confidential-vm'; allowed: local, qemu, proxmox/,
    );
    expect(() => new C.Vhsm("cvm1", { mode: C.VhsmMode.ConfidentialVm, platform: "ibm" as never })).toThrow(
      /Vhsm cvm1: platform is 'ibm', which is not supported; allowed: local, aws, azure, gcp, proxmox, qemu/,
    );
    // AWS, GCP and Azure are deployable (test/components/vhsm-cloud.test.ts, vhsm-azure.test.ts) and need the
    // runtime's cloud disk: refused without it, naming image and the build.
    expect(() => new C.Vhsm("cvm-azure", { mode: C.VhsmMode.ConfidentialVm, platform: "azure" as never })).toThrow(
      /Vhsm cvm-azure: image is required on platform 'azure': .*--runtime-psp azure-hcl --format disk --cloud azure/,
    );
    for (const [platform, cloud] of [
      ["aws", "ec2"],
      ["gcp", "gce"],
    ] as const)
      expect(
        () => new C.Vhsm(`cvm-${platform}`, { mode: C.VhsmMode.ConfidentialVm, platform: platform as never }),
      ).toThrow(
        new RegExp(
          `Vhsm cvm-${platform}: image is required on platform '${platform}': the manifest.json of the runtime's cloud disk .*--cloud ${cloud}`,
        ),
      );
    // The SEV-SNP hardware platforms are deployable (test/components/vhsm-platforms.test.ts); they need their host.
    for (const platform of ["proxmox", "qemu"] as const)
      expect(
        () => new C.Vhsm(`cvm-${platform}`, { mode: C.VhsmMode.ConfidentialVm, platform: platform as never }),
      ).toThrow(new RegExp(`Vhsm cvm-${platform}: ssh is required on platform '${platform}'`));
    // Platform local: what it needs, and the process-mode settings that have no meaning for a measured image.
    const anchor = { product: "Milan", ark_sha256: "00".repeat(32), ca_certs: [] };
    const local = { mode: C.VhsmMode.ConfidentialVm, platform: C.VHSM_LOCAL_PLATFORM, stateDir: "/tmp/bk-cvm" };
    expect(() => new C.Vhsm("cvm-l0", { ...local, trustSimulatedSnp: anchor })).toThrow(
      /Vhsm cvm-l0: platformDir is required when platform is 'local'/,
    );
    expect(() => new C.Vhsm("cvm-l1", { ...local, platformDir: "/tmp/p" })).toThrow(
      /Vhsm cvm-l1: trustSimulatedSnp is required when platform is 'local'/,
    );
    for (const [k, v] of [
      ["listenAddress", "0.0.0.0"],
      ["workers", 2],
      ["auditLog", true],
      ["tlsHosts", ["10.0.2.100"]],
      ["command", ["node"]],
    ] as const)
      expect(
        () => new C.Vhsm(`cvm-l-${k}`, { ...local, platformDir: "/tmp/p", trustSimulatedSnp: anchor, [k]: v }),
      ).toThrow(new RegExp(`Vhsm cvm-l-${k}: ${k} is not used in mode 'confidential-vm'`));
    expect(
      () => new C.Vhsm("cvm-l-ssh", { ...local, platformDir: "/tmp/p", trustSimulatedSnp: anchor, ssh: {} as never }),
    ).toThrow(/Vhsm cvm-l-ssh: ssh is only allowed when mode is 'ssh'/);
    for (const k of ["platformDir", "firmware", "actualFirmware"] as const)
      expect(() => new C.Vhsm(`proc-${k}`, { stateDir: "/tmp/x", [k]: "/tmp/y" })).toThrow(
        new RegExp(`Vhsm proc-${k}: ${k} is only allowed when mode is 'confidential-vm'`),
      );
    expect(() => new C.Vhsm("plat", { platform: "aws" as never })).toThrow(
      /platform is only allowed when mode is 'confidential-vm'/,
    );
    // Nothing was registered for the refused ones.
    expect(registered.some((r) => r.name.startsWith("cvm"))).toBe(false);
  });
});
