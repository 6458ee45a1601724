// The fake GCE metadata server keeps the real one's rules (Metadata-Flavor required, no proxied requests, GET only,
// redirects to directories) — a boot test that passed against a fake answering without them would not show that the
// image works where GCE refuses it — and real cloud-init 22.4's GCE crawl (read_md) reads it as it reads GCE.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cloudInitPy, hasCloudInitStages } from "./cloud-init-cache.js";
import { FLAVOR_HEADER, gceSmbios, startFakeGceMetadata, type FakeGceMetadata } from "./gce-metadata.js";

const USER_DATA = "#cloud-config\nruncmd:\n  - [ true ]\n";

describe("fake GCE metadata server", () => {
  let md: FakeGceMetadata;
  let base: string;
  let asked = 0;
  beforeAll(async () => {
    md = await startFakeGceMetadata({
      instance: {
        id: "4242424242424242",
        zone: "projects/123456789012/zones/us-central1-a",
        hostname: "web.us-central1-a.c.bk-prod.internal",
        "machine-type": "projects/123456789012/machineTypes/n2d-standard-2",
      },
      project: { "project-id": "bk-prod", "numeric-project-id": "123456789012" },
      instanceAttributes: { "bk-nonce": async () => `computed-${++asked}` },
      projectAttributes: { "ssh-keys": "" },
      userData: USER_DATA,
    });
    base = `http://127.0.0.1:${md.port}/computeMetadata/v1`;
  });
  afterAll(() => md.close());

  const get = (p: string, headers: Record<string, string> = { [FLAVOR_HEADER]: "Google" }) =>
    fetch(`${base}/${p}`, { headers, redirect: "manual" });
  const reads = () => md.requests.filter((r) => r.userData).length;

  it("refuses a request without Metadata-Flavor: Google (or with another value), and every proxied one", async () => {
    for (const h of [
      {} as Record<string, string>,
      { [FLAVOR_HEADER]: "google" },
      { [FLAVOR_HEADER]: "Googles" },
      { [FLAVOR_HEADER]: "x" },
    ]) {
      const r = await get("instance/id", h);
      expect(r.status, JSON.stringify(h)).toBe(403);
      expect(await r.text()).not.toContain("4242");
    }
    const proxied = await get("instance/attributes/user-data", {
      [FLAVOR_HEADER]: "Google",
      "x-forwarded-for": "10.0.0.1",
    });
    expect(proxied.status).toBe(403);
    expect(await proxied.text()).not.toContain("cloud-config");
    expect(reads()).toBe(0);
  });

  it("GET only; the legacy endpoints are gone; unknown paths 404", async () => {
    expect((await fetch(`${base}/instance/id`, { method: "PUT", headers: { [FLAVOR_HEADER]: "Google" } })).status).toBe(
      405,
    );
    for (const p of ["/0.1/meta-data/", "/computeMetadata/v1beta1/instance/id", "/latest/user-data", "/"])
      expect(
        (await fetch(`http://127.0.0.1:${md.port}${p}`, { headers: { [FLAVOR_HEADER]: "Google" } })).status,
        p,
      ).toBe(404);
    expect((await get("instance/nothing")).status).toBe(404);
    expect((await get("instance/id/")).status).toBe(404);
  });

  it("leaves as text (alt=json: a JSON string), with Metadata-Flavor on the answer; computed leaves on each read", async () => {
    const r = await get("instance/id");
    expect(r.status).toBe(200);
    expect(r.headers.get(FLAVOR_HEADER)).toBe("Google");
    expect(await r.text()).toBe("4242424242424242");
    expect(await (await get("instance/hostname?alt=json")).json()).toBe("web.us-central1-a.c.bk-prod.internal");
    expect(await (await get("instance/attributes/bk-nonce")).text()).toBe("computed-1");
    expect(await (await get("instance/attributes/bk-nonce")).text()).toBe("computed-2");
  });

  it("directories: 301 to the trailing slash, a listing, or recursively the subtree's JSON", async () => {
    const r = await get("instance/attributes?recursive=True");
    expect(r.status).toBe(301);
    expect(r.headers.get("location")).toBe("/computeMetadata/v1/instance/attributes/?recursive=True");
    expect(await (await get("instance/")).text()).toBe("id\nzone\nhostname\nmachine-type\nattributes/\n");
    expect(await (await get("instance/attributes/")).text()).toBe("bk-nonce\nuser-data\n");
    const j = (await (await get("instance/?recursive=true")).json()) as Record<string, unknown>;
    expect(j).toMatchObject({ id: "4242424242424242", machineType: expect.any(String) });
    expect(j.attributes).toMatchObject({ "user-data": USER_DATA, "bk-nonce": expect.any(String) });
  });

  it("records which answers carried the user-data; the host can swap it between reads", async () => {
    const before = reads();
    await get("instance/attributes/");
    await get("project/attributes/?recursive=true");
    await get("instance/attributes/bk-nonce");
    expect(reads()).toBe(before);
    const a = (await (await get("instance/attributes/?recursive=True")).json()) as Record<string, string>;
    expect(a["user-data"]).toBe(USER_DATA);
    md.setUserData("#cloud-config\nruncmd:\n  - [ evil ]\n");
    expect(await (await get("instance/attributes/user-data")).text()).toContain("evil");
    expect(reads()).toBe(before + 2);
    md.setUserData(undefined);
    expect((await get("instance/attributes/user-data")).status).toBe(404);
    md.setUserData(USER_DATA);
  });

  it("the DMI a GCE VM carries", () => {
    expect(gceSmbios()).toEqual([
      "-smbios",
      "type=0,vendor=Google",
      "-smbios",
      "type=1,manufacturer=Google,product=Google Compute Engine,serial=GoogleCloud-5B1E7C1D4E0B9F3A6D2C1B0A9E8F0011",
    ]);
    expect(() => gceSmbios("ec2a5b1e")).toThrow(/GoogleCloud-/);
  });

  it.runIf(hasCloudInitStages)(
    "real cloud-init 22.4's GCE crawl (read_md) reads it: ids, zone, user-data",
    async () => {
      const code = `
import json, sys, logging
logging.disable(logging.CRITICAL)
from cloudinit import sources
from cloudinit.sources import DataSourceGCE as gce
p = sources.URLParams(max_wait_seconds=5, timeout_seconds=5, num_retries=0, sec_between_retries=0)
r = gce.read_md(address=sys.argv[1], url_params=p, platform_check=False)
md = r["meta-data"] or {}
print(json.dumps({"ok": r["success"], "reason": r["reason"], "id": md.get("instance-id"),
  "zone": md.get("availability-zone"), "host": md.get("local-hostname"),
  "ud": (r["user-data"] or b"").decode()}))
`;
      const before = reads();
      // Not spawnSync: the server answers from this process's event loop.
      const r = await promisify(execFile)(
        cloudInitPy!,
        ["-I", "-c", code, `http://127.0.0.1:${md.port}/computeMetadata/v1/`],
        {
          encoding: "utf8",
        },
      );
      expect(JSON.parse(r.stdout)).toEqual({
        ok: true,
        reason: null,
        id: "4242424242424242",
        zone: "us-central1-a",
        host: "web.us-central1-a.c.bk-prod.internal",
        ud: USER_DATA,
      });
      // One read carried the user-data: the recursive instance/attributes/ listing.
      expect(reads()).toBe(before + 1);
      expect(md.requests.at(-2)?.path).toBe("/computeMetadata/v1/instance/attributes/?recursive=True");
    },
  );
});
