// InstanceTpmEk's handlers against a local stand-in for the EC2 Query API, driven by the real @aws-sdk/client-ec2
// (its serializer builds the request, its deserializer parses the XML answer): the request must be
// GetInstanceTpmEkPub for the instance, key type and TPMT format; the answer, written from an object of the SDK's
// published GetInstanceTpmEkPubResult type, becomes the EK pin. Hostile answers (another instance, another format,
// junk key) are refused naming the field.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer, type Server } from "node:http";
import { createHash } from "node:crypto";
import type { GetInstanceTpmEkPubResult } from "@aws-sdk/client-ec2";
import { create, fetchInstanceEk, InstanceEkError } from "../../provider/aws-ek.js";
import { ekNameFromTpmt } from "../../runtime/attestation/aws/ek.js";
import { eccEkTpmt } from "../runtime/attestation/tpm-fixtures.js";

const xml = (r: GetInstanceTpmEkPubResult) =>
  `<?xml version="1.0" encoding="UTF-8"?>
<GetInstanceTpmEkPubResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>5f1c2d3e-0000-4000-8000-000000000001</requestId>
  <instanceId>${r.InstanceId}</instanceId>
  <keyType>${r.KeyType}</keyType>
  <keyFormat>${r.KeyFormat}</keyFormat>
  <keyValue>${r.KeyValue}</keyValue>
</GetInstanceTpmEkPubResponse>`;

describe("InstanceTpmEk: GetInstanceTpmEkPub through the AWS SDK", () => {
  let server: Server;
  let endpoint: string;
  const requests: URLSearchParams[] = [];
  let answer: (req: URLSearchParams) => GetInstanceTpmEkPubResult;
  const tpmt = eccEkTpmt();
  const saved = { ...process.env };

  beforeAll(async () => {
    // The SDK signs every request; the stand-in does not check the signature, but the SDK needs credentials.
    process.env.AWS_ACCESS_KEY_ID = "AKIAEXAMPLEEXAMPLE00";
    process.env.AWS_SECRET_ACCESS_KEY = "test-secret-not-real";
    delete process.env.AWS_PROFILE;
    server = createServer((req, res) => {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => {
        const q = new URLSearchParams(body);
        requests.push(q);
        if (q.get("Action") !== "GetInstanceTpmEkPub") return void res.writeHead(400).end("unexpected action");
        res.writeHead(200, { "content-type": "text/xml" }).end(xml(answer(q)));
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    process.env = saved;
    await new Promise<void>((r) => server.close(() => r()));
  });

  const honest = (q: URLSearchParams): GetInstanceTpmEkPubResult => ({
    InstanceId: q.get("InstanceId")!,
    KeyType: q.get("KeyType") as GetInstanceTpmEkPubResult["KeyType"],
    KeyFormat: q.get("KeyFormat") as GetInstanceTpmEkPubResult["KeyFormat"],
    KeyValue: tpmt.toString("base64"),
  });

  it("asks for the instance's EK in TPMT format and returns it with its TPM Name (the policy's ekNames)", async () => {
    answer = honest;
    const r = await create("instanceTpmEk", { instanceId: "i-0123456789abcdef0", region: "us-east-2", endpoint });
    const q = requests.at(-1)!;
    expect(q.get("InstanceId")).toBe("i-0123456789abcdef0");
    expect(q.get("KeyType")).toBe("rsa-2048");
    expect(q.get("KeyFormat")).toBe("tpmt");
    expect(r.id).toBe("i-0123456789abcdef0/rsa-2048");
    expect(r.outs.ekPublicTpmt).toBe(tpmt.toString("base64"));
    expect(r.outs.ekName).toBe(ekNameFromTpmt(tpmt));
    expect(r.outs.ekName).toBe("000b" + createHash("sha256").update(tpmt).digest("hex"));
  });

  it("hostile answers are refused, naming the field", async () => {
    const i = { instanceId: "i-0123456789abcdef0", region: "us-east-2", endpoint };
    answer = (q) => ({ ...honest(q), InstanceId: "i-0fffffffffffffff0" });
    await expect(fetchInstanceEk(i)).rejects.toThrow(/InstanceTpmEk instanceId: EC2 answered for i-0fffffffffffffff0/);
    answer = (q) => ({ ...honest(q), KeyFormat: "der" });
    await expect(fetchInstanceEk(i)).rejects.toThrow(/InstanceTpmEk keyFormat: EC2 answered der, not tpmt/);
    answer = (q) => ({ ...honest(q), KeyValue: Buffer.from("not a tpmt").toString("base64") });
    await expect(fetchInstanceEk(i)).rejects.toThrow(/InstanceTpmEk keyValue: is not a TPMT_PUBLIC/);
    const signing = Buffer.from(tpmt);
    signing.writeUInt32BE(0x00050072, 4); // a restricted signing key, not an EK
    answer = (q) => ({ ...honest(q), KeyValue: signing.toString("base64") });
    await expect(fetchInstanceEk(i)).rejects.toThrow(
      /InstanceTpmEk keyValue: is not an endorsement key a credential can be made for: .*restricted decryption key/,
    );
    await expect(fetchInstanceEk(i)).rejects.toBeInstanceOf(InstanceEkError);
  });

  it("bad inputs are refused before any call", async () => {
    const n = requests.length;
    await expect(create("instanceTpmEk", { instanceId: "web", region: "us-east-2", endpoint })).rejects.toThrow(
      /InstanceTpmEk instanceId: 'web' is not an EC2 instance id/,
    );
    await expect(
      create("instanceTpmEk", { instanceId: "i-0123456789abcdef0", region: "us-east-2", keyType: "rsa-4096" }),
    ).rejects.toThrow(/InstanceTpmEk keyType: must be one of rsa-2048, ecc-sec-p384/);
    expect(requests.length).toBe(n);
  });
});
