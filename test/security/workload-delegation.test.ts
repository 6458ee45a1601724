// Attacks on what a workload is given, over real HTTP against `runtime dev` with Nitride and the SNP
// simulator:
//  2. confused deputy: a token that may only write nitride/workloads/* registered a workload listing
//     secret/data/admin/... and got it through Nitride's internal, ACL-free policy write; registering
//     `x` silently overwrote an existing policy named nitride-workload-x;
//  5. disk keys outlived their workload: a re-created `web` received the old disk_key;
//  6. a workload token could use its whole PKI/SSH role: web got a certificate for db.example.com and
//     an SSH host certificate for *.example.com.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPairSync } from "node:crypto";
import {
  GOOD_MEASUREMENT,
  OTHER_MEASUREMENT,
  attestAs,
  login,
  startNitrideStack,
  type NitrideStack,
} from "../runtime/server/nitride/nitride-support.js";

let s: NitrideStack;
let operator: string;
beforeAll(async () => {
  s = await startNitrideStack();
  await s.rt.api("PUT", "secret/data/admin/root-password", { data: { password: "admin-only" } });
  await s.rt.api("PUT", "secret/data/team/app", { data: { password: "team-app" } });
  // A low-privilege operator: may manage workloads and read its team's secrets, nothing else.
  await s.rt.api("PUT", "sys/policies/acl/team-operator", {
    policy: `
      path "nitride/workloads/*" { capabilities = ["create", "read", "update", "delete"] }
      path "secret/data/team/*" { capabilities = ["read"] }
    `,
  });
  operator = (await s.rt.api("POST", "auth/token/create", { policies: ["team-operator"] })).body.auth.client_token;
}, 60_000);
afterAll(async () => {
  await s?.rt.close();
});

const workload = (secrets: Record<string, unknown>, measurement = OTHER_MEASUREMENT) => ({
  reference_values: { snp_measurements: [measurement] },
  secrets: { kv: [], ...secrets },
});

function sshPublicKey(): string {
  const der = generateKeyPairSync("ed25519").publicKey.export({ format: "der", type: "spki" });
  const blob = Buffer.concat([
    Buffer.from([0, 0, 0, 11]),
    Buffer.from("ssh-ed25519"),
    Buffer.from([0, 0, 0, 32]),
    der.subarray(der.length - 32),
  ]);
  return `ssh-ed25519 ${blob.toString("base64")}`;
}

describe("attack 2: registering a workload delegates only what the caller holds", () => {
  it.each<[string, Record<string, unknown>, RegExp]>([
    ["another team's KV path", { kv: ["secret/data/admin/root-password"] }, /secrets\.kv\[0\].*secret\/data\/admin/],
    ["a PKI role", { pki: { role: "pki/web", common_name: "web.example.com" } }, /secrets\.pki.*pki\/issue\/web/],
    ["an SSH role", { ssh: { role: "ssh/host", principals: ["web.example.com"] } }, /secrets\.ssh.*ssh\/sign\/host/],
    ["a disk key", { disk_key: true }, /secrets\.disk_key.*nitride\/disk-keys\/evil/],
  ])("refuses %s the caller cannot use itself", async (_what, secrets, why) => {
    const r = await s.rt.api("PUT", "nitride/workloads/evil", workload(secrets), operator);
    expect(r.status).toBe(403);
    expect(r.body.errors[0]).toMatch(why);
    expect((await s.rt.api("GET", "nitride/workloads/evil")).status).toBe(404);
    expect((await s.rt.api("GET", "sys/policies/acl/nitride-workload-evil")).status).toBe(404);
  });

  it("the VM of a refused registration cannot read the admin secret", async () => {
    await s.rt.api("PUT", "nitride/workloads/evil", workload({ kv: ["secret/data/admin/root-password"] }), operator);
    // Nothing was registered: the VM cannot even get a challenge for it.
    expect((await s.rt.api("POST", "nitride/challenge", { workload_id: "evil" }, "")).status).toBe(404);
  });

  it("allows what the caller holds: its own team's KV path", async () => {
    const r = await s.rt.api("PUT", "nitride/workloads/team-app", workload({ kv: ["secret/data/team/app"] }), operator);
    expect(r.status).toBe(200);
    const a = await attestAs(s, "team-app", { measurement: OTHER_MEASUREMENT });
    const tok = (await login(s, a.body.data.token)).body.auth.client_token;
    expect((await s.rt.api("GET", "secret/data/team/app", undefined, tok)).status).toBe(200);
    expect((await s.rt.api("GET", "secret/data/admin/root-password", undefined, tok)).status).toBe(403);
  });

  it("never overwrites (or deletes) a policy it did not create", async () => {
    const mine = 'path "secret/data/admin/*" { capabilities = ["read"] }\n';
    expect((await s.rt.api("PUT", "sys/policies/acl/nitride-workload-x", { policy: mine })).status).toBe(204);
    const r = await s.rt.api("PUT", "nitride/workloads/x", workload({}));
    expect(r.status).toBe(409);
    expect(r.body.errors[0]).toMatch(/was not created by Nitride/);
    expect((await s.rt.api("GET", "sys/policies/acl/nitride-workload-x")).body.data.policy).toBe(mine);
    expect((await s.rt.api("DELETE", "nitride/workloads/x")).status).toBe(204);
    expect((await s.rt.api("GET", "sys/policies/acl/nitride-workload-x")).body.data.policy).toBe(mine);
    // Its own policy it keeps in step, and deletes with the workload.
    expect((await s.rt.api("PUT", "nitride/workloads/y", workload({}))).status).toBe(200);
    expect((await s.rt.api("PUT", "nitride/workloads/y", workload({ kv: ["secret/data/team/app"] }))).status).toBe(200);
    expect((await s.rt.api("GET", "sys/policies/acl/nitride-workload-y")).body.data.policy).toContain("team/app");
    expect((await s.rt.api("DELETE", "nitride/workloads/y")).status).toBe(204);
    expect((await s.rt.api("GET", "sys/policies/acl/nitride-workload-y")).status).toBe(404);
  });
});

describe("attack 5: a re-created workload name never inherits the old disk key", () => {
  it("delete destroys the disk key; the new `phoenix` gets a fresh one", async () => {
    const provisionDiskKey = async (measurement: string) => {
      const a = await attestAs(s, "phoenix", { measurement });
      expect(a.status).toBe(200);
      const tok = (await login(s, a.body.data.token)).body.auth.client_token;
      const p = await s.rt.api("GET", "nitride/provision", undefined, tok);
      expect(p.status).toBe(200);
      return p.body.data.disk_key as string;
    };
    expect(
      (await s.rt.api("PUT", "nitride/workloads/phoenix", workload({ disk_key: true }, GOOD_MEASUREMENT))).status,
    ).toBe(200);
    const first = await provisionDiskKey(GOOD_MEASUREMENT);
    expect(await provisionDiskKey(GOOD_MEASUREMENT)).toBe(first); // stable while the workload lives
    expect(
      (await s.rt.api("PUT", "nitride/workloads/phoenix", workload({ disk_key: true }, GOOD_MEASUREMENT))).status,
    ).toBe(200);
    expect(await provisionDiskKey(GOOD_MEASUREMENT)).toBe(first); // and across updates
    expect((await s.rt.api("DELETE", "nitride/workloads/phoenix")).status).toBe(204);
    expect(
      (await s.rt.api("PUT", "nitride/workloads/phoenix", workload({ disk_key: true }, OTHER_MEASUREMENT))).status,
    ).toBe(200);
    const second = await provisionDiskKey(OTHER_MEASUREMENT);
    expect(second).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(second).not.toBe(first);
  });
});

describe("attack 6: a workload token is limited to the names it was registered for", () => {
  let tok: string;
  beforeAll(async () => {
    const a = await attestAs(s, "web");
    tok = (await login(s, a.body.data.token)).body.auth.client_token;
  });

  it("PKI: its own names are issued; another VM's name is refused", async () => {
    expect((await s.rt.api("POST", "pki/issue/web", { common_name: "web.example.com", ttl: "1h" }, tok)).status).toBe(
      200,
    );
    expect(
      (await s.rt.api("POST", "pki/issue/web", { common_name: "web.example.com", alt_names: "www.example.com" }, tok))
        .status,
    ).toBe(200);
    for (const body of [
      { common_name: "db.example.com" },
      { common_name: "web.example.com", alt_names: "db.example.com" },
      { common_name: "web.example.com", alt_names: "www.example.com,db.example.com" },
      { common_name: "web.example.com", uri_sans: "spiffe://example.com/db" },
    ])
      expect((await s.rt.api("POST", "pki/issue/web", body, tok)).status, JSON.stringify(body)).toBe(403);
  });

  it("SSH: a host certificate for its own principal is signed; *.example.com or a user certificate is refused", async () => {
    const key = sshPublicKey();
    const sign = (extra: Record<string, unknown>) =>
      s.rt.api("POST", "ssh/sign/host", { public_key: key, cert_type: "host", ...extra }, tok);
    expect((await sign({ valid_principals: "web.example.com" })).status).toBe(200);
    expect((await sign({ valid_principals: "*.example.com" })).status).toBe(403);
    expect((await sign({ valid_principals: "db.example.com" })).status).toBe(403);
    expect((await sign({ valid_principals: "web.example.com", cert_type: "user" })).status).toBe(403);
  });

  it("the provisioning bundle (Nitride-side issuance) still carries its certificates", async () => {
    const p = await s.rt.api("GET", "nitride/provision", undefined, tok);
    expect(p.status).toBe(200);
    expect(p.body.data.tls.certificate).toMatch(/BEGIN CERTIFICATE/);
    expect(p.body.data.ssh.host_certificates[0].signed_key).toMatch(/cert-v01@openssh.com/);
  });
});
