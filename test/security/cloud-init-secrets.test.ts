// Attack 10: the cloud-init secret scan missed fields. `hostname` and the agent download URL were
// never scanned, so a PEM key, an `hvs.` token and `user:pass@` or `?token=` URLs were rendered into
// user-data (which the cloud operator and the host admin can read). Now the final rendered text is
// scanned, URLs with userinfo or query strings are refused, and the scan also knows base64-wrapped
// PEM, JWTs, AWS keys and Vault tokens. The renderer is what the components, the provider and the
// `buckypaper cloud-init` CLI call, so it is attacked directly.
import { describe, expect, it } from "vitest";
import { generateKeyPairSync } from "node:crypto";
import { renderUserData, type UserDataInput } from "../../runtime/guest/cloud-init/render.js";
import { SecretInUserDataError } from "../../runtime/guest/cloud-init/secret.js";

const CA = "ab".repeat(32);
const base: UserDataInput = {
  platform: "qemu",
  runtimeUrl: "https://rt.example.com:8200",
  runtimeCaSha256: CA,
  workloadId: "web",
};
const pem = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({
  format: "pem",
  type: "pkcs8",
}) as string;
const jwt =
  Buffer.from('{"alg":"ES256","typ":"JWT"}').toString("base64url") +
  "." +
  Buffer.from('{"sub":"web","exp":9999999999}').toString("base64url") +
  ".c2lnbmF0dXJlLWJ5dGVz";
const download = (url: string): UserDataInput => ({
  ...base,
  agent: { kind: "download", url, sha256: "cd".repeat(32) },
});
const file = (content: string): UserDataInput => ({ ...base, extraFiles: [{ path: "/etc/app.conf", content }] });

describe("attack 10: no secret reaches user-data, whatever field carries it", () => {
  it.each<[string, UserDataInput, RegExp]>([
    ["a PEM key in hostname", { ...base, hostname: pem }, /hostname holds .*PEM private key/],
    [
      "an hvs. token in hostname",
      { ...base, hostname: "hvs.CAESIJ5kq3y8N2m0aXbQwzLfPpTgVh7o" },
      /hostname holds .*Vault token/,
    ],
    [
      "user:pass@ in the agent URL",
      download("https://user:pa55@artifacts.example.com/a.tgz"),
      /agent\.url holds .*credentials/,
    ],
    [
      "?token= in the agent URL",
      download("https://artifacts.example.com/a.tgz?token=abc123"),
      /agent\.url holds .*query string/,
    ],
    [
      "a presigned agent URL",
      download("https://b.s3.amazonaws.com/a.tgz?X-Amz-Signature=ff"),
      /agent\.url holds .*query string/,
    ],
    [
      "?token= in the runtime URL",
      { ...base, runtimeUrl: "https://rt.example.com:8200/?token=x" },
      /runtimeUrl holds .*query string/,
    ],
    [
      "user:pass@ in the runtime URL",
      { ...base, runtimeUrl: "https://u:p@rt.example.com:8200" },
      /runtimeUrl holds .*credentials/,
    ],
    [
      "a base64-wrapped PEM key",
      file(`KEY=${Buffer.from(pem).toString("base64")}`),
      /PEM private key \(base64-encoded\)/,
    ],
    [
      "a base64-wrapped PEM key at another alignment",
      file(Buffer.from("xy" + pem).toString("base64")),
      /PEM private key/,
    ],
    ["a JWT", file(`TOKEN=${jwt}`), /a JWT/],
    ["an AWS access key id", file("aws_access_key_id = AKIAIOSFODNN7EXAMPLE"), /AWS access key/],
    ["an AWS secret key", file("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"), /AWS secret/],
    ["an hvb. batch token", file("VAULT_TOKEN=hvb.AAAAAQJ8sB3zQeXr1aVxWm0tLkS9"), /Vault token/],
    ["a legacy s. token", file("VAULT_TOKEN=s.Qf1s5zigZ4OX6akYjQXJC1jY"), /Vault token/],
  ])("refuses %s", (_name, input, why) => {
    let err: unknown;
    try {
      renderUserData(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SecretInUserDataError);
    expect((err as Error).message).toMatch(why);
  });

  it("a hostname that is not a host name is refused, naming the field", () => {
    expect(() => renderUserData({ ...base, hostname: "web\nruncmd: [evil]" })).toThrow(
      /^hostname: must be a host name/,
    );
  });

  it("public inputs still render (no false positives on hashes, URLs with ports and paths)", () => {
    const r = renderUserData({
      ...download("https://artifacts.example.com:8443/enclaivelet/v1.2.3/enclaivelet-linux-x64.tgz"),
      hostname: "web-1.internal.example.com",
      extraFiles: [{ path: "/etc/app.conf", content: `sha256=${"0f".repeat(32)}\nurl=https://api.example.com/v1/x\n` }],
    });
    expect(r.text).toContain("hostname: web-1.internal.example.com");
  });
});
