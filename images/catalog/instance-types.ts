// Instance-type → vCPU tables of the SEV-SNP / TDX capable families, with the regions a source lists.
// The SNP launch digest depends on the vCPU count (one VMSA per vCPU), so components look the count up
// here instead of trusting a user-entered number.
import type { InstanceFamily } from "./types.js";

const sizes = (entries: [string, number, number][]) => entries.map(([name, vcpus, memoryGiB]) => ({ name, vcpus, memoryGiB }));

const AWS_SNP_SOURCE =
  "AWS EC2 User Guide 'AMD SEV-SNP for Amazon EC2 instances' (sev-snp.md), as summarised in ../shared/docs/reference/cloud-offerings.md; sizes: AWS instance-type specifications";

export const INSTANCE_FAMILIES: readonly InstanceFamily[] = [
  {
    platform: "aws", family: "m6a", tees: ["snp"], cpu: "AMD EPYC 7R13 (Milan)", source: AWS_SNP_SOURCE,
    regions: ["us-east-2", "eu-west-1"],
    regionsNote: "shared tenancy; Dedicated Hosts with AmdSevSnp=enabled are allowed in any commercial region",
    sizes: sizes([["m6a.large", 2, 8], ["m6a.xlarge", 4, 16], ["m6a.2xlarge", 8, 32], ["m6a.4xlarge", 16, 64], ["m6a.8xlarge", 32, 128]]),
  },
  {
    platform: "aws", family: "c6a", tees: ["snp"], cpu: "AMD EPYC 7R13 (Milan)", source: AWS_SNP_SOURCE,
    regions: ["us-east-2", "eu-west-1"],
    regionsNote: "shared tenancy; Dedicated Hosts with AmdSevSnp=enabled are allowed in any commercial region",
    sizes: sizes([
      ["c6a.large", 2, 4], ["c6a.xlarge", 4, 8], ["c6a.2xlarge", 8, 16], ["c6a.4xlarge", 16, 32],
      ["c6a.8xlarge", 32, 64], ["c6a.12xlarge", 48, 96], ["c6a.16xlarge", 64, 128],
    ]),
  },
  {
    platform: "aws", family: "r6a", tees: ["snp"], cpu: "AMD EPYC 7R13 (Milan)", source: AWS_SNP_SOURCE,
    regions: ["us-east-2", "eu-west-1"],
    regionsNote: "shared tenancy; Dedicated Hosts with AmdSevSnp=enabled are allowed in any commercial region",
    sizes: sizes([["r6a.large", 2, 16], ["r6a.xlarge", 4, 32], ["r6a.2xlarge", 8, 64], ["r6a.4xlarge", 16, 128]]),
  },
  {
    platform: "gcp", family: "n2d-standard", tees: ["snp"], cpu: "AMD Milan (minCpuPlatform 'AMD Milan' required for SEV_SNP)",
    source: "cloud.google.com/compute/docs/general-purpose-machines#n2d_machines; SEV_SNP on N2D/Milan: ../shared/docs/reference/cloud-offerings.md (GCP) and the @pulumi/gcp Instance d.ts",
    regions: null, regionsNote: "zones not verified: check `gcloud compute zones describe ZONE --format='value(availableCpuPlatforms)'` for AMD Milan",
    sizes: sizes([
      ["n2d-standard-2", 2, 8], ["n2d-standard-4", 4, 16], ["n2d-standard-8", 8, 32], ["n2d-standard-16", 16, 64],
      ["n2d-standard-32", 32, 128], ["n2d-standard-48", 48, 192], ["n2d-standard-64", 64, 256], ["n2d-standard-80", 80, 320],
      ["n2d-standard-96", 96, 384], ["n2d-standard-128", 128, 512], ["n2d-standard-224", 224, 896],
    ]),
  },
  {
    platform: "gcp", family: "n2d-highmem", tees: ["snp"], cpu: "AMD Milan (minCpuPlatform 'AMD Milan' required for SEV_SNP)",
    source: "cloud.google.com/compute/docs/general-purpose-machines#n2d_machines",
    regions: null, regionsNote: "zones not verified: check availableCpuPlatforms for AMD Milan",
    sizes: sizes([
      ["n2d-highmem-2", 2, 16], ["n2d-highmem-4", 4, 32], ["n2d-highmem-8", 8, 64], ["n2d-highmem-16", 16, 128],
      ["n2d-highmem-32", 32, 256], ["n2d-highmem-48", 48, 384], ["n2d-highmem-64", 64, 512], ["n2d-highmem-80", 80, 640],
      ["n2d-highmem-96", 96, 768],
    ]),
  },
  {
    platform: "gcp", family: "n2d-highcpu", tees: ["snp"], cpu: "AMD Milan (minCpuPlatform 'AMD Milan' required for SEV_SNP)",
    source: "cloud.google.com/compute/docs/general-purpose-machines#n2d_machines",
    regions: null, regionsNote: "zones not verified: check availableCpuPlatforms for AMD Milan",
    sizes: sizes([
      ["n2d-highcpu-2", 2, 2], ["n2d-highcpu-4", 4, 4], ["n2d-highcpu-8", 8, 8], ["n2d-highcpu-16", 16, 16],
      ["n2d-highcpu-32", 32, 32], ["n2d-highcpu-48", 48, 48], ["n2d-highcpu-64", 64, 64], ["n2d-highcpu-80", 80, 80],
      ["n2d-highcpu-96", 96, 96], ["n2d-highcpu-128", 128, 128], ["n2d-highcpu-224", 224, 224],
    ]),
  },
  {
    platform: "gcp", family: "c3-standard", tees: ["tdx"], cpu: "Intel Sapphire Rapids",
    source: "google/gce-tcb-verifier tdx/mrtd_from_ovmf.go (shapeRAMGib, the shapes GCE endorses for TDX); C3 for TDX: ../shared/docs/reference/cloud-offerings.md",
    regions: null, regionsNote: "zones not verified; public scripts use us-central1-a for C3/TDX",
    sizes: sizes([
      ["c3-standard-4", 4, 16], ["c3-standard-8", 8, 32], ["c3-standard-22", 22, 88], ["c3-standard-44", 44, 176],
      ["c3-standard-88", 88, 352], ["c3-standard-176", 176, 704],
    ]),
  },
  {
    platform: "azure", family: "DCasv5", tees: ["snp"], cpu: "AMD EPYC 7763v (Milan)",
    source: "MicrosoftDocs/azure-docs articles/virtual-machines/dcasv5-dcadsv5-series.md",
    regions: null, regionsNote: "docs say 'specific regions' only: query `az vm list-skus -l <region> --size Standard_DC`",
    sizes: sizes([
      ["Standard_DC2as_v5", 2, 8], ["Standard_DC4as_v5", 4, 16], ["Standard_DC8as_v5", 8, 32], ["Standard_DC16as_v5", 16, 64],
      ["Standard_DC32as_v5", 32, 128], ["Standard_DC48as_v5", 48, 192], ["Standard_DC64as_v5", 64, 256], ["Standard_DC96as_v5", 96, 384],
    ]),
  },
  {
    platform: "azure", family: "DCadsv5", tees: ["snp"], cpu: "AMD EPYC 7763v (Milan)",
    source: "MicrosoftDocs/azure-docs articles/virtual-machines/dcasv5-dcadsv5-series.md",
    regions: null, regionsNote: "query `az vm list-skus -l <region> --size Standard_DC`",
    sizes: sizes([
      ["Standard_DC2ads_v5", 2, 8], ["Standard_DC4ads_v5", 4, 16], ["Standard_DC8ads_v5", 8, 32], ["Standard_DC16ads_v5", 16, 64],
      ["Standard_DC32ads_v5", 32, 128], ["Standard_DC48ads_v5", 48, 192], ["Standard_DC64ads_v5", 64, 256], ["Standard_DC96ads_v5", 96, 384],
    ]),
  },
  {
    platform: "azure", family: "ECasv5", tees: ["snp"], cpu: "AMD EPYC 7763v (Milan)",
    source: "MicrosoftDocs/azure-docs articles/virtual-machines/ecasv5-ecadsv5-series.md",
    regions: null, regionsNote: "query `az vm list-skus -l <region> --size Standard_EC`",
    sizes: sizes([
      ["Standard_EC2as_v5", 2, 16], ["Standard_EC4as_v5", 4, 32], ["Standard_EC8as_v5", 8, 64], ["Standard_EC16as_v5", 16, 128],
      ["Standard_EC20as_v5", 20, 160], ["Standard_EC32as_v5", 32, 256], ["Standard_EC48as_v5", 48, 384], ["Standard_EC64as_v5", 64, 512],
      ["Standard_EC96as_v5", 96, 672],
    ]),
  },
  {
    platform: "azure", family: "DCesv5", tees: ["tdx"], cpu: "Intel Xeon 4th gen (Sapphire Rapids)",
    source: "MicrosoftDocs/azure-docs articles/virtual-machines/dcesv5-dcedsv5-series.md (2023-11-14)",
    regions: null, regionsNote: "query `az vm list-skus -l <region> --size Standard_DC`",
    sizes: sizes([
      ["Standard_DC2es_v5", 2, 8], ["Standard_DC4es_v5", 4, 16], ["Standard_DC8es_v5", 8, 32], ["Standard_DC16es_v5", 16, 64],
      ["Standard_DC32es_v5", 32, 128], ["Standard_DC48es_v5", 48, 192], ["Standard_DC64es_v5", 64, 256], ["Standard_DC96es_v5", 96, 384],
    ]),
  },
  {
    platform: "azure", family: "DCedsv5", tees: ["tdx"], cpu: "Intel Xeon 4th gen (Sapphire Rapids)",
    source: "MicrosoftDocs/azure-docs articles/virtual-machines/dcesv5-dcedsv5-series.md (2023-11-14)",
    regions: null, regionsNote: "query `az vm list-skus -l <region> --size Standard_DC`",
    sizes: sizes([
      ["Standard_DC2eds_v5", 2, 8], ["Standard_DC4eds_v5", 4, 16], ["Standard_DC8eds_v5", 8, 32], ["Standard_DC16eds_v5", 16, 64],
      ["Standard_DC32eds_v5", 32, 128], ["Standard_DC48eds_v5", 48, 192], ["Standard_DC64eds_v5", 64, 256], ["Standard_DC96eds_v5", 96, 384],
    ]),
  },
];
