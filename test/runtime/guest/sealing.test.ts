// The /dev/sev-guest SNP_GET_DERIVED_KEY helper: structure layout and ioctl number against
// include/uapi/linux/sev-guest.h, and a device that does not speak the ioctl gives a clear error.
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { DerivedKeyError, SEV_GUEST_DERIVED_KEY_HELPER, sevGuestDerivedKey } from "../../../runtime/guest/sealing.js";
import { AUTO_UNSEAL_KEY_REQUEST, encodeKeyRequest } from "../../../runtime/attestation/snp/derived-key.js";
import { haveCommand, requireTool } from "../../support/prereq.js";

describe("SNP_GET_DERIVED_KEY helper", () => {
  const py = haveCommand("python3", ["-c", "0"]);

  it("matches include/uapi/linux/sev-guest.h", (ctx) => {
    if (!requireTool("python3", py)) return ctx.skip();
    const r = spawnSync("python3", ["-c", SEV_GUEST_DERIVED_KEY_HELPER, "--layout"], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      guest_request: 32,
      SNP_GET_DERIVED_KEY: 0xc0205301,
      msg_version: 1,
      offsets: { msg_version: 0, req_data: 8, resp_data: 16, exitinfo2: 24 },
    });
  });

  it("a device that does not speak the ioctl is a clear DerivedKeyError (ENOTTY)", async (ctx) => {
    if (!requireTool("python3", py)) return ctx.skip();
    const req = encodeKeyRequest(AUTO_UNSEAL_KEY_REQUEST, "Milan");
    const e = await sevGuestDerivedKey(req, { device: "/dev/null" }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DerivedKeyError);
    expect((e as Error).message).toMatch(/\/dev\/null: SNP_GET_DERIVED_KEY: ENOTTY/);
    const missing = await sevGuestDerivedKey(req, { device: "/nonexistent/sev-guest" }).catch((x: unknown) => x);
    expect((missing as Error).message).toMatch(/open .*ENOENT/);
    await expect(sevGuestDerivedKey(new Uint8Array(31))).rejects.toThrow(/32 bytes/);
  });
});
