// An Azure Compute Gallery image of the kit's cloud disk (`buckypaper image build --cloud azure --sign-key … --sign-cert
// …`) that boots it under the customer's Secure Boot keys: the fixed VHD the build writes beside the disk (disk.vhd,
// images/guest/vhd.ts), checked to be exactly the manifest's raw disk + zero padding + a fixed-VHD footer, uploaded as
// a page blob (by the Azure CLI: azure-native's Blob writes no page blobs) to a storage account/container the program names, a gallery image definition (Linux, generalized,
// Hyper-V Gen2, x64, SecurityType ConfidentialVmSupported) and an image version from that blob whose
// securityProfile.uefiSettings holds the customer's PK, KEK and db (X.509) and no Microsoft template — so a confidential
// VM of it (Secure Boot on) starts only a UKI one of the db certificates signed. `bootChain` carries the same manifest,
// disk and db certificates to AzureConfidentialVm (`kitImage`), which predicts and registers the measured-boot policy
// from them. Never run against Azure: the arguments are checked against @pulumi/azure-native's types only.
import { createHash } from "node:crypto";
import { createReadStream, statSync } from "node:fs";
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import * as compute from "@pulumi/azure-native/compute/index.js";
import * as command from "@pulumi/command";
import type { BootChainArgs } from "../common/boot-chain.js";
import { ConfigError } from "../common/errors.js";
import {
  dbSetTag,
  kitDiskManifest,
  readSecureBootKeys,
  type KitImageRef,
  type SecureBootKeys,
  type SecureBootKeysArgs,
} from "../common/kit-image.js";
import type { ImageManifest } from "../../images/guest/manifest.js";
import { checkFixedVhd, VHD_FOOTER_SIZE, VhdError } from "../../images/guest/vhd.js";
import type {} from "../../images/guest/disk.js"; // the manifest's disk.vhd record (declared there)
import type * as inputs from "@pulumi/azure-native/types/input.js";

/** A gallery image definition's identifier (publisher/offer/sku), unique within the gallery. */
export interface AzureGalleryImageIdentifier {
  publisher: string;
  offer: string;
  sku: string;
}

export interface AzureKitImageArgs extends SecureBootKeysArgs {
  /** manifest.json of `buckypaper image build --cloud azure` with a signed disk (`--sign-key/--sign-cert`). */
  manifest: string;
  /** The fixed VHD, when it is not at the manifest's `disk.vhd.path`; it must be exactly the manifest's. */
  vhd?: string;
  /** Resource group of the gallery (and of the image definition and version). */
  resourceGroupName: pulumi.Input<string>;
  location?: pulumi.Input<string>;
  /** An existing Compute Gallery. */
  galleryName: pulumi.Input<string>;
  /** Image definition name (default: the component's name). */
  galleryImageName?: string;
  /** Image definition identifier (default publisher `buckypaper`, offer `kit`, sku: the component's name). */
  identifier?: AzureGalleryImageIdentifier;
  /**
   * Resource id of an existing storage account (`/subscriptions/…/resourceGroups/RG/providers/Microsoft.Storage/
   * storageAccounts/NAME`) the VHD is uploaded to; the image version is created from it.
   */
  storageAccountId: pulumi.Input<string>;
  /** An existing blob container in that account. */
  containerName: pulumi.Input<string>;
  /** Blob name prefix (default `buckypaper/`); the name ends in the VHD's SHA-256. */
  blobPrefix?: string;
  tags?: Record<string, pulumi.Input<string>>;
}

/** The image definition's features: a confidential VM may boot it (Gen2, Secure Boot, vTPM). */
export const KIT_GALLERY_IMAGE_FEATURES = [{ name: "SecurityType", value: "ConfidentialVmSupported" }] as const;

/**
 * The image version's UEFI settings: the customer's PK, KEK and db (X.509, base64 DER) and no signature template
 * (`NoSignatureTemplate`: Microsoft's UEFI CA is not added to db, so only the customer's db verifies a boot loader).
 */
export function azureUefiSettings(keys: SecureBootKeys): inputs.compute.GalleryImageVersionUefiSettingsArgs {
  const x509 = (ders: Buffer[]) => ({ type: "x509", value: ders.map((d) => d.toString("base64")) });
  return {
    signatureTemplateNames: ["NoSignatureTemplate"],
    additionalSignatures: {
      pk: x509([keys.pk.der]),
      kek: [x509(keys.keks.map((c) => c.der))],
      db: [x509(keys.dbs.map((c) => c.der))],
    },
  };
}

/** The image definition's arguments as a pure function (asserted by tests against @pulumi/azure-native's types). */
export function azureKitGalleryImageArgs(i: {
  resourceGroupName: pulumi.Input<string>;
  location?: pulumi.Input<string>;
  galleryName: pulumi.Input<string>;
  galleryImageName: string;
  identifier: AzureGalleryImageIdentifier;
  description: string;
  tags: Record<string, pulumi.Input<string>>;
}): compute.GalleryImageArgs {
  return {
    resourceGroupName: i.resourceGroupName,
    ...(i.location !== undefined ? { location: i.location } : {}),
    galleryName: i.galleryName,
    galleryImageName: i.galleryImageName,
    identifier: i.identifier,
    description: i.description,
    osType: "Linux",
    // The kit's enclaivelet is configured at first boot from customData; nothing is specialized in the disk.
    osState: "Generalized",
    // Azure confidential VMs are Gen2 (UEFI) only.
    hyperVGeneration: "V2",
    architecture: "x64",
    features: KIT_GALLERY_IMAGE_FEATURES.map((f) => ({ ...f })),
    tags: i.tags,
  };
}

/** The image version's arguments as a pure function (asserted by tests against @pulumi/azure-native's types). */
export function azureKitImageVersionArgs(i: {
  resourceGroupName: pulumi.Input<string>;
  location?: pulumi.Input<string>;
  galleryName: pulumi.Input<string>;
  galleryImageName: pulumi.Input<string>;
  galleryImageVersionName: string;
  storageAccountId: pulumi.Input<string>;
  blobUri: pulumi.Input<string>;
  keys: SecureBootKeys;
  tags: Record<string, pulumi.Input<string>>;
}): compute.GalleryImageVersionArgs {
  return {
    resourceGroupName: i.resourceGroupName,
    ...(i.location !== undefined ? { location: i.location } : {}),
    galleryName: i.galleryName,
    galleryImageName: i.galleryImageName,
    galleryImageVersionName: i.galleryImageVersionName,
    storageProfile: { osDiskImage: { source: { storageAccountId: i.storageAccountId, uri: i.blobUri } } },
    securityProfile: { uefiSettings: azureUefiSettings(i.keys) },
    tags: i.tags,
  };
}

/**
 * Image version name (Major.Minor.Patch, each an int32) from the disk's SHA-256 and the db set: a new disk or another
 * set of db certificates is a new version (versions are immutable), the same inputs the same version.
 */
export function kitImageVersionName(diskSha256: string, dbTag: string): string {
  return `${parseInt(diskSha256.slice(0, 7), 16)}.${parseInt(dbTag.slice(0, 7), 16)}.0`;
}

/** Uploads $BK_VHD as the page blob $BK_BLOB (Azure CLI, the operator's sign-in; names from the environment). */
export const azureUploadCommand =
  'az storage blob upload --only-show-errors --auth-mode login --type page --account-name "$BK_ACCOUNT" --container-name "$BK_CONTAINER" --name "$BK_BLOB" --file "$BK_VHD"';
export const azureDeleteCommand =
  'az storage blob delete --only-show-errors --auth-mode login --account-name "$BK_ACCOUNT" --container-name "$BK_CONTAINER" --name "$BK_BLOB"';

const STORAGE_ACCOUNT_ID =
  /^\/subscriptions\/[^/]+\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Storage\/storageAccounts\/([a-z0-9]{3,24})$/i;

/** Resource group and account name from a storage account's resource id. */
export function parseStorageAccountId(who: string, id: string): { resourceGroupName: string; accountName: string } {
  const m = STORAGE_ACCOUNT_ID.exec(id);
  if (!m)
    throw new ConfigError(
      who,
      "storageAccountId",
      `'${id}' is not a storage account resource id (/subscriptions/…/resourceGroups/RG/providers/Microsoft.Storage/storageAccounts/NAME)`,
    );
  return { resourceGroupName: m[1], accountName: m[2] };
}

/** The manifest's checks (kitDiskManifest: azure, signed, db includes the signer) and its fixed VHD record. */
export function azureKitManifest(who: string, manifestPath: string, keys: SecureBootKeys): ImageManifest {
  const m = kitDiskManifest(who, "azure", manifestPath, keys.dbs);
  if (!m.disk!.vhd)
    throw new ConfigError(
      who,
      "manifest",
      "records no fixed VHD (disk.vhd): build it again with `buckypaper image build --cloud azure`",
    );
  return m;
}

/**
 * The fixed VHD, checked before anything is uploaded: its SHA-256 and size the manifest's disk.vhd, and — so the
 * uploaded disk is the one whose boot chain is predicted, not only one the manifest names — its first disk.size
 * bytes hash to the raw disk's SHA-256, the padding to virtualSize is zeros, and the footer is a fixed VHD's of
 * exactly that size.
 */
export async function readKitVhd(who: string, manifestPath: string, m: ImageManifest, vhdPath?: string) {
  const disk = m.disk!;
  const rec = disk.vhd!;
  const field = vhdPath ? "vhd" : "manifest";
  const file = vhdPath ?? path.resolve(path.dirname(manifestPath), rec.path);
  let size: number;
  try {
    size = statSync(file).size;
  } catch (e) {
    throw new ConfigError(who, field, `'${file}' cannot be read (${(e as NodeJS.ErrnoException).code})`);
  }
  if (size !== rec.size || rec.virtualSize + VHD_FOOTER_SIZE !== size || disk.size > rec.virtualSize)
    throw new ConfigError(
      who,
      field,
      `'${file}' is ${size} bytes, the manifest's VHD is ${rec.size} (virtual ${rec.virtualSize}, disk ${disk.size})`,
    );
  const whole = createHash("sha256");
  const raw = createHash("sha256");
  const footer = Buffer.alloc(VHD_FOOTER_SIZE);
  let at = 0;
  let paddingZero = true;
  for await (const c of createReadStream(file, { highWaterMark: 8 << 20 })) {
    const chunk = c as Buffer;
    whole.update(chunk);
    const end = at + chunk.length;
    if (at < disk.size) raw.update(chunk.subarray(0, Math.min(chunk.length, disk.size - at)));
    const padFrom = Math.max(at, disk.size);
    const padTo = Math.min(end, rec.virtualSize);
    if (padFrom < padTo && chunk.subarray(padFrom - at, padTo - at).some((b) => b !== 0)) paddingZero = false;
    if (end > rec.virtualSize) {
      const from = Math.max(at, rec.virtualSize);
      chunk.copy(footer, from - rec.virtualSize, from - at);
    }
    at = end;
  }
  const sha256 = whole.digest("hex");
  if (sha256 !== rec.sha256)
    throw new ConfigError(
      who,
      field,
      `'${file}' has SHA-256 ${sha256}, the manifest's VHD is ${rec.sha256} (a changed or other disk)`,
    );
  const rawSha = raw.digest("hex");
  if (rawSha !== disk.sha256 || !paddingZero)
    throw new ConfigError(
      who,
      field,
      `'${file}' does not hold the manifest's disk (data SHA-256 ${rawSha}, disk ${disk.sha256}${paddingZero ? "" : "; non-zero padding"})`,
    );
  try {
    checkFixedVhd(footer, size);
  } catch (e) {
    if (e instanceof VhdError) throw new ConfigError(who, field, `'${file}': ${e.message}`);
    throw e;
  }
  return { vhdPath: file, sha256, size };
}

export class AzureKitImage extends pulumi.ComponentResource implements KitImageRef {
  /** The gallery image version's resource id: give this component to AzureConfidentialVm as `kitImage`. */
  public readonly imageId: pulumi.Output<string>;
  public readonly imageVersionId: pulumi.Output<string>;
  /** What AzureConfidentialVm predicts the boot chain from: this image's manifest, disk and enrolled db certificates. */
  public readonly bootChain: BootChainArgs;
  /** The cloud the disk was built for (azure). */
  public readonly cloud: string = "azure";
  /** SHA-256 (hex) of the enrolled db certificates (DER): the Secure Boot authorities a workload registers. */
  public readonly dbCertificateSha256s: pulumi.Output<string[]>;
  /** SHA-256 of the raw disk (the manifest's) and of the uploaded VHD. */
  public readonly diskSha256: pulumi.Output<string>;
  public readonly vhdSha256: pulumi.Output<string>;

  constructor(name: string, args: AzureKitImageArgs, opts?: pulumi.ComponentResourceOptions) {
    super("buckypaper:index:AzureKitImage", name, {}, opts);
    const who = `AzureKitImage ${name}`;
    for (const k of ["resourceGroupName", "galleryName", "storageAccountId", "containerName"] as const)
      if (args[k] === undefined || args[k] === "") throw new ConfigError(who, k, "is required");
    if (typeof args.storageAccountId === "string") parseStorageAccountId(who, args.storageAccountId);
    const keys = readSecureBootKeys(who, args);
    const m = azureKitManifest(who, args.manifest, keys);
    const disk = m.disk!;
    const vhd = disk.vhd!;
    // The VHD is checked against the manifest before anything is uploaded (a rejected promise fails the update).
    const checked = pulumi.output(readKitVhd(who, args.manifest, m, args.vhd));
    const account = pulumi.output(args.storageAccountId).apply((id) => parseStorageAccountId(who, id));
    const tags = { "buckypaper-disk-sha256": disk.sha256, ...args.tags };
    const blobName = `${args.blobPrefix ?? "buckypaper/"}${name}-${vhd.sha256}.vhd`;
    const env = {
      BK_ACCOUNT: account.accountName,
      BK_CONTAINER: pulumi.output(args.containerName),
      BK_BLOB: blobName,
      BK_VHD: checked.apply((d) => d.vhdPath),
    };
    // Azure makes images only from page blobs, and @pulumi/azure-native's storage.Blob writes block or append blobs
    // only: the Azure CLI uploads it (`--type page`; a fixed VHD is a multiple of 512 bytes, as page blobs need),
    // signed in as the operator (`--auth-mode login`: no account key passes through Pulumi state). Names come in
    // through the environment, never into the shell text. A new VHD is a new blob name, so a new upload.
    const upload = new command.local.Command(
      `${name}-vhd`,
      {
        create: azureUploadCommand,
        delete: azureDeleteCommand,
        environment: env,
        triggers: [vhd.sha256, env.BK_ACCOUNT, env.BK_CONTAINER, blobName],
      },
      { parent: this },
    );
    const blobUri = pulumi.interpolate`https://${account.accountName}.blob.core.windows.net/${args.containerName}/${blobName}`;
    const description = `buckypaper kit disk ${disk.sha256}, UKI signed by ${disk.signature!.subject}`;
    const definition = new compute.GalleryImage(
      `${name}-definition`,
      azureKitGalleryImageArgs({
        resourceGroupName: args.resourceGroupName,
        location: args.location,
        galleryName: args.galleryName,
        galleryImageName: args.galleryImageName ?? name,
        identifier: args.identifier ?? { publisher: "buckypaper", offer: "kit", sku: name },
        description,
        tags: args.tags ?? {},
      }),
      { parent: this },
    );
    const version = new compute.GalleryImageVersion(
      `${name}-version`,
      azureKitImageVersionArgs({
        resourceGroupName: args.resourceGroupName,
        location: args.location,
        galleryName: args.galleryName,
        galleryImageName: definition.name,
        galleryImageVersionName: kitImageVersionName(disk.sha256, dbSetTag(keys.dbs)),
        storageAccountId: args.storageAccountId,
        blobUri,
        keys,
        tags,
      }),
      { parent: this, dependsOn: [upload] },
    );
    this.imageVersionId = version.id;
    this.imageId = version.id;
    this.bootChain = {
      manifest: args.manifest,
      dbCertificates: keys.dbs.map((c) => c.file),
    };
    this.dbCertificateSha256s = pulumi.output(keys.dbs.map((c) => c.sha256));
    this.diskSha256 = pulumi.output(disk.sha256);
    this.vhdSha256 = pulumi.output(vhd.sha256);
    this.registerOutputs({
      imageVersionId: this.imageVersionId,
      dbCertificateSha256s: this.dbCertificateSha256s,
      diskSha256: this.diskSha256,
      vhdSha256: this.vhdSha256,
    });
  }
}
