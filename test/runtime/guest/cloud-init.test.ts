// Rendered user-data for every platform variant must pass the real cloud-init schema validator
// (Debian's cloud-init: `cloud-init schema --config-file F`), and secrets must be refused.
import { describe, expect, it, beforeAll } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parse } from "yaml";
import { requireTool } from "../../support/prereq.js";
import {
  CLOUD_PLATFORMS,
  renderUserData,
  secret,
  Secret,
  SecretInUserDataError,
  UserDataError,
  USER_DATA_LIMIT_BYTES,
  proxmoxSnippet,
  noCloudMetaData,
  azureCustomData,
  type UserDataInput,
} from "../../../runtime/guest/cloud-init/index.js";
import { parseConfig } from "../../../runtime/guest/config.js";
import { main } from "../../../cli/main.js";
import { hasCloudInit, validateUserData as validate } from "../../support/cloud-init.js";

const CA = "3f".repeat(32);
const AGENT_SHA = "ab".repeat(32);
const fullPlan: UserDataInput["provision"] = {
  volume: { device: "/dev/disk/by-id/nvme-data", name: "bk-data", filesystem: "ext4", mountpoint: "/srv/data" },
  ssh: { keyTypes: ["ed25519"], dir: "/etc/ssh", renewBeforeSeconds: 86400 },
  tls: { certPath: "/etc/ssl/bk/tls.crt", keyPath: "/etc/ssl/bk/tls.key", renewBeforeSeconds: 86400 },
  files: [
    { path: "/etc/app/db-password", secret: "db", field: "password", mode: "0640", owner: "root", group: "root" },
  ],
  envFiles: [{ path: "/etc/app/env", vars: { API_KEY: "api#key" }, mode: "0600" }],
  hook: { command: ["systemctl", "reload", "nginx.service"], timeoutSeconds: 60 },
};

function variants(): { name: string; input: UserDataInput }[] {
  const out: { name: string; input: UserDataInput }[] = [];
  for (const platform of CLOUD_PLATFORMS) {
    for (const tee of ["snp", "tdx", undefined] as const) {
      for (const delivery of ["download", "preinstalled"] as const) {
        out.push({
          name: `${platform}/${tee ?? "any"}/${delivery}`,
          input: {
            platform,
            tee,
            runtimeUrl: "https://runtime.example:8200",
            runtimeCaSha256: CA,
            workloadId: "web-1",
            agent:
              delivery === "download"
                ? {
                    kind: "download",
                    url: "https://runtime.example:8200/artifacts/enclaivelet-linux-x64.tgz",
                    sha256: AGENT_SHA,
                  }
                : { kind: "preinstalled" },
            servicesNeedingSecrets: ["nginx.service"],
            hostname: "web-1",
            provision: fullPlan,
            extraFiles: [{ path: "/etc/app/public.conf", content: "listen 443\n", permissions: "0644" }],
          },
        });
      }
    }
  }
  return out;
}

describe("cloud-init user-data: real schema validator", () => {
  let ok = false;
  beforeAll(() => {
    ok = requireTool("cloud-init (Debian package; `cloud-init schema`)", hasCloudInit);
  });

  it("the validator is live: it rejects a broken document (unquoted permissions, runcmd not a list)", (ctx) => {
    if (!ok) return ctx.skip();
    const bad =
      "#cloud-config\nwrite_files:\n  - path: /x\n    content: y\n    permissions: 0600\nruncmd: not-a-list\n";
    const r = validate(bad);
    expect(r.status).toBe(1);
    expect(r.output).toMatch(/runcmd/);
    expect(r.output).toMatch(/permissions/);
  });

  for (const v of variants()) {
    it(`valid: ${v.name}`, (ctx) => {
      if (!ok) return ctx.skip();
      const r = renderUserData(v.input);
      expect(r.bytes).toBeLessThanOrEqual(USER_DATA_LIMIT_BYTES);
      const res = validate(r.text);
      expect(res.output).toContain("Valid cloud-config");
      expect(res.status).toBe(0);
    });
  }
});

describe("cloud-init user-data: content", () => {
  it("asks cloud-init for tpm2-tools only for an agent it starts itself, never for the image's agent", () => {
    const base = variants().find((v) => v.name === "aws/snp/preinstalled")!.input;
    const packages = (input: UserDataInput) =>
      (parse(renderUserData(input).text.replace(/^#cloud-config\n/, "")) as { packages?: string[] }).packages;
    expect(packages({ ...base, vtpm: true })).toEqual(["tpm2-tools"]);
    expect(packages({ ...base, vtpm: false })).toBeUndefined();
    // The image's agent runs before cloud-init's user stages, with the image's own tools.
    expect(packages({ ...base, vtpm: true, agent: { kind: "image" } })).toBeUndefined();
    const azure = variants().find((v) => v.name === "azure/snp/preinstalled")!.input;
    expect(packages(azure)).toEqual(["tpm2-tools"]);
    expect(packages({ ...azure, agent: { kind: "image" } })).toBeUndefined();
  });

  it("embeds an agent config that the agent's own parser accepts, with the platform's provider", () => {
    for (const v of variants()) {
      const r = renderUserData(v.input);
      const doc = parse(r.text.replace(/^#cloud-config\n/, "")) as {
        write_files: { path: string; content: string; permissions: string }[];
        runcmd: string[][];
        packages?: string[];
      };
      const cfgFile = doc.write_files.find((f) => f.path === "/etc/buckypaper/enclaivelet.json")!;
      const cfg = parseConfig(JSON.parse(cfgFile.content));
      expect(cfg.workloadId).toBe("web-1");
      expect(cfg.runtimeCaSha256).toBe(CA);
      const expectProvider = v.input.platform === "azure" ? "azure" : v.input.tee === "tdx" ? "configfs-tsm" : "auto";
      expect(cfg.evidence.provider, v.name).toBe(expectProvider);
      expect(doc.packages?.includes("tpm2-tools") ?? false).toBe(v.input.platform === "azure");
      const unit = doc.write_files.find((f) => f.path === "/etc/systemd/system/enclaivelet.service")!.content;
      expect(unit).toMatch(/^After=network-online\.target$/m);
      // sshd is only ordered after the agent (HostCertificate); the app services also require it.
      expect(unit).toMatch(/^Before=nginx\.service sshd\.service$/m);
      expect(unit).toMatch(/^RequiredBy=nginx\.service$/m);
      expect(doc.runcmd).toContainEqual(["systemctl", "try-reload-or-restart", "sshd.service"]);
      const fetch = doc.write_files.find((f) => f.path === "/usr/local/lib/buckypaper/fetch-enclaivelet.sh");
      if (v.input.agent?.kind === "download") {
        expect(unit).toMatch(/^ExecStartPre=\/usr\/local\/lib\/buckypaper\/fetch-enclaivelet\.sh$/m);
        expect(fetch!.content).toContain(`SHA='${AGENT_SHA}'`);
        expect(fetch!.content).toContain("sha256sum -c");
        expect(fetch!.permissions).toBe("0755");
      } else {
        expect(fetch).toBeUndefined();
      }
      expect(doc.runcmd).toContainEqual(["systemctl", "enable", "--now", "enclaivelet.service"]);
    }
  });

  it("the fetch script really refuses an artifact whose SHA-256 differs from the pin", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "bk-fetch-"));
    try {
      writeFileSync(path.join(dir, "a.tgz"), "tampered artifact");
      const good = spawnSync("sh", ["-c", `echo "${AGENT_SHA}  ${dir}/a.tgz" | sha256sum -c --quiet -`], {
        encoding: "utf8",
      });
      expect(good.status).not.toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("platform helpers: Proxmox snippet, NoCloud meta-data, Azure customData", () => {
    const r = renderUserData({
      platform: "proxmox",
      runtimeUrl: "https://rt:8200",
      runtimeCaSha256: CA,
      workloadId: "pve-1",
    });
    const s = proxmoxSnippet(r, "local", "pve 1");
    expect(s.cicustom).toMatch(/^user=local:snippets\/buckypaper-pve-1-[0-9a-f]{12}\.yaml$/);
    expect(noCloudMetaData("i-1", "vm1")).toBe('instance-id: "i-1"\nlocal-hostname: "vm1"\n');
    expect(Buffer.from(azureCustomData(r), "base64").toString()).toBe(r.text);
  });
});

describe("cloud-init user-data: no secret, by construction", () => {
  const base: UserDataInput = { platform: "aws", runtimeUrl: "https://rt:8200", runtimeCaSha256: CA, workloadId: "w" };

  it("refuses a Secret anywhere in the input, naming the field and not the value", () => {
    const leaked = secret("hunter2-db-password", "db-password");
    const attempts: unknown[] = [
      { ...base, extraFiles: [{ path: "/etc/app.conf", content: leaked }] },
      { ...base, hostname: leaked },
      { ...base, provision: { hook: { command: ["/bin/app", leaked], timeoutSeconds: 5 } } },
    ];
    for (const a of attempts) {
      let err: unknown;
      try {
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        renderUserData(a as any);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SecretInUserDataError);
      expect((err as Error).message).toContain("db-password");
      expect((err as Error).message).not.toContain("hunter2");
    }
  });

  it("a Secret cannot be serialised or printed by accident", () => {
    const s = new Secret("hunter2");
    expect(() => JSON.stringify({ s })).toThrow(SecretInUserDataError);
    expect(String(s)).not.toContain("hunter2");
    expect(s.reveal()).toBe("hunter2");
  });

  it("refuses private keys and Vault tokens in free-form content even when unwrapped", () => {
    expect(() =>
      renderUserData({ ...base, extraFiles: [{ path: "/k", content: "-----BEGIN EC PRIVATE KEY-----\nMHc...\n" }] }),
    ).toThrow(SecretInUserDataError);
    expect(() =>
      renderUserData({ ...base, extraFiles: [{ path: "/t", content: "VAULT_TOKEN=hvs.CAESIJlongtokenvalue1234567" }] }),
    ).toThrow(SecretInUserDataError);
  });

  it("enforces the 16 KB limit of the strictest platform", () => {
    const big = "x".repeat(USER_DATA_LIMIT_BYTES);
    expect(() => renderUserData({ ...base, extraFiles: [{ path: "/big", content: big }] })).toThrow(
      /exceeds the 16384-byte limit/,
    );
  });

  it("bad input is a typed error naming the field", () => {
    expect(() => renderUserData({ ...base, runtimeCaSha256: "abc" })).toThrow(UserDataError);
    expect(() => renderUserData({ ...base, runtimeCaSha256: "abc" })).toThrow(/runtimeCaSha256/);
    expect(() => renderUserData({ ...base, runtimeUrl: "http://rt:8200" })).toThrow(/runtimeUrl: must be https/);
    expect(() => renderUserData({ ...base, servicesNeedingSecrets: ["nginx; rm -rf /"] })).toThrow(
      /servicesNeedingSecrets\[0\]/,
    );
  });
});

describe("buckypaper cloud-init render", () => {
  function cli(argv: string[]) {
    const out: string[] = [],
      err: string[] = [];
    return main(argv, { out: (t) => void out.push(t), err: (t) => void err.push(t) }).then((code) => ({
      code,
      out: out.join(""),
      err: err.join(""),
    }));
  }

  it("prints valid user-data for the documented invocation", async (ctx) => {
    const r = await cli([
      "cloud-init",
      "render",
      "--platform",
      "gcp",
      "--runtime-url",
      "https://rt.example:8200",
      "--runtime-ca-fingerprint",
      CA,
      "--workload",
      "web-1",
      "--tee",
      "tdx",
    ]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out.startsWith("#cloud-config\n")).toBe(true);
    expect(r.out).toContain('"provider": "configfs-tsm"');
    if (!requireTool("cloud-init", hasCloudInit)) return ctx.skip();
    expect(validate(r.out).status).toBe(0);
  });

  it("usage errors exit 2 and name the flag", async () => {
    const r = await cli([
      "cloud-init",
      "render",
      "--platform",
      "mars",
      "--runtime-url",
      "https://x",
      "--runtime-ca-fingerprint",
      CA,
      "--workload",
      "w",
    ]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("--platform");
    const r2 = await cli([
      "cloud-init",
      "render",
      "--platform",
      "aws",
      "--runtime-url",
      "https://x",
      "--runtime-ca-fingerprint",
      "zz",
      "--workload",
      "w",
    ]);
    expect(r2.code).toBe(2);
    expect(r2.err).toContain("--runtime-ca-fingerprint");
  });
});

describe("buckypaper cloud-init render --plan", () => {
  it("embeds a provisioning plan from a JSON file; a bad plan is a usage error naming the field", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "bk-plan-"));
    try {
      const plan = path.join(dir, "plan.json");
      writeFileSync(plan, JSON.stringify(fullPlan));
      const out: string[] = [],
        err: string[] = [];
      const io = { out: (t: string) => void out.push(t), err: (t: string) => void err.push(t) };
      const args = [
        "cloud-init",
        "render",
        "--platform",
        "proxmox",
        "--runtime-url",
        "https://rt:8200",
        "--runtime-ca-fingerprint",
        CA,
        "--workload",
        "w",
        "--plan",
        plan,
      ];
      expect(await main(args, io)).toBe(0);
      expect(out.join("")).toContain('"device": "/dev/disk/by-id/nvme-data"');
      writeFileSync(plan, JSON.stringify({ files: [{ path: "relative", secret: "x" }] }));
      expect(await main(args, io)).toBe(2);
      expect(err.join("")).toContain("files[0].path");
      writeFileSync(plan, JSON.stringify({ runtimeUrl: "https://evil" }));
      expect(await main(args, io)).toBe(2);
      expect(err.join("")).toContain("unexpected: runtimeUrl");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
