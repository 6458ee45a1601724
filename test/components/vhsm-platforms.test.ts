// Mocked-engine tests of the Vhsm's `confidential-vm` mode on SEV-SNP hardware: a QEMU/KVM host and a Proxmox VE
// node (only the cloud/host APIs are mocked: @pulumi/command and the dynamic provider). What the runtime's guest
// gets — the QEMU argv (sev-snp-guest with kernel-hashes, policy, host-data; the image's verity root, seed and
// data disk; the host port forwarded to the runtime) or the PVE parameters (amd-sev snp with kernel-hashes, the
// runtime's virtio disks, no cloud-init drive) — carries no secret; the expected measurement the deployer verifies
// against equals `buckypaper measure snp` for the same manifest/firmware and SNP parameters; HOST_DATA is pinned
// on QEMU and the instance explicitly unpinned on Proxmox; every impossible combination is refused at preview
// naming the field and the allowed values.
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { installMocks, resolve, unsecret, type MockHarness } from "../support/pulumi-mocks.js";
import { requireTool } from "../support/prereq.js";
import { repoRoot } from "../support/shared.js";
import { writeRuntimeManifest } from "../support/runtime-manifest.js";
import { main } from "../../cli/main.js";

function builtFirmware(): string | undefined {
  const r = spawnSync(path.join(repoRoot, "scripts/build-firmware.sh"), ["--print-path"], { encoding: "utf8" });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : undefined;
}
const firmware = builtFirmware();
const ready = requireTool(
  "the AmdSev OVMF (scripts/build-firmware.sh, run by scripts/ci-deps.sh)",
  firmware !== undefined,
);

let h: MockHarness;
let c: typeof import("../../components/index.js");
const made: string[] = [];
const ssh = {
  host: "kvm1.lan",
  privateKey: pulumi.secret("-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----"),
};
let image = "";

beforeAll(async () => {
  h = await installMocks({
    // The VM commands print a fresh launch id (LAUNCH_ID); here the resource's name stands in for it.
    "command:remote:Command": (_i, name) => ({ stdout: name.endsWith("-vm") ? `bk-launch ${name}\n` : "" }),
    // What AttestedRuntime's create returns after verifying (the verification itself: test/provider/attested-runtime).
    "pulumi-nodejs:dynamic/buckypaper:AttestedRuntime": (inputs) => ({
      measurement: (inputs.attestation as { snpMeasurements: string[] }).snpMeasurements[0],
      tlsKeySha256: "5e".repeat(32),
      simulated: false,
      verifiedBy: "the deployer (pulumi up), attested TLS: AMD root",
      verifiedAt: "2026-12-07T00:00:00.000Z",
      checks: ["policy.measurement: ok"],
      deployer: { mount: "bk-deployer", role: "deployer", keyFile: "/tmp/k.pem" },
      recoveryShares: ["jwe"],
      runtimeInstanceId: "1d".repeat(32),
    }),
  });
  c = await import("../../components/index.js");
  if (firmware) {
    const m = writeRuntimeManifest({ firmware, psp: "sev-guest" });
    image = m.manifest;
    made.push(m.dir);
  }
});
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

const byName = (n: string) => h.resources.find((r) => r.name === n && !r.type.startsWith("buckypaper:index:"))!;
const cmd = (n: string) => String(unsecret(byName(n).inputs.create));
const runtimeOf = (n: string) => unsecret(byName(`${n}-runtime`).inputs) as Record<string, unknown>;

async function measure(...argv: string[]): Promise<string> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(["measure", "snp", ...argv, "--output-format", "hex"], {
    out: (t) => out.push(t),
    err: (t) => err.push(t),
  });
  expect(code, err.join("")).toBe(0);
  return out.join("").trim().toLowerCase();
}

const cvm = () => ({ mode: c.VhsmMode.ConfidentialVm });

describe.runIf(ready)("Vhsm confidential-vm on a QEMU/KVM host with SEV-SNP", () => {
  it("boots the runtime image with the cloud-correct SNP argv; expected measurement = measure snp --manifest; HOST_DATA pinned", async () => {
    const v = new c.Vhsm("vq", {
      ...cvm(),
      platform: c.VhsmPlatform.Qemu,
      ssh,
      image,
      vcpus: 2,
      memoryMb: 2048,
      port: 18443,
    });
    const measurement = await resolve(v.measurement);
    const expected = await measure("--manifest", image, "--vcpus", "2", "--vcpu-type", "EPYC-v4");
    expect(measurement).toBe(expected);
    expect((await resolve(v.attestationSummary))!.expectedMeasurement).toBe(expected);
    expect(await resolve(v.url)).toBe("https://kvm1.lan:18443");

    const hostData = createHash("sha256")
      .update(["buckypaper-vhsm-instance", "buckypaper-test", "unit", "vq"].join("\0"))
      .digest("hex");
    const rt = runtimeOf("vq");
    expect(rt.attestation).toEqual({ snpMeasurements: [expected], snpHostData: hostData, kds: "online" });
    // What the Vhsm hands the providers and the guests: the same, plus the instance id learnt at bootstrap.
    expect(await resolve(v.attestation)).toEqual({
      ...(rt.attestation as object),
      runtimeInstanceId: "1d".repeat(32),
    });
    expect((await resolve(v.attestationSummary))!.runtimeInstanceId).toBe("1d".repeat(32));

    const create = cmd("vq-vm");
    const dir = "/var/lib/buckypaper/vhsm-unit";
    expect(create).toMatch(/^rm -f .*qemu-img create -q -f qcow2 -F raw -b \S*rootfs\.img\S* \S*root\.qcow2\S* && /);
    expect(create).toContain(`qemu-img create -q -f qcow2 '${dir}/data.qcow2' 1G`);
    expect(create).toContain("systemd-run --unit=bk-vhsm-vq --collect --property=Restart=no qemu-system-x86_64");
    expect(create).toContain("-accel kvm -cpu EPYC-v4 -smp 2 -m 2048M");
    expect(create).toContain("-machine q35,confidential-guest-support=sev0,memory-backend=ram1");
    expect(create).toContain(
      `sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,kernel-hashes=on,host-data=${Buffer.from(hostData, "hex").toString("base64")}`,
    );
    expect(create).toContain(`-bios ${dir}/firmware.fd -kernel ${dir}/vmlinuz -initrd ${dir}/initrd.img -append `);
    const m = JSON.parse(readFileSync(image, "utf8")) as { cmdline: string };
    expect(create).toContain(`'${m.cmdline}'`);
    const drives = [...create.matchAll(/-drive (\S+)/g)].map((x) => x[1]);
    expect(drives).toEqual([
      `file=${dir}/root.qcow2,if=virtio,format=qcow2`,
      `file=${dir}/seed.iso,if=virtio,format=raw,readonly=on`,
      `file=${dir}/data.qcow2,if=virtio,format=qcow2`,
    ]);
    expect(create).toContain("-netdev user,id=n0,hostfwd=tcp:0.0.0.0:18443-:8200");
    expect(String(unsecret(byName("vq-vm").inputs.delete))).toContain("systemctl stop bk-vhsm-vq");
    // A new VM is a new runtime: the id its creation prints is part of the launch AttestedRuntime is replaced on.
    expect(create).toMatch(/ && echo "bk-launch \$\(cat \/proc\/sys\/kernel\/random\/uuid\)"$/);
    expect(rt.launch).toMatch(/^[0-9a-f]{64}:bk-launch vq-vm$/);
    // Every boot file is on the host before QEMU starts.
    for (const f of ["firmware.fd", "vmlinuz", "initrd.img", "rootfs.img"])
      expect(String(unsecret(byName(`vq-${f}`).inputs.remotePath))).toBe(`${dir}/${f}`);

    // No secret goes to the guest: its seed is an empty cloud-config (cloud-init is masked in the image anyway),
    // and nothing of the bootstrap (root token, unseal keys, deployer key) is in any input but the SSH key.
    expect(unsecret(byName("vq-seed").inputs.stdin)).toBe("#cloud-config\n{}\n");
    const everything = JSON.stringify(
      h.resources.filter((r) => r.name.startsWith("vq")).map((r) => unsecret(r.inputs)),
    );
    expect(everything).not.toMatch(/root_token|rootToken":"|unsealKeys":\[|BEGIN PRIVATE KEY/);
    expect(rt.rootToken).toBeUndefined();
    expect(rt.unsealKeys).toBeUndefined();
    expect(rt.rootWrites).toBeUndefined();
  });

  it("an explicit hostData is launched and required; other vCPUs are another measurement", async () => {
    const hd = "c0".repeat(32);
    const v = new c.Vhsm("vq2", {
      ...cvm(),
      platform: c.VhsmPlatform.Qemu,
      ssh,
      image,
      hostData: hd,
      publicHost: "vhsm.example",
      listenAddress: "192.0.2.10",
    });
    const measurement = await resolve(v.measurement);
    expect(measurement).toBe(await measure("--manifest", image, "--vcpus", "1", "--vcpu-type", "EPYC-v4"));
    expect(measurement).not.toBe(await measure("--manifest", image, "--vcpus", "2", "--vcpu-type", "EPYC-v4"));
    expect((runtimeOf("vq2").attestation as { snpHostData: string }).snpHostData).toBe(hd);
    expect(cmd("vq2-vm")).toContain(`host-data=${Buffer.from(hd, "hex").toString("base64")}`);
    expect(cmd("vq2-vm")).toContain("hostfwd=tcp:192.0.2.10:8200-:8200");
    expect(await resolve(v.url)).toBe("https://vhsm.example:8200");
  });
});

describe.runIf(ready)("Vhsm confidential-vm on a Proxmox VE node with SEV-SNP", () => {
  const pve = () => ({
    ...cvm(),
    platform: c.VhsmPlatform.Proxmox,
    ssh,
    image,
    firmware: firmware!, // stands in for the node's OVMF_SEV_4M.fd (it has the kernel-hashes table too)
    node: "pve1",
    vmid: 901,
    publicHost: "10.0.0.50",
    allowAnyInstance: true,
  });

  it("creates the VM with the workload's amd-sev parameters and the runtime's disks; measurement = measure snp", async () => {
    const v = new c.Vhsm("vp", { ...pve(), vcpus: 2, macAddress: "bc:24:11:00:00:01" });
    const measurement = await resolve(v.measurement);
    const dir = JSON.parse(readFileSync(image, "utf8")) as { cmdline: string };
    const expected = await measure(
      "--ovmf",
      firmware!,
      "--kernel",
      path.join(path.dirname(image), "vmlinuz"),
      "--initrd",
      path.join(path.dirname(image), "initrd.img"),
      "--append",
      dir.cmdline,
      "--vcpus",
      "2",
      "--vcpu-type",
      "EPYC-v4",
    );
    expect(measurement).toBe(expected);
    expect(runtimeOf("vp").attestation).toEqual({ snpMeasurements: [expected], allowAnyInstance: true, kds: "online" });
    expect(await resolve(v.url)).toBe("https://10.0.0.50:8200");
    const create = cmd("vp-vm");
    const boot = "/var/lib/buckypaper/vhsm-unit";
    expect(create).toMatch(/^pvesh create '\/nodes\/pve1\/qemu' --vmid '901' --name 'vp' --bios 'ovmf'/);
    expect(create).toContain("--cpu 'EPYC-v4' --sockets '1' --cores '2' --memory '1024'");
    expect(create).toContain("--amd-sev 'type=snp,kernel-hashes=1,no-debug=1,allow-smt=1'");
    const q = (x: string) => `'\\''${x}'\\''`;
    expect(create).toContain(
      `--args '-kernel ${q(`${boot}/vmlinuz`)} -initrd ${q(`${boot}/initrd.img`)} -append ${q(dir.cmdline)}'`,
    );
    expect(create).toContain(`--virtio0 'local-lvm:0,import-from=${boot}/rootfs.img'`);
    expect(create).toContain(`--virtio1 'local-lvm:0,import-from=${boot}/seed.iso'`);
    expect(create).toContain("--virtio2 'local-lvm:1'");
    expect(create).toContain("--boot 'order=virtio0'");
    expect(create).toContain("--net0 'virtio=bc:24:11:00:00:01,bridge=vmbr0'");
    expect(create).toMatch(/&& qm start 901 && echo "bk-launch \$\(cat \/proc\/sys\/kernel\/random\/uuid\)"$/);
    expect(runtimeOf("vp").launch).toMatch(/^[0-9a-f]{64}:bk-launch vp-vm$/);
    // No cloud-init drive, no user-data snippet, no cloud image disk: nothing the host's seed could run.
    for (const k of ["--cicustom", "--ide2", "--scsi0", "--citype"]) expect(create).not.toContain(k);
    expect(unsecret(byName("vp-seed").inputs.stdin)).toBe("#cloud-config\n{}\n");
    expect(String(unsecret(byName("vp-vm").inputs.delete))).toContain("qm destroy 901 --purge 1");
  });

  it("the component's parameters are the workload component's (proxmoxVmParams) but for the disks", async () => {
    const { proxmoxRuntimeVmParams } = await import("../../components/proxmox/vhsm-guest.js");
    const { proxmoxVmParams } = await import("../../components/proxmox/settings.js");
    const common = {
      vmid: 902,
      name: "x",
      cores: 1,
      memoryMb: 1024,
      cpuModel: "EPYC-v4",
      storage: "tank",
      bridge: "vmbr1",
      kernelPath: "/b/vmlinuz",
      initrdPath: "/b/initrd.img",
      append: "console=ttyS0",
      allowSmt: false,
    };
    const rt = proxmoxRuntimeVmParams({
      ...common,
      rootfsPath: "/b/rootfs.img",
      seedPath: "/b/seed.iso",
      dataDiskGb: 3,
    });
    const wl = proxmoxVmParams({ ...common, tee: c.Tee.SevSnp, diskGb: 1, userDataVolume: "local:snippets/u.yaml" });
    for (const k of ["bios", "machine", "cpu", "cores", "memory", "amd-sev", "args", "net0", "serial0", "onboot"])
      expect(rt[k], k).toBe(wl[k]);
    expect(rt["amd-sev"]).toBe("type=snp,kernel-hashes=1,no-debug=1,allow-smt=0");
    expect(rt.virtio2).toBe("tank:3");
  });
});

describe("Vhsm confidential-vm: impossible combinations are refused at preview, naming the field", () => {
  it("host fields on a cloud (AWS, GCP: vhsm-cloud.test.ts; Azure: vhsm-azure.test.ts), and hardware fields on the wrong platform", () => {
    expect(() => new c.Vhsm("bad-azure", { ...cvm(), platform: "azure" as never, ssh })).toThrow(
      /Vhsm bad-azure: ssh is not used on platform 'azure': the runtime's VM is created through the cloud's API/,
    );
    // Host fields on a cloud: the VM is created through the cloud's API.
    expect(() => new c.Vhsm("bad-aws", { ...cvm(), platform: "aws" as never, ssh })).toThrow(
      /Vhsm bad-aws: ssh is not used on platform 'aws': the runtime's VM is created through the cloud's API/,
    );
    expect(() => new c.Vhsm("bad-q0", { ...cvm(), platform: c.VhsmPlatform.Qemu })).toThrow(
      /Vhsm bad-q0: ssh is required on platform 'qemu'/,
    );
    expect(() => new c.Vhsm("bad-q1", { ...cvm(), platform: c.VhsmPlatform.Qemu, ssh })).toThrow(
      /Vhsm bad-q1: image is required on platform 'qemu': the manifest\.json of the runtime image \(buckypaper image build --role runtime --runtime-psp sev-guest\)/,
    );
    const q = { ...cvm(), platform: c.VhsmPlatform.Qemu, ssh, image: "/nonexistent/manifest.json" };
    expect(() => new c.Vhsm("bad-q2", { ...q, tee: c.Tee.Tdx })).toThrow(
      /Vhsm bad-q2: tee is 'tdx': the runtime's guest on qemu runs on SEV-SNP only .*SNP_GET_DERIVED_KEY.*; allowed: snp/,
    );
    expect(() => new c.Vhsm("bad-q3", { ...q, allowAnyInstance: true })).toThrow(
      /Vhsm bad-q3: allowAnyInstance is not needed on platform 'qemu': the runtime's VM is launched with HOST_DATA/,
    );
    expect(() => new c.Vhsm("bad-q4", { ...q, node: "pve1" })).toThrow(
      /Vhsm bad-q4: node is only allowed on platform 'proxmox'/,
    );
    expect(() => new c.Vhsm("bad-q5", { ...q, hostData: "XY" })).toThrow(
      /Vhsm bad-q5: hostData must be 64 lower-case hex/,
    );
    expect(
      () => new c.Vhsm("bad-q6", { ...q, trustSimulatedSnp: { product: "Milan", ark_sha256: "0", ca_certs: [] } }),
    ).toThrow(/Vhsm bad-q6: trustSimulatedSnp is only allowed on platform 'local' \(the simulated PSP\)/);
    expect(() => new c.Vhsm("bad-q7", { ...q, workers: 2 })).toThrow(
      /Vhsm bad-q7: workers is not used in mode 'confidential-vm'/,
    );
    expect(() => new c.Vhsm("bad-q8", q)).toThrow(
      /Vhsm bad-q8: image \(manifest\) manifest: \/nonexistent\/manifest\.json: ENOENT/,
    );
    expect(() => new c.Vhsm("bad-q9", { ...q, image: "relative/manifest.json" })).toThrow(
      /Vhsm bad-q9: image is 'relative\/manifest\.json'; must be the absolute path/,
    );
    // Hardware fields on the local platform, and on the other modes.
    const anchor = { product: "Milan", ark_sha256: "00".repeat(32), ca_certs: [] };
    expect(
      () =>
        new c.Vhsm("bad-l", {
          ...cvm(),
          platform: c.VhsmPlatform.Local,
          platformDir: "/tmp/p",
          trustSimulatedSnp: anchor,
          image: "/x/manifest.json",
        }),
    ).toThrow(/Vhsm bad-l: image is only allowed on the SEV-SNP hardware platforms; allowed: qemu, proxmox/);
    expect(() => new c.Vhsm("bad-p", { stateDir: "/tmp/x", hostData: "00".repeat(32) })).toThrow(
      /Vhsm bad-p: hostData is only allowed when mode is 'confidential-vm'/,
    );
  });

  it.runIf(ready)(
    "Proxmox: no HOST_DATA there (allowAnyInstance must say so), the node's firmware, the VM's address",
    () => {
      const p = {
        ...cvm(),
        platform: c.VhsmPlatform.Proxmox,
        ssh,
        image,
        firmware: firmware!,
        node: "pve1",
        vmid: 903,
        publicHost: "10.0.0.51",
      };
      expect(() => new c.Vhsm("bad-p0", p)).toThrow(
        /Vhsm bad-p0: allowAnyInstance must be true on platform 'proxmox': PVE cannot launch the VM with HOST_DATA.*; allowed: true/,
      );
      const ok = { ...p, allowAnyInstance: true };
      expect(() => new c.Vhsm("bad-p1", { ...ok, hostData: "00".repeat(32) })).toThrow(
        /Vhsm bad-p1: hostData is not settable on platform 'proxmox': PVE's amd-sev option has no host-data/,
      );
      expect(() => new c.Vhsm("bad-p2", { ...ok, firmware: undefined })).toThrow(
        /Vhsm bad-p2: firmware is required on platform 'proxmox': a copy of the node's OVMF_SEV_4M\.fd/,
      );
      expect(() => new c.Vhsm("bad-p3", { ...ok, publicHost: undefined })).toThrow(
        /Vhsm bad-p3: publicHost is required on platform 'proxmox': the address the runtime's VM gets on the bridge/,
      );
      expect(() => new c.Vhsm("bad-p4", { ...ok, port: 9000 })).toThrow(/Vhsm bad-p4: port is 9000; .*allowed: 8200/);
      expect(() => new c.Vhsm("bad-p5", { ...ok, vmid: 5 })).toThrow(
        /Vhsm bad-p5: vmid is 5; must be an integer from 100/,
      );
      expect(() => new c.Vhsm("bad-p6", { ...ok, node: undefined })).toThrow(
        /Vhsm bad-p6: node is required on platform 'proxmox'/,
      );
      expect(() => new c.Vhsm("bad-p7", { ...ok, macAddress: "nope" })).toThrow(
        /Vhsm bad-p7: macAddress 'nope' is not a MAC/,
      );
      expect(() => new c.Vhsm("bad-p8", { ...ok, cpuModel: "host" })).toThrow(
        /Vhsm bad-p8: cpuModel 'host' makes the SNP measurement depend on the host's CPU.*allowed: EPYC-v4/,
      );
    },
  );

  it.runIf(ready)("the image: a workload image, a runtime for the simulated PSP, a swapped kernel", () => {
    const q = { ...cvm(), platform: c.VhsmPlatform.Qemu, ssh };
    const workload = writeRuntimeManifest({ firmware: firmware!, role: "workload" });
    const local = writeRuntimeManifest({ firmware: firmware! });
    const swapped = writeRuntimeManifest({ firmware: firmware!, psp: "sev-guest" });
    made.push(workload.dir, local.dir, swapped.dir);
    expect(() => new c.Vhsm("img-0", { ...q, image: workload.manifest })).toThrow(
      /Vhsm img-0: image '.*' is a workload image \(role workload\); the vHSM boots the runtime role: buckypaper image build --role runtime --runtime-psp sev-guest; allowed: runtime/,
    );
    expect(() => new c.Vhsm("img-1", { ...q, image: local.manifest })).toThrow(
      /Vhsm img-1: image \(runtime\.psp\) is 'virtio-psp': that runtime gets its evidence and sealing key from the local stack's simulated PSP.*allowed: sev-guest/,
    );
    const cloudDisk = writeRuntimeManifest({ firmware: firmware!, psp: "sev-guest", cloud: "ec2" });
    made.push(cloudDisk.dir);
    expect(() => new c.Vhsm("img-3", { ...q, image: cloudDisk.manifest })).toThrow(
      /Vhsm img-3: image \(runtime\.cloud\) is 'ec2': that is the runtime's cloud disk \(platform aws\)/,
    );
    writeFileSync(path.join(swapped.dir, "vmlinuz"), "another kernel");
    expect(() => new c.Vhsm("img-2", { ...q, image: swapped.manifest })).toThrow(
      /Vhsm img-2: image \(files\.kernel\) files\.kernel: .*vmlinuz has SHA-256 [0-9a-f]{64}, the manifest says/,
    );
  });

  it("nothing was registered for the refused ones", () => {
    expect(h.resources.some((r) => /^(bad|img)-/.test(r.name) && !r.type.startsWith("buckypaper:index:"))).toBe(false);
  });
});
