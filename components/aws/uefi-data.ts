// The AMI's `uefiData` (EC2 RegisterImage --uefi-data): the UEFI variable store an instance of the AMI starts with,
// here the customer's PK, KEK and db with Secure Boot on. Written by virt-firmware's `virt-fw-vars --output-aws`
// (PyPI virt-firmware; the format is AWS's python-uefivars "v0" store: base64 of magic, CRC32C, zlib stream with
// AWS's preset dictionary). It is deterministic — the authenticated variables' timestamps are the certificates'
// notBefore, not the clock — so the AMI's inputs change only when a certificate does. The blob is read back with
// `virt-fw-vars -i` and its PK, KEK and db must be exactly the given certificates, each as one EFI_SIGNATURE_LIST
// with the kit's owner GUID: the tool's output is checked, not trusted.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { x509SignatureList } from "../../images/vtpm/index.js";
import type { SecureBootKeys } from "../common/kit-image.js";
import { ConfigError } from "../common/errors.js";

/** SignatureOwner of the entries the kit enrolls (EFI_SIGNATURE_DATA; measured into PCR 7 with the variables). */
export const KIT_SIGNATURE_OWNER = "66c7c52e-3850-4c93-a189-677e199214db";

const VIRT_FW_VARS = "virt-fw-vars";

interface JsonVar {
  name: string;
  guid: string;
  data: string;
}

/** The expected data of PK/KEK/db: one X.509 signature list per certificate, in the given order. */
export function expectedSignatureDb(
  keys: SecureBootKeys,
  owner = KIT_SIGNATURE_OWNER,
): Record<"PK" | "KEK" | "db", Buffer> {
  const lists = (cs: { der: Buffer }[]) => Buffer.concat(cs.map((c) => x509SignatureList(c.der, owner)));
  return { PK: lists([keys.pk]), KEK: lists(keys.keks), db: lists(keys.dbs) };
}

function run(who: string, args: string[]): void {
  const r = spawnSync(VIRT_FW_VARS, ["-l", "warning", ...args], { encoding: "utf8" });
  if (r.error)
    throw new ConfigError(
      who,
      "pkCertificate",
      `cannot be enrolled: ${VIRT_FW_VARS} did not run (${(r.error as NodeJS.ErrnoException).code ?? r.error.message}); install PyPI virt-firmware (\`pip install virt-firmware\`), which writes the AMI's uefiData`,
    );
  if (r.status !== 0)
    throw new ConfigError(who, "pkCertificate", `cannot be enrolled: virt-fw-vars failed: ${r.stderr.trim()}`);
}

/** The variables of an AWS uefiData blob as virt-fw-vars reads them (name → data). */
export function readAwsUefiData(who: string, blob: string): Map<string, JsonVar> {
  const dir = mkdtempSync(path.join(tmpdir(), "bk-uefi-"));
  try {
    writeFileSync(path.join(dir, "in.aws"), blob);
    run(who, ["-i", path.join(dir, "in.aws"), "--output-json", path.join(dir, "out.json")]);
    const vars = (JSON.parse(readFileSync(path.join(dir, "out.json"), "utf8")) as { variables: JsonVar[] }).variables;
    return new Map(vars.map((v) => [v.name, v]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** uefiData with the customer's PK, KEK and db enrolled and Secure Boot on (deployed mode), checked by reading it back. */
export function awsUefiData(who: string, keys: SecureBootKeys): string {
  const dir = mkdtempSync(path.join(tmpdir(), "bk-uefi-"));
  let blob: string;
  try {
    const file = (name: string, der: Buffer) => {
      const p = path.join(dir, name);
      writeFileSync(p, der);
      return p;
    };
    const args = ["--set-pk", KIT_SIGNATURE_OWNER, file("pk.der", keys.pk.der)];
    keys.keks.forEach((c, i) => args.push("--add-kek", KIT_SIGNATURE_OWNER, file(`kek${i}.der`, c.der)));
    keys.dbs.forEach((c, i) => args.push("--add-db", KIT_SIGNATURE_OWNER, file(`db${i}.der`, c.der)));
    // --secure-boot: SecureBootEnable on, CustomMode off, and a placeholder dbx (the firmware needs the variable).
    run(who, [...args, "--secure-boot", "--output-aws", path.join(dir, "vars.aws")]);
    blob = readFileSync(path.join(dir, "vars.aws"), "utf8").trim();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const vars = readAwsUefiData(who, blob);
  const want = expectedSignatureDb(keys);
  for (const name of ["PK", "KEK", "db"] as const) {
    const got = vars.get(name);
    if (!got || !Buffer.from(got.data, "hex").equals(want[name]))
      throw new ConfigError(
        who,
        "pkCertificate",
        `cannot be enrolled: virt-fw-vars wrote a ${name} that is not the given certificates`,
      );
  }
  if (vars.get("SecureBootEnable")?.data !== "01")
    throw new ConfigError(who, "pkCertificate", "cannot be enrolled: virt-fw-vars did not turn Secure Boot on");
  return blob;
}
