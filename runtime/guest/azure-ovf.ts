// Azure user-data as cloud-init executes it: the base64 CustomData of the OVF environment (ovf-env.xml).
//
// Which bytes, and read from where. The components hand Azure the user-data as osProfile.customData. cloud-init
// 22.4's Azure datasource (DataSourceAzure.crawl_metadata) runs in cloud-init-local.service: it reads ovf-env.xml
// from the first source that has one (its seed dir, the provisioning ISO /dev/sr0 or another iso9660/udf device,
// then its cache dir), takes CustomData from it and uses IMDS `userData` ONLY when the OVF has no CustomData; it then
// reports ready to the fabric, which EJECTS the provisioning ISO, and writes the OVF it used (re-serialised by
// ElementTree after redacting any password) to its data dir, /var/lib/waagent/ovf-env.xml. The later stages
// (cloud-init.service, -config, -final: the ones that run user code) restore that datasource from cache and run its
// user-data without fetching again. The enclaivelet runs after cloud-init-local and before those stages
// (boot-unit.ts), so it reads that copy:
//   - it is what cloud-init will run: written by cloud-init itself, from the same parse that gave it the user-data,
//     whichever source won (a seeded or reprovisioned OVF included);
//   - nobody outside the guest can change it in between: the kit image keeps all writable state in a tmpfs in
//     encrypted guest memory;
//   - reading the ISO or IMDS again instead would measure a second answer of a host-controlled source, which the
//     host may make differ from the first one that cloud-init executes (and the ISO is gone by then anyway).
// No CustomData (cloud-init would fall back to IMDS userData, which the kit never sets) is refused, as is anything
// this strict reader of ElementTree's output does not understand: refusing stops the guest (cloud-init's user
// stages require the agent), so a parser difference can only deny service, never let other bytes run.
//
// XML: ElementTree serialises elements, attributes, text and character references only (no comments, CDATA,
// DOCTYPE or processing instructions survive its parse). This reader accepts exactly that subset with namespaces,
// and refuses everything else, rather than using a general XML library whose tolerance (entities, CDATA, recovery)
// a security-relevant reader should not have. It reproduces cloud-init's lookup: the root's child
// {windowsazure}ProvisioningSection (exactly one), its child LinuxProvisioningConfigurationSet (exactly one), its
// child CustomData (at most one), whose text, with whitespace removed, is base64 (Python's non-strict b64decode;
// here only canonical base64 is accepted, on which both decoders agree).

export const AZURE_OVF_PATH = "/var/lib/waagent/ovf-env.xml";
const WA = "http://schemas.microsoft.com/windowsazure";
const XMLNS = "http://www.w3.org/2000/xmlns/";

export class AzureOvfError extends Error {
  override name = "AzureOvfError";
}

interface XmlElement {
  ns: string | undefined;
  local: string;
  children: XmlElement[];
  /** Text before the first child element (ElementTree's .text), entity references decoded. */
  text: string;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_.-]*(?::[A-Za-z_][A-Za-z0-9_.-]*)?$/;

function decodeText(raw: string, where: string): string {
  return raw.replace(/&([^;]*);?/g, (m, ref: string) => {
    if (!m.endsWith(";")) throw new AzureOvfError(`${where}: '&' without a reference`);
    switch (ref) {
      case "amp":
        return "&";
      case "lt":
        return "<";
      case "gt":
        return ">";
      case "quot":
        return '"';
      case "apos":
        return "'";
    }
    const n = /^#[0-9]{1,7}$/.test(ref)
      ? Number(ref.slice(1))
      : /^#x[0-9A-Fa-f]{1,6}$/.test(ref)
        ? parseInt(ref.slice(2), 16)
        : undefined;
    if (n === undefined || n > 0x10ffff || (n >= 0xd800 && n <= 0xdfff))
      throw new AzureOvfError(`${where}: entity reference &${ref}; is not one ElementTree writes`);
    return String.fromCodePoint(n);
  });
}

/** Parses the ElementTree subset of XML into elements with resolved namespaces. */
export function parseEtXml(doc: string): XmlElement {
  let p = 0;
  const s = doc.replace(/^\uFEFF/, "");
  const ws = () => {
    while (p < s.length && /[ \t\r\n]/.test(s[p])) p++;
  };
  // An XML declaration, and only there (ElementTree writes one for other encodings).
  if (s.startsWith("<?xml")) {
    const end = s.indexOf("?>");
    if (
      end < 0 ||
      !/^<\?xml\s+version=(['"])1\.0\1(\s+encoding=(['"])[A-Za-z0-9._-]+\3)?\s*\?>$/.test(s.slice(0, end + 2))
    )
      throw new AzureOvfError("malformed XML declaration");
    p = end + 2;
  }
  ws();
  type Open = { el: XmlElement; qname: string; scope: Map<string, string>; sawChild: boolean };
  const stack: Open[] = [];
  let root: XmlElement | undefined;
  while (p < s.length) {
    if (s[p] !== "<") {
      const end = s.indexOf("<", p);
      const raw = s.slice(p, end < 0 ? s.length : end);
      const top = stack.at(-1);
      if (!top) {
        if (raw.trim() !== "") throw new AzureOvfError("text outside the root element");
      } else if (!top.sawChild) top.el.text += decodeText(raw, top.qname);
      else decodeText(raw, top.qname); // tail text: checked, not used (cloud-init reads .text only)
      p = end < 0 ? s.length : end;
      continue;
    }
    if (s.startsWith("<!", p) || s.startsWith("<?", p))
      throw new AzureOvfError(`comments, CDATA, DOCTYPE and processing instructions are refused (at byte ${p})`);
    if (s.startsWith("</", p)) {
      const end = s.indexOf(">", p);
      if (end < 0) throw new AzureOvfError("unterminated end tag");
      const qname = s.slice(p + 2, end).trim();
      const top = stack.pop();
      if (!top || top.qname !== qname) throw new AzureOvfError(`end tag </${qname}> does not close the open element`);
      p = end + 1;
      if (stack.length === 0) {
        ws();
        if (p !== s.length) throw new AzureOvfError("content after the root element");
      }
      continue;
    }
    // A start tag: name, attributes (double or single quoted), then '>' or '/>'.
    p++;
    const nameMatch = /^[^\s/>]+/.exec(s.slice(p));
    if (!nameMatch || !NAME.test(nameMatch[0])) throw new AzureOvfError(`bad element name at byte ${p}`);
    const qname = nameMatch[0];
    p += qname.length;
    const attrs = new Map<string, string>();
    for (;;) {
      const before = p;
      ws();
      if (s.startsWith("/>", p) || s[p] === ">") break;
      if (p === before) throw new AzureOvfError(`<${qname}>: attributes must be separated by whitespace`);
      const a = /^([^\s=/>]+)\s*=\s*("([^"<]*)"|'([^'<]*)')/.exec(s.slice(p));
      if (!a || !NAME.test(a[1])) throw new AzureOvfError(`<${qname}>: malformed attribute at byte ${p}`);
      if (attrs.has(a[1])) throw new AzureOvfError(`<${qname}>: duplicate attribute ${a[1]}`);
      attrs.set(a[1], decodeText(a[3] ?? a[4], `<${qname}> ${a[1]}`));
      p += a[0].length;
    }
    const selfClosing = s.startsWith("/>", p);
    p += selfClosing ? 2 : 1;
    const parent = stack.at(-1);
    const scope = new Map(parent?.scope ?? []);
    for (const [k, v] of attrs) {
      if (k === "xmlns") scope.set("", v);
      else if (k.startsWith("xmlns:")) {
        if (v === "") throw new AzureOvfError(`<${qname}>: empty namespace for ${k}`);
        scope.set(k.slice(6), v);
      }
    }
    for (const k of attrs.keys()) {
      const prefix = k.includes(":") ? k.split(":")[0] : undefined;
      if (prefix && prefix !== "xmlns" && prefix !== "xml" && !scope.has(prefix))
        throw new AzureOvfError(`<${qname}>: attribute prefix '${prefix}' is not declared`);
    }
    const [prefix, local] = qname.includes(":") ? qname.split(":") : ["", qname];
    if (prefix !== "" && !scope.has(prefix)) throw new AzureOvfError(`<${qname}>: prefix '${prefix}' is not declared`);
    const ns = scope.get(prefix) || undefined;
    if (ns === XMLNS) throw new AzureOvfError(`<${qname}>: element in the xmlns namespace`);
    const el: XmlElement = { ns, local, children: [], text: "" };
    if (parent) {
      parent.el.children.push(el);
      parent.sawChild = true;
    } else if (root) throw new AzureOvfError("more than one root element");
    else root = el;
    if (!selfClosing) stack.push({ el, qname, scope, sawChild: false });
    else if (!parent) {
      ws();
      if (p !== s.length) throw new AzureOvfError("content after the root element");
    }
  }
  if (stack.length) throw new AzureOvfError(`unclosed element <${stack.at(-1)!.qname}>`);
  if (!root) throw new AzureOvfError("no root element");
  return root;
}

/** ElementTree's findall("./wa:NAME"): the direct children in the windowsazure namespace with that local name. */
const waChildren = (el: XmlElement, local: string) => el.children.filter((c) => c.ns === WA && c.local === local);

function exactlyOne(el: XmlElement, local: string): XmlElement {
  const m = waChildren(el, local);
  if (m.length !== 1) throw new AzureOvfError(`${m.length} ${local} elements where cloud-init needs exactly one`);
  return m[0];
}

/** Python's str.split() whitespace that base64 text may carry between lines. */
const ASCII_WS = /[ \t\n\r\f\v]/g;

/**
 * The user-data cloud-init executes, from the OVF environment cloud-init wrote: the decoded CustomData bytes.
 * Throws AzureOvfError when there is none or the document is anything but what ElementTree writes.
 */
export function azureCustomData(ovfXml: string | Buffer): Buffer {
  const text = typeof ovfXml === "string" ? ovfXml : ovfXml.toString("utf8");
  if (typeof ovfXml !== "string" && !Buffer.from(text, "utf8").equals(ovfXml))
    throw new AzureOvfError("ovf-env.xml is not valid UTF-8");
  const root = parseEtXml(text);
  const section = exactlyOne(root, "ProvisioningSection");
  const set = exactlyOne(section, "LinuxProvisioningConfigurationSet");
  const custom = waChildren(set, "CustomData");
  if (custom.length > 1) throw new AzureOvfError(`${custom.length} CustomData elements (cloud-init refuses them too)`);
  if (custom.length === 0 || custom[0].text.trim() === "")
    throw new AzureOvfError(
      "the OVF has no CustomData: cloud-init would run the IMDS userData instead, which the kit never sets (refused)",
    );
  if (custom[0].children.length) throw new AzureOvfError("CustomData has child elements");
  const b64 = custom[0].text.replace(ASCII_WS, "");
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(b64))
    throw new AzureOvfError(
      "CustomData is not canonical base64 (only A-Z a-z 0-9 + / with '=' padding, and whitespace)",
    );
  return Buffer.from(b64, "base64");
}
