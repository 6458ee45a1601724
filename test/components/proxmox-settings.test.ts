import { beforeAll, describe, expect, it } from "vitest";
import { noteIfSharedMissing, sharedPath } from "../support/shared.js";
import { loadPveMethodParams, validatePveParams } from "../support/pve-schema.js";
import { proxmoxVmParams, pveshCreateCommand } from "../../components/proxmox/settings.js";
import { Tee } from "../../components/common/types.js";

const base = {
  vmid: 4100,
  name: "bk-web",
  cores: 4,
  memoryMb: 4096,
  cpuModel: "EPYC-v4",
  storage: "local-lvm",
  diskGb: 20,
  bridge: "vmbr0",
  userDataVolume: "local:snippets/bk-web-user.yaml",
  allowSmt: true,
};

describe.runIf(noteIfSharedMissing("Proxmox API schema checks"))(
  "Proxmox parameters against the official PVE API schema",
  () => {
    // Loaded in beforeAll, not at collection: vitest collects a skipped describe's body too.
    let props: ReturnType<typeof loadPveMethodParams>;
    beforeAll(() => {
      props = loadPveMethodParams(sharedPath("proxmox/pve-api-schema.json"), "/nodes/{node}/qemu", "POST");
    });

    it("SNP with measured direct boot is valid", () => {
      const p = proxmoxVmParams({
        ...base,
        tee: Tee.SevSnp,
        kernelPath: "/var/lib/bk/vmlinuz",
        initrdPath: "/var/lib/bk/initrd.img",
        append: "console=ttyS0 root=/dev/sda1",
      });
      expect(validatePveParams(props, p)).toEqual([]);
      expect(p["amd-sev"]).toBe("type=snp,kernel-hashes=1,no-debug=1,allow-smt=1");
      expect(p.bios).toBe("ovmf");
      expect(p).not.toHaveProperty("efidisk0");
    });

    it("TDX with an imported cloud image is valid", () => {
      const p = proxmoxVmParams({
        ...base,
        tee: Tee.Tdx,
        cpuModel: "host",
        importFrom: "local:import/debian-12-genericcloud-amd64.qcow2",
      });
      expect(validatePveParams(props, p)).toEqual([]);
      expect(p["intel-tdx"]).toBe("type=tdx,attestation=1");
      expect(p).not.toHaveProperty("amd-sev");
    });

    it("the validator catches what the schema forbids (it can fail)", () => {
      const p = proxmoxVmParams({ ...base, tee: Tee.SevSnp });
      expect(validatePveParams(props, { ...p, bios: "uefi" })).toEqual([expect.stringContaining("bios")]);
      expect(validatePveParams(props, { ...p, vmid: 42 })).toEqual([expect.stringContaining("minimum 100")]);
      expect(validatePveParams(props, { ...p, "amd-sev": "type=snp,kernel-hash=1" })).toEqual([
        expect.stringContaining("unknown key"),
      ]);
      expect(validatePveParams(props, { ...p, net0: "virtio,bridgee=vmbr0" })).toEqual([
        expect.stringContaining("unknown key 'bridgee'"),
      ]);
      expect(validatePveParams(props, { ...p, sevsnp: 1 })).toEqual([expect.stringContaining("not a parameter")]);
    });
  },
);

describe("pvesh command rendering", () => {
  it("quotes values so a command line cannot be injected", () => {
    const p = proxmoxVmParams({ ...base, tee: Tee.SevSnp, kernelPath: "/k", append: "a'; rm -rf / #" });
    const cmd = pveshCreateCommand("pve1", p);
    expect(cmd.startsWith("pvesh create '/nodes/pve1/qemu' --vmid '4100'")).toBe(true);
    expect(cmd).toContain(`'-kernel '\\''/k'\\'' -append '\\''a'\\''\\'\\'''\\''; rm -rf / #'\\'''`);
  });
});
