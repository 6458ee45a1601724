// AzureKitImage (mocked engine: only the cloud APIs are mocked; the gallery arguments are built by pure functions typed
// by @pulumi/azure-native). The disk is a real GPT disk with a FAT32 ESP holding a real UKI signed by osslsigncode
// under the customer's db key (test/support/runtime-disk.ts), written again as the fixed VHD `image build --cloud
// azure` writes (images/guest/vhd.ts writeFixedVhd). Checked: the page-blob upload (Azure CLI, names through the
// environment), the gallery image definition (Linux, generalized, V2, SecurityType ConfidentialVmSupported) and the
// image version from that blob whose uefiSettings hold exactly the customer's PK, KEK and db (another db certificate →
// another db and another version); the VHD check (another disk, non-zero padding, a broken footer, a changed file);
// AzureConfidentialVm given the image boots its version id and registers the authority of the very certificate the
// image enrolls. Hostile/preview: a disk built for another cloud, an unsigned disk, db certificates without the UKI's
// signer, a private key as a certificate, a manifest without a VHD, a malformed storage account id, a VM bootChain
// whose db certificates differ from the image's, image beside kitImage. Nothing here ran against Azure.
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { installMocks, resolve, unsecret, type MockHarness } from "../support/pulumi-mocks.js";
import { dbKeyPair, haveDiskTools, writeRuntimeDisk, type RuntimeDisk } from "../support/runtime-disk.js";
import { writeFixedVhd } from "../../images/guest/vhd.js";
import type { DbKeyPair } from "../support/db-key.js";

let h: MockHarness;
let az: typeof import("../../components/azure/kit-image.js");
let azVm: typeof import("../../components/azure/confidential-vm.js");
const ready = haveDiskTools();

const vhsm = { url: "https://10.0.0.2:8200", caFingerprint: "cd".repeat(32), token: pulumi.secret("s.admin") };
const ACCOUNT_ID = "/subscriptions/0000/resourceGroups/bk-store/providers/Microsoft.Storage/storageAccounts/bkimages";
const dir = mkdtempSync(path.join(tmpdir(), "bk-azure-kit-image-"));
const der = (pem: string) => spawnSync("openssl", ["x509", "-in", pem, "-outform", "DER"]).stdout as Buffer;
const b64 = (pem: string) => der(pem).toString("base64");
const byName = (name: string) => {
  const r = h.resources.find((x) => x.name === name);
  if (!r) throw new Error(`no resource ${name}: ${h.resources.map((x) => x.name).join(", ")}`);
  return r;
};
let pk: DbKeyPair, kek: DbKeyPair, db: DbKeyPair, other: DbKeyPair;
let azDisk: RuntimeDisk, ec2Disk: RuntimeDisk, unsignedDisk: RuntimeDisk, noVhd: RuntimeDisk;

/** Adds disk.vhd as `image build --cloud azure` records it (images/guest/disk.ts). */
async function withVhd(d: RuntimeDisk): Promise<RuntimeDisk> {
  const m = JSON.parse(readFileSync(d.manifest, "utf8"));
  const v = await writeFixedVhd(
    path.join(d.dir, "disk.raw"),
    m.disk.sha256,
    path.join(d.dir, "disk.vhd"),
    1_700_000_000,
  );
  m.disk.vhd = { path: "disk.vhd", ...v };
  writeFileSync(d.manifest, JSON.stringify(m, null, 2));
  return d;
}

beforeAll(async () => {
  h = await installMocks({
    "azure-native:compute:VirtualMachine": () => ({ vmId: "vm-guid" }),
    "azure-native:network:NetworkInterface": () => ({ ipConfigurations: [{ privateIPAddress: "10.1.0.4" }] }),
    "azure-native:compute:GalleryImage": (i) => ({ name: i.galleryImageName }),
  });
  az = await import("../../components/azure/kit-image.js");
  azVm = await import("../../components/azure/confidential-vm.js");
  if (!ready) return;
  pk = dbKeyPair(dir, "customer pk");
  kek = dbKeyPair(dir, "customer kek");
  db = dbKeyPair(dir, "customer db");
  other = dbKeyPair(dir, "other db");
  azDisk = await withVhd(writeRuntimeDisk({ role: "workload", userDataSource: "azure", sign: db }));
  ec2Disk = await withVhd(writeRuntimeDisk({ role: "workload", userDataSource: "ec2", sign: db }));
  unsignedDisk = await withVhd(writeRuntimeDisk({ role: "workload", userDataSource: "azure" }));
  noVhd = writeRuntimeDisk({ role: "workload", userDataSource: "azure", sign: db });
}, 120_000);

const base = () => ({
  manifest: azDisk.manifest,
  resourceGroupName: "bk-rg",
  location: "westeurope",
  galleryName: "bkgallery",
  storageAccountId: ACCOUNT_ID,
  containerName: "vhds",
  pkCertificate: pk.cert,
  kekCertificates: [kek.cert],
  dbCertificates: [db.cert],
});

describe.runIf(ready)("AzureKitImage: the kit's fixed VHD as a gallery image version under the customer's keys", () => {
  it("uploads the VHD as a page blob and creates the definition and the version with the customer's PK, KEK and db", async () => {
    const img = new az.AzureKitImage("kit", base());
    expect(await resolve(img.imageId)).toBe("kit-version-id");
    const m = JSON.parse(readFileSync(azDisk.manifest, "utf8"));
    const blobName = `buckypaper/kit-${m.disk.vhd.sha256}.vhd`;

    const up = byName("kit-vhd");
    expect(up.type).toBe("command:local:Command");
    expect(up.inputs.create).toBe(az.azureUploadCommand);
    expect(up.inputs.create).toMatch(/--type page/);
    expect(up.inputs.create).toMatch(/--auth-mode login/);
    expect(up.inputs.environment).toEqual({
      BK_ACCOUNT: "bkimages",
      BK_CONTAINER: "vhds",
      BK_BLOB: blobName,
      BK_VHD: path.join(azDisk.dir, "disk.vhd"),
    });

    const def = byName("kit-definition");
    expect(def.type).toBe("azure-native:compute:GalleryImage");
    expect(def.inputs).toMatchObject({
      resourceGroupName: "bk-rg",
      galleryName: "bkgallery",
      galleryImageName: "kit",
      osType: "Linux",
      osState: "Generalized",
      hyperVGeneration: "V2",
      architecture: "x64",
      identifier: { publisher: "buckypaper", offer: "kit", sku: "kit" },
      features: [{ name: "SecurityType", value: "ConfidentialVmSupported" }],
    });

    const ver = byName("kit-version");
    expect(ver.type).toBe("azure-native:compute:GalleryImageVersion");
    expect(ver.inputs.galleryImageName).toBe("kit");
    expect(ver.inputs.galleryImageVersionName).toMatch(/^\d+\.\d+\.0$/);
    expect(ver.inputs.storageProfile).toEqual({
      osDiskImage: {
        source: { storageAccountId: ACCOUNT_ID, uri: `https://bkimages.blob.core.windows.net/vhds/${blobName}` },
      },
    });
    // The enrolled keys are exactly the customer's certificates (DER, base64), no Microsoft template.
    expect(ver.inputs.securityProfile).toEqual({
      uefiSettings: {
        signatureTemplateNames: ["NoSignatureTemplate"],
        additionalSignatures: {
          pk: { type: "x509", value: [b64(pk.cert)] },
          kek: [{ type: "x509", value: [b64(kek.cert)] }],
          db: [{ type: "x509", value: [b64(db.cert)] }],
        },
      },
    });
    expect(await resolve(img.dbCertificateSha256s)).toEqual([db.sha256]);
    expect(await resolve(img.diskSha256)).toBe(m.disk.sha256);
    expect(img.bootChain).toEqual({ manifest: azDisk.manifest, dbCertificates: [db.cert] });
    // Only certificates went in: no key material in any recorded input.
    const all = JSON.stringify(h.resources.filter((r) => r.name.startsWith("kit-")).map((r) => r.inputs));
    expect(all).not.toMatch(/PRIVATE KEY/);
    for (const k of [pk, kek, db]) expect(all).not.toContain(readFileSync(k.key, "utf8").split("\n")[1]);
  });

  it("another db certificate set is another db and another version; the same inputs the same version", () => {
    const keys = (dbCert: string) => ({
      pk: { field: "pk", file: pk.cert, der: der(pk.cert), sha256: pk.sha256 },
      keks: [{ field: "kek", file: pk.cert, der: der(pk.cert), sha256: pk.sha256 }],
      dbs: [{ field: "db", file: dbCert, der: der(dbCert), sha256: "" }],
    });
    const a = az.azureUefiSettings(keys(db.cert));
    const b = az.azureUefiSettings(keys(other.cert));
    expect(a.additionalSignatures).not.toEqual(b.additionalSignatures);
    expect((b.additionalSignatures as { db: unknown }).db).toEqual([{ type: "x509", value: [b64(other.cert)] }]);
    const sha = "ab".repeat(32);
    expect(az.kitImageVersionName(sha, "12345678")).toBe(az.kitImageVersionName(sha, "12345678"));
    expect(az.kitImageVersionName(sha, "12345678")).not.toBe(az.kitImageVersionName(sha, "87654321"));
    for (const part of az.kitImageVersionName("f".repeat(64), "ffffffff").split("."))
      expect(Number(part)).toBeLessThan(2 ** 31);
  });

  it("refuses at preview: another cloud, unsigned, db set without the signer, a key, no VHD, a bad account id", () => {
    const b = base();
    expect(() => new az.AzureKitImage("ec2", { ...b, manifest: ec2Disk.manifest })).toThrow(
      /AzureKitImage ec2: manifest is a disk built for 'ec2'; .*--cloud azure.*; allowed: azure$/,
    );
    expect(() => new az.AzureKitImage("uns", { ...b, manifest: unsignedDisk.manifest })).toThrow(
      /AzureKitImage uns: dbCertificates cannot verify this disk's UKI: it is unsigned/,
    );
    expect(() => new az.AzureKitImage("oth", { ...b, dbCertificates: [other.cert] })).toThrow(
      /AzureKitImage oth: dbCertificates do not include the certificate the disk's UKI is signed with \(.*customer db.*\)/,
    );
    expect(() => new az.AzureKitImage("key", { ...b, dbCertificates: [db.key] })).toThrow(
      /AzureKitImage key: dbCertificates\[0\] .* holds a private key; give the certificate only/,
    );
    const both = path.join(dir, "both.pem");
    writeFileSync(both, readFileSync(kek.cert, "utf8") + readFileSync(kek.key, "utf8"));
    expect(() => new az.AzureKitImage("key2", { ...b, kekCertificates: [both] })).toThrow(
      /AzureKitImage key2: kekCertificates\[0\] .* holds a private key/,
    );
    expect(() => new az.AzureKitImage("novhd", { ...b, manifest: noVhd.manifest })).toThrow(
      /AzureKitImage novhd: manifest records no fixed VHD \(disk\.vhd\)/,
    );
    expect(() => new az.AzureKitImage("acct", { ...b, storageAccountId: "bkimages" })).toThrow(
      /AzureKitImage acct: storageAccountId 'bkimages' is not a storage account resource id/,
    );
    expect(() => new az.AzureKitImage("nog", { ...b, galleryName: "" })).toThrow(
      /AzureKitImage nog: galleryName is required/,
    );
  });

  it("a VHD that is not exactly the manifest's disk is refused before upload", async () => {
    const m = JSON.parse(readFileSync(azDisk.manifest, "utf8"));
    await expect(az.readKitVhd("t", azDisk.manifest, m)).resolves.toMatchObject({ sha256: m.disk.vhd.sha256 });
    const vhd = readFileSync(path.join(azDisk.dir, "disk.vhd"));
    const variant = async (name: string, mutate: (b: Buffer) => void, recordSha: boolean) => {
      const b = Buffer.from(vhd);
      mutate(b);
      const file = path.join(dir, name);
      writeFileSync(file, b);
      const sha = (await import("node:crypto")).createHash("sha256").update(b).digest("hex");
      // recordSha: a manifest that names this file's digest, so the deeper checks are what refuse it.
      const mm = recordSha ? { ...m, disk: { ...m.disk, vhd: { ...m.disk.vhd, sha256: sha } } } : m;
      return az.readKitVhd("t", azDisk.manifest, mm, file);
    };
    await expect(variant("changed.vhd", (b) => (b[4096] ^= 1), false)).rejects.toThrow(
      /t: vhd '.*changed\.vhd' has SHA-256 [0-9a-f]{64}, the manifest's VHD is/,
    );
    await expect(variant("otherdisk.vhd", (b) => (b[4096] ^= 1), true)).rejects.toThrow(
      /t: vhd '.*otherdisk\.vhd' does not hold the manifest's disk \(data SHA-256 [0-9a-f]{64}, disk/,
    );
    // Padding: a raw disk that is not a whole MiB (the kit's is), its VHD's zero padding changed in one byte.
    const crypto = await import("node:crypto");
    const odd = path.join(dir, "odd.raw");
    const oddBytes = readFileSync(path.join(azDisk.dir, "disk.raw")).subarray(0, m.disk.size - 4096);
    writeFileSync(odd, oddBytes);
    const oddSha = crypto.createHash("sha256").update(oddBytes).digest("hex");
    const oddVhd = path.join(dir, "odd.vhd");
    const ov = await writeFixedVhd(odd, oddSha, oddVhd, 1_700_000_000);
    const om = { ...m, disk: { ...m.disk, size: oddBytes.length, sha256: oddSha, vhd: { ...m.disk.vhd, ...ov } } };
    await expect(az.readKitVhd("t", azDisk.manifest, om, oddVhd)).resolves.toMatchObject({ sha256: ov.sha256 });
    const padded = readFileSync(oddVhd);
    padded[oddBytes.length + 10] = 1;
    writeFileSync(oddVhd, padded);
    const pm = {
      ...om,
      disk: { ...om.disk, vhd: { ...om.disk.vhd, sha256: crypto.createHash("sha256").update(padded).digest("hex") } },
    };
    await expect(az.readKitVhd("t", azDisk.manifest, pm, oddVhd)).rejects.toThrow(/non-zero padding/);
    await expect(variant("footer.vhd", (b) => (b[b.length - 512 + 60 + 3] = 3), true)).rejects.toThrow(
      /t: vhd '.*footer\.vhd': VHD footer/,
    );
    const short = path.join(dir, "short.vhd");
    copyFileSync(path.join(azDisk.dir, "disk.vhd"), short);
    writeFileSync(short, vhd.subarray(0, vhd.length - 512));
    await expect(az.readKitVhd("t", azDisk.manifest, m, short)).rejects.toThrow(/is \d+ bytes, the manifest's VHD is/);
  });

  it("AzureConfidentialVm with kitImage boots its version and registers the authority of the enrolled db certificate", async () => {
    const img = new az.AzureKitImage("kit2", base());
    const vm = new azVm.AzureConfidentialVm("kvm", { vhsm, resourceGroupName: "rg", subnetId: "s", kitImage: img });
    await resolve(vm.vmId);
    const inst = h.resources.find((r) => r.name === "kvm" && r.type === "azure-native:compute:VirtualMachine")!.inputs;
    expect(inst.storageProfile.imageReference).toEqual({ id: "kit2-version-id" });
    expect(inst.securityProfile.securityType).toBe("ConfidentialVM");
    const wl = unsecret(byName("kvm-workload").inputs);
    expect(wl.policy.azure.measuredBoot.secureBoot).toEqual({ enabled: true, authorities: [db.sha256] });
    expect(wl.policy.azure.measuredBoot.bootApplications.required).toEqual([
      JSON.parse(readFileSync(azDisk.manifest, "utf8")).disk.uki.authenticode.sha256,
    ]);
    expect(await resolve(vm.attestationChain)).toContain(db.sha256);
  });

  it("refuses a VM whose bootChain db certificates differ from the image's, image beside kitImage, another cloud's image", () => {
    const img = new az.AzureKitImage("kit3", base());
    const vm = { vhsm, resourceGroupName: "rg", subnetId: "s", kitImage: img };
    expect(
      () =>
        new azVm.AzureConfidentialVm("mism", {
          ...vm,
          bootChain: { manifest: azDisk.manifest, dbCertificates: [other.cert] },
        }),
    ).toThrow(
      new RegExp(
        `AzureConfidentialVm mism: bootChain\\.dbCertificates \\(${other.sha256}\\) differ from the db certificates kitImage enrolls \\(${db.sha256}\\)`,
      ),
    );
    expect(
      () =>
        new azVm.AzureConfidentialVm("both", {
          ...vm,
          image: { publisher: "p", offer: "o", sku: "s", version: "1.0.0" },
        }),
    ).toThrow(/both: image and kitImage are exclusive/);
    expect(
      () =>
        new azVm.AzureConfidentialVm("aws", {
          ...vm,
          kitImage: { imageId: "ami-1", cloud: "ec2", bootChain: { manifest: ec2Disk.manifest } },
        }),
    ).toThrow(/AzureConfidentialVm aws: kitImage is an image of a disk built for 'ec2'; allowed: azure/);
    expect(
      () =>
        new azVm.AzureConfidentialVm("same", {
          ...vm,
          bootChain: { manifest: azDisk.manifest, dbCertificates: [db.cert] },
        }),
    ).not.toThrow();
  });
});
