// The image/firmware catalog: lookups, typed errors, internal consistency of the tables, and agreement
// with the real artefacts it points at (Debian OVMF.fd, the fetch-boot-inputs pins) via the engines.
import { describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import path from "node:path";
import { hasShared, noteIfSharedMissing, repoRoot, sharedPath } from "../support/shared.js";
import { requireTool } from "../support/prereq.js";
import {
  CATALOG,
  CatalogError,
  DEBIAN_BOOT_INPUTS,
  DEBIAN_OVMF,
  INSTANCE_FAMILIES,
  PLATFORMS,
  TEES,
  instanceTypes,
  readFirmwareFile,
  regionsFor,
  resolveImage,
  snpFirmwareDescription,
  teesFor,
  vcpusFor,
} from "../../images/catalog/index.js";
import { VCPU_TYPES, VMM_TYPES, parseOvmf, snpLaunchDigest } from "../../images/snp/index.js";
import { measureTdx } from "../../images/tdx/index.js";

function catalogError(fn: () => unknown): CatalogError {
  try {
    fn();
  } catch (e) {
    if (e instanceof CatalogError) return e;
    throw e;
  }
  throw new Error("expected a CatalogError");
}

describe("resolveImage", () => {
  it("resolves a default image for every platform × TEE the platform offers, and only those", () => {
    const offered = PLATFORMS.flatMap((p) => teesFor(p).map((t) => `${p}/${t}`));
    expect(offered).toEqual([
      "aws/snp",
      "azure/snp",
      "azure/tdx",
      "gcp/snp",
      "gcp/tdx",
      "proxmox/snp",
      "proxmox/tdx",
      "qemu/snp",
      "qemu/tdx",
    ]);
    for (const key of offered) {
      const [p, t] = key.split("/");
      const e = resolveImage(p, t);
      expect(e.isDefault).toBe(true);
      expect([e.platform, e.tee]).toEqual([p, t]);
    }
  });

  it("picks named images and the per-platform measurement facts", () => {
    const al = resolveImage("aws", "snp", "al2023");
    expect(al.image).toMatchObject({ kind: "aws-ami", owners: ["137112412989"] });
    expect(al.vmm).toBe("ec2");
    expect(al.alternativeVmms).toEqual(["ec2-legacy"]);
    expect(resolveImage("aws", "snp").image).toMatchObject({
      owners: ["099720109477"],
      namePattern: expect.stringContaining("noble-24.04-amd64"),
    });
    expect(resolveImage("azure", "tdx", "ubuntu-22.04-cvm").image).toMatchObject({
      urn: "Canonical:0001-com-ubuntu-confidential-vm-jammy:22_04-lts-cvm:latest",
    });
    expect(resolveImage("azure", "snp").firmware.kind).toBe("not-predictable");
    expect(resolveImage("gcp", "snp")).toMatchObject({
      vmm: "gce",
      vcpuType: "EPYC-Milan",
      image: { requiredGuestOsFeature: "SEV_SNP_CAPABLE" },
    });
    expect(resolveImage("gcp", "tdx")).toMatchObject({
      vmm: null,
      mrtdOrder: "single",
      image: { requiredGuestOsFeature: "TDX_CAPABLE" },
    });
    expect(resolveImage("proxmox", "snp").firmware.kind).toBe("must be supplied");
    expect(resolveImage("qemu", "tdx").firmware).toMatchObject({
      kind: "file",
      path: "/usr/share/ovmf/OVMF.fd",
      measuredDirectBoot: true,
    });
  });

  it("names the field and the allowed values on bad input", () => {
    let e = catalogError(() => resolveImage("oci", "snp"));
    expect(e.field).toBe("platform");
    expect(e.message).toBe("platform: 'oci' is not a known platform (allowed: aws, azure, gcp, proxmox, qemu)");
    e = catalogError(() => resolveImage("aws", "tdx"));
    expect(e.field).toBe("tee");
    expect(e.allowed).toEqual(["snp"]);
    expect(e.message).toMatch(/aws does not offer tdx/);
    e = catalogError(() => resolveImage("aws", "sgx"));
    expect(e.allowed).toEqual(["snp", "tdx"]);
    e = catalogError(() => resolveImage("aws", "snp", "windows"));
    expect(e.field).toBe("image");
    expect(e.allowed).toEqual(["ubuntu-24.04", "al2023"]);
  });
});

describe("vcpusFor and instance tables", () => {
  it("looks up vCPU counts across clouds", () => {
    expect(vcpusFor("aws", "m6a.xlarge")).toBe(4);
    expect(vcpusFor("aws", "c6a.16xlarge", "snp")).toBe(64);
    expect(vcpusFor("gcp", "n2d-standard-224")).toBe(224);
    expect(vcpusFor("gcp", "c3-standard-22", "tdx")).toBe(22);
    expect(vcpusFor("azure", "Standard_DC96es_v5", "tdx")).toBe(96);
    expect(vcpusFor("azure", "Standard_EC20as_v5")).toBe(20);
    expect(regionsFor("aws", "r6a.large")).toEqual(["us-east-2", "eu-west-1"]);
    expect(regionsFor("azure", "Standard_DC4as_v5")).toBeNull();
  });

  it("rejects unknown or non-confidential instance types, wrong TEEs and platforms without instance types", () => {
    let e = catalogError(() => vcpusFor("aws", "m6a.24xlarge"));
    expect(e.field).toBe("instanceType");
    expect(e.allowed).toContain("m6a.8xlarge");
    expect(e.allowed).not.toContain("m6a.24xlarge");
    e = catalogError(() => vcpusFor("gcp", "c3-standard-4", "snp"));
    expect(e.message).toMatch(/does not support snp/);
    expect(e.allowed).toContain("n2d-standard-2");
    e = catalogError(() => vcpusFor("qemu", "anything"));
    expect(e.field).toBe("platform");
    expect(e.allowed).toEqual(["aws", "azure", "gcp"]);
    expect(() => vcpusFor("azure", "Standard_DC4es_v5", "snp")).toThrow(CatalogError);
  });

  it("has sizes whose vCPU counts follow each cloud's naming scheme (catches table typos)", () => {
    const awsSize = (suffix: string) =>
      suffix === "large" ? 2 : suffix === "xlarge" ? 4 : 4 * Number(suffix.replace("xlarge", ""));
    for (const s of instanceTypes("aws")) expect(s.vcpus, s.name).toBe(awsSize(s.name.split(".")[1]));
    for (const s of instanceTypes("gcp")) expect(s.vcpus, s.name).toBe(Number(s.name.split("-").at(-1)));
    for (const s of instanceTypes("azure"))
      expect(s.vcpus, s.name).toBe(Number(/^Standard_[DE]C(\d+)/.exec(s.name)![1]));
    const names = INSTANCE_FAMILIES.flatMap((f) => f.sizes.map((s) => s.name));
    expect(new Set(names).size).toBe(names.length);
    for (const f of INSTANCE_FAMILIES) expect(f.source.length, f.family).toBeGreaterThan(10);
  });

  it("only lists GCE SEV-SNP shapes whose vCPU counts Google endorses", () => {
    const endorsed = new Set([1, 2, 4, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 224, 240]);
    for (const s of instanceTypes("gcp", "snp")) expect(endorsed.has(s.vcpus), s.name).toBe(true);
  });
});

describe("catalog entries", () => {
  it("use only VMM layouts and vCPU types the SNP engine knows, and cite a source for image and firmware", () => {
    for (const e of CATALOG) {
      for (const v of [e.vmm, ...e.alternativeVmms]) if (v !== null) expect(VMM_TYPES).toContain(v);
      if (e.vcpuType !== null) expect(Object.keys(VCPU_TYPES)).toContain(e.vcpuType);
      expect(e.tee === "tdx" ? e.vmm : e.mrtdOrder).toBeNull();
      expect(e.image.source.length).toBeGreaterThan(10);
      expect(e.firmware.source.length).toBeGreaterThan(10);
      expect(TEES).toContain(e.tee);
    }
    const aws = resolveImage("aws", "snp").firmware;
    expect(aws.kind === "snp-ovmf-hash" && /^[0-9a-f]{96}$/.test(aws.ovmfHash)).toBe(true);
  });

  it("pins the same boot inputs as scripts/fetch-boot-inputs.sh", () => {
    const script = readFileSync(path.join(repoRoot, "scripts/fetch-boot-inputs.sh"), "utf8");
    const pin = (name: string) => new RegExp(`^${name}=(\\S+)$`, "m").exec(script)?.[1];
    expect(pin("KERNEL_SHA256")).toBe(DEBIAN_BOOT_INPUTS.kernel.sha256);
    expect(pin("INITRD_SHA256")).toBe(DEBIAN_BOOT_INPUTS.initrd.sha256);
    expect(DEBIAN_BOOT_INPUTS.kernel.from).toContain(pin("KERNEL_PKG")!);
    expect(DEBIAN_BOOT_INPUTS.kernel.from).toContain(pin("KERNEL_VERSION")!);
    const boot = path.join(repoRoot, DEBIAN_BOOT_INPUTS.kernel.path);
    if (existsSync(boot))
      expect(createHash("sha256").update(readFileSync(boot)).digest("hex")).toBe(DEBIAN_BOOT_INPUTS.kernel.sha256);
  });
});

describe.skipIf(!noteIfSharedMissing("catalog firmware vs engines"))(
  "catalog firmware facts agree with the engines",
  () => {
    const fw = hasShared ? readFileSync(sharedPath("vectors/debian-bookworm-ovmf/OVMF.fd")) : Buffer.alloc(0);

    it("the pinned Debian OVMF digest is the shared vector's and, when installed, the host's", () => {
      expect(createHash("sha256").update(fw).digest("hex")).toBe(DEBIAN_OVMF.sha256);
      if (requireTool("Debian ovmf package (/usr/share/ovmf/OVMF.fd)", existsSync(DEBIAN_OVMF.path))) {
        expect(createHash("sha256").update(readFileSync(DEBIAN_OVMF.path)).digest("hex")).toBe(DEBIAN_OVMF.sha256);
      }
    });

    it("qemu/snp says no measured direct boot: the firmware indeed has SEV metadata but no kernel-hashes table", () => {
      const e = resolveImage("qemu", "snp");
      expect(e.firmware.kind === "file" && e.firmware.measuredDirectBoot).toBe(false);
      const ovmf = parseOvmf(fw);
      expect(ovmf.sevMetadata).not.toBeNull();
      expect(ovmf.hashTableGpa).toBeNull();
    });

    it("reads the catalogued firmware file only when it is the pinned build", () => {
      const e = resolveImage("qemu", "tdx");
      expect(readFirmwareFile(e, sharedPath("vectors/debian-bookworm-ovmf/OVMF.fd")).length).toBe(2 * 1024 * 1024);
      expect(
        catalogError(() => readFirmwareFile(e, sharedPath("vectors/debian-bookworm-ovmf/OVMF_CODE_4M.fd"))).message,
      ).toMatch(/not the catalogued ovmf 2022.11/);
      expect(catalogError(() => readFirmwareFile(e, "/nonexistent/OVMF.fd")).message).toMatch(/ENOENT \(install ovmf/);
      expect(catalogError(() => readFirmwareFile(resolveImage("gcp", "tdx"))).field).toBe("firmware");
    });

    it("qemu/tdx firmware measures with the entry's MRTD order", () => {
      const e = resolveImage("qemu", "tdx");
      expect(measureTdx({ firmware: fw, mrtdOrder: e.mrtdOrder! }).mrtd).toMatch(/^4c7206f0/);
    });
  },
);

describe("AWS firmware known by hash + layout reproduces reference vectors and real hardware", () => {
  const entry = resolveImage("aws", "snp");
  const h2 = "2027a27bb9f7acfd280e4c7bd68a73973b94bf0756e5b282e004b9395f597b8d0eb4defa7d8f6549375aa4d2b146f0f3";
  const digest = (vcpus: number, vmm: "ec2" | "ec2-legacy" | "gce", hash?: string) =>
    snpLaunchDigest({ firmware: snpFirmwareDescription(entry, hash), vcpus, vmm, guestFeatures: 1 }).toString("hex");

  it("equals virtee/sev-snp-measure-go's ovmf_img_1/ovmf_img_2 test vectors (2 vCPUs, ec2 and gce)", () => {
    expect(digest(2, "ec2")).toBe(
      "1c146f3083d66ad1648f842a62a65ad99b9fa4c8fe5b151b677f4923c1686004ce9ce3d1d9eda527f72bba78e6ceef67",
    );
    expect(digest(2, "gce")).toBe(
      "92dd082c6f938452733ef95413d5b023f4a30b249ef5e65c96f090f84c96419004636f5289aa7de3e7948625c64fa67c",
    );
    expect(digest(2, "ec2", h2)).toBe(
      "ef89452c1af43e29da35f8707836be26dbdb70654e46cd81368d7e130ab583018b70319e90b5890b63e2294eed84e63d",
    );
    expect(digest(2, "gce", h2)).toBe(
      "d0a87fc891933399c54853b455aef5dd348db04465cf726d891b2f5b3f95cd85f42d47236acde9cb29acc3b154d05ef8",
    );
  });

  it("equals the MEASUREMENT of a real m6a.xlarge SNP report (aws/uefi#10) with the catalog's vCPU count", () => {
    const d = digest(vcpusFor("aws", "m6a.xlarge", "snp"), "ec2-legacy", h2);
    expect(d.startsWith("25ac810f") && d.endsWith("6155"), d).toBe(true);
  });

  it("matches the layout of Debian's edk2-2022.11 OVMF.fd and rejects unknown hashes", () => {
    if (hasShared) {
      const deb = parseOvmf(readFileSync(sharedPath("vectors/debian-bookworm-ovmf/OVMF.fd")));
      const fw = snpFirmwareDescription(entry);
      expect(fw.sections).toEqual(deb.sevMetadata);
      expect(fw.resetEip).toBe(deb.resetEip);
    }
    expect(catalogError(() => snpFirmwareDescription(entry, "00".repeat(48))).field).toBe("ovmfHash");
    expect(catalogError(() => snpFirmwareDescription(resolveImage("qemu", "snp"))).field).toBe("firmware");
  });
});
