// The fake IMDS keeps IMDSv2's rules (httpTokens required) — a boot test that passed against a fake answering
// without a token would not show that the image works where EC2 refuses it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ec2Smbios, imdsNetOptions, startFakeImds, TOKEN_HEADER, TOKEN_TTL_HEADER, type FakeImds } from "./imds.js";

describe("fake IMDS (IMDSv2, tokens required)", () => {
  let imds: FakeImds;
  let base: string;
  let asked = 0;
  beforeAll(async () => {
    imds = await startFakeImds({
      metaData: {
        "instance-id": "i-0123",
        "placement/availability-zone": "us-east-2a",
        "tags/instance/n": async () => `computed-${++asked}`,
      },
      identity: { instanceId: "i-0123", region: "us-east-2" },
      userData: "#cloud-config\n",
    });
    base = `http://127.0.0.1:${imds.port}`;
  });
  afterAll(() => imds.close());

  const token = async (ttl = "60") => {
    const r = await fetch(`${base}/latest/api/token`, { method: "PUT", headers: { [TOKEN_TTL_HEADER]: ttl } });
    return { status: r.status, ttl: r.headers.get(TOKEN_TTL_HEADER), token: await r.text() };
  };
  const get = (p: string, t?: string) => fetch(`${base}${p}`, { headers: t ? { [TOKEN_HEADER]: t } : {} });

  it("a token needs a TTL of 1–21600 s and is echoed with it; only PUT, never through a proxy", async () => {
    const t = await token("21600");
    expect(t.status).toBe(200);
    expect(t.ttl).toBe("21600");
    for (const bad of ["0", "21601", "x", ""]) expect((await token(bad)).status, bad).toBe(400);
    expect((await fetch(`${base}/latest/api/token`)).status).toBe(405);
    const proxied = await fetch(`${base}/latest/api/token`, {
      method: "PUT",
      headers: { [TOKEN_TTL_HEADER]: "60", "x-forwarded-for": "10.0.0.1" },
    });
    expect(proxied.status).toBe(403);
  });

  it("refuses every read without a live token (401), as IMDS does with httpTokens required", async () => {
    expect((await get("/latest/user-data")).status).toBe(401);
    expect((await get("/latest/meta-data/instance-id", "not-a-token")).status).toBe(401);
    const short = await token("1");
    await new Promise((r) => setTimeout(r, 1100));
    expect((await get("/latest/meta-data/instance-id", short.token)).status).toBe(401);
    expect(imds.requests.filter((r) => r.status === 401).length).toBe(3);
  });

  it("with a token: the tree cloud-init crawls, the user-data as given, the identity document", async () => {
    const { token: t } = await token();
    const text = async (p: string) => {
      const r = await get(p, t);
      expect(r.status, p).toBe(200);
      expect(Number(r.headers.get(TOKEN_TTL_HEADER)), p).toBeGreaterThan(0);
      return r.text();
    };
    expect(await text("/2021-03-23/meta-data/")).toBe("instance-id\nplacement/\ntags/");
    expect(await text("/2021-03-23/meta-data/placement/")).toBe("availability-zone");
    expect(await text("/2021-03-23/meta-data/placement/availability-zone")).toBe("us-east-2a");
    expect(await text("/latest/user-data")).toBe("#cloud-config\n");
    expect(JSON.parse(await text("/latest/dynamic/instance-identity/document"))).toEqual({
      instanceId: "i-0123",
      region: "us-east-2",
    });
    // A computed leaf is computed on each read.
    expect(await text("/latest/meta-data/tags/instance/n")).toBe("computed-1");
    expect(await text("/latest/meta-data/tags/instance/n")).toBe("computed-2");
    expect((await get("/2099-01-01/meta-data/", t)).status).toBe(404);
    expect((await get("/latest/meta-data/nothing", t)).status).toBe(404);
    imds.setUserData(undefined);
    expect((await get("/latest/user-data", t)).status).toBe(404);
  });

  it("guest options: restrict=on, IMDS and the runtime on the 169.254.169.0/24 link; DMI that identifies EC2", () => {
    expect(imdsNetOptions({ imdsPort: 2000, runtimeAddr: "169.254.169.100", runtimePort: 3000 })).toEqual([
      "restrict=on",
      "net=169.254.169.0/24",
      "guestfwd=tcp:169.254.169.254:80-cmd:socat - TCP:127.0.0.1:2000",
      "guestfwd=tcp:169.254.169.100:3000-cmd:socat - TCP:127.0.0.1:3000",
    ]);
    expect(() => imdsNetOptions({ imdsPort: 2000, runtimeAddr: "10.0.2.100", runtimePort: 3000 })).toThrow(/must be/);
    expect(() => ec2Smbios("0c2a5b1e-7c1d-4e0b-9f3a-6d2c1b0a9e8f")).toThrow(/starts with ec2/);
  });
});
