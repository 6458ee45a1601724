// The SEV-SNP derived-key request on the wire (MSG_KEY_REQ through /dev/sev-guest SNP_GET_DERIVED_KEY), checked
// against an independent statement of the C layout — include/uapi/linux/sev-guest.h
//   struct snp_derived_key_req  { __u32 root_key_select; __u32 rsvd; __u64 guest_field_select; __u32 vmpl;
//                                 __u32 guest_svn; __u64 tcb_version; };
//   struct snp_derived_key_resp { __u8 data[64]; };   (MSG_KEY_RSP: STATUS u32, reserved, DERIVED_KEY[32] @ 0x20)
// laid out by python's ctypes (the C ABI, not our encoder), the GUEST_FIELD_SELECT bits of the SNP firmware ABI
// (bit 0 GUEST_POLICY, 1 IMAGE_ID, 2 FAMILY_ID, 3 MEASUREMENT, 4 GUEST_SVN, 5 TCB_VERSION), the helper's response
// parsing, and the simulated PSP's deriveKey: a field changes the key exactly when it is selected, so the
// binding the runtime asks for on hardware is the one the local stack's simulated PSP gives.
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import {
  AUTO_UNSEAL_KEY_REQUEST,
  FIELD,
  KEY_REQUEST_SIZE,
  decodeKeyRequest,
  encodeKeyRequest,
  type DerivedKeyField,
} from "../../../runtime/attestation/snp/derived-key.js";
import { encodeTcb } from "../../../runtime/attestation/snp/abi.js";
import { SEV_GUEST_DERIVED_KEY_HELPER, sevGuestDerivedKey } from "../../../runtime/guest/sealing.js";
import type { CommandRunner } from "../../../runtime/guest/exec.js";
import { createSnpSimulator, type SimulatedGuestContext } from "../../../runtime/sim/snp.js";
import { haveCommand, requireTool } from "../../support/prereq.js";

const py = haveCommand("python3", ["-c", "0"]);

/** The uapi struct, packed by ctypes from the C declaration: the reference layout. */
const CTYPES_REQ = String.raw`
import ctypes, json, sys
class Req(ctypes.Structure):
    _fields_ = [("root_key_select", ctypes.c_uint32), ("rsvd", ctypes.c_uint32), ("guest_field_select", ctypes.c_uint64),
                ("vmpl", ctypes.c_uint32), ("guest_svn", ctypes.c_uint32), ("tcb_version", ctypes.c_uint64)]
a = json.loads(sys.argv[1])
r = Req(a["root"], 0, a["select"], a["vmpl"], a["svn"], int(a["tcb"]))
print(json.dumps({"size": ctypes.sizeof(Req), "offsets": {f: getattr(Req, f).offset for f, _ in Req._fields_},
                  "bytes": bytes(r).hex()}))
`;

function ctypesRequest(a: { root: number; select: number; vmpl: number; svn: number; tcb: bigint }) {
  const r = spawnSync("python3", ["-c", CTYPES_REQ, JSON.stringify({ ...a, tcb: a.tcb.toString() })], {
    encoding: "utf8",
  });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { size: number; offsets: Record<string, number>; bytes: string };
}

describe("MSG_KEY_REQ wire layout (struct snp_derived_key_req)", () => {
  it("GUEST_FIELD_SELECT bits are the SNP ABI's", () => {
    expect(FIELD).toEqual({
      policy: 1n,
      imageId: 2n,
      familyId: 4n,
      measurement: 8n,
      guestSvn: 16n,
      tcbVersion: 32n,
    });
  });

  it("every field at the uapi offset, byte for byte what the C struct holds (ctypes)", (ctx) => {
    if (!requireTool("python3", py)) return ctx.skip();
    const tcb = { bootloader: 3, tee: 0, snp: 8, microcode: 115 };
    const req = encodeKeyRequest(
      { rootKey: "vmrk", fields: ["measurement", "policy", "tcbVersion"], vmpl: 2, guestSvn: 0x01020304, tcb },
      "Milan",
    );
    const tcbU64 = Buffer.from(encodeTcb(tcb, "Milan")).readBigUInt64LE(0);
    const ref = ctypesRequest({ root: 1, select: 0b101001, vmpl: 2, svn: 0x01020304, tcb: tcbU64 });
    expect(ref.size).toBe(KEY_REQUEST_SIZE);
    expect(ref.offsets).toEqual({
      root_key_select: 0x00,
      rsvd: 0x04,
      guest_field_select: 0x08,
      vmpl: 0x10,
      guest_svn: 0x14,
      tcb_version: 0x18,
    });
    expect(Buffer.from(req).toString("hex")).toBe(ref.bytes);
    // And read back the same way.
    const d = decodeKeyRequest(req);
    expect(d).toMatchObject({ rootKey: "vmrk", fieldSelect: 0b101001n, vmpl: 2, guestSvn: 0x01020304 });
    expect(Buffer.from(d.tcb).readBigUInt64LE(0)).toBe(tcbU64);
  });

  it("the auto-unseal request: VCEK root, MEASUREMENT | GUEST_POLICY, VMPL 0, SVN 0, TCB 0", (ctx) => {
    if (!requireTool("python3", py)) return ctx.skip();
    const req = encodeKeyRequest(AUTO_UNSEAL_KEY_REQUEST, "Milan");
    expect(Buffer.from(req).toString("hex")).toBe(
      ctypesRequest({ root: 0, select: 0b1001, vmpl: 0, svn: 0, tcb: 0n }).bytes,
    );
    // Product-independent (no TCB in it): the runtime encodes it without knowing the chip.
    expect(Buffer.from(encodeKeyRequest(AUTO_UNSEAL_KEY_REQUEST, "Turin")).equals(Buffer.from(req))).toBe(true);
  });

  it("the helper: struct snp_guest_request_ioctl layout, message version 1, MSG_KEY_RSP parsing", (ctx) => {
    if (!requireTool("python3", py)) return ctx.skip();
    const layout = spawnSync("python3", ["-c", SEV_GUEST_DERIVED_KEY_HELPER, "--layout"], { encoding: "utf8" });
    expect(JSON.parse(layout.stdout)).toEqual({
      guest_request: 32,
      SNP_GET_DERIVED_KEY: 0xc0205301,
      msg_version: 1,
      offsets: { msg_version: 0, req_data: 8, resp_data: 16, exitinfo2: 24 },
    });
    const parse = (resp: Buffer) =>
      spawnSync("python3", ["-c", SEV_GUEST_DERIVED_KEY_HELPER, "--parse-response"], {
        input: resp.toString("hex"),
        encoding: "utf8",
      });
    const resp = Buffer.alloc(64);
    for (let i = 0; i < 32; i++) resp[0x20 + i] = i + 1;
    resp.fill(0xee, 0x04, 0x20); // reserved bytes are not part of the key
    const ok = parse(resp);
    expect(ok.status).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual({ key: resp.subarray(0x20).toString("hex") });
    resp.writeUInt32LE(0x16, 0); // INVALID_KEY: no key, whatever the bytes after it
    const bad = parse(resp);
    expect(bad.status).toBe(1);
    expect(JSON.parse(bad.stdout)).toEqual({ error: "firmware status 0x16" });
  });

  it("sevGuestDerivedKey hands the helper exactly the encoded request and returns its key", async () => {
    const seen: { argv: string[]; stdin: string }[] = [];
    const key = "5a".repeat(32);
    const runner: CommandRunner = {
      run: async (argv, o) => {
        seen.push({ argv, stdin: o?.stdin?.toString("utf8") ?? "" });
        return { code: 0, stdout: Buffer.from(JSON.stringify({ key })), stderr: Buffer.alloc(0) };
      },
    };
    const req = encodeKeyRequest(AUTO_UNSEAL_KEY_REQUEST, "Milan");
    const got = await sevGuestDerivedKey(req, { device: "/dev/sev-guest", runner });
    expect(Buffer.from(got).toString("hex")).toBe(key);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.argv.slice(-1)).toEqual(["/dev/sev-guest"]);
    expect(seen[0]!.stdin.trim()).toBe(Buffer.from(req).toString("hex"));
  });
});

describe("the simulated PSP derives with the same GUEST_FIELD_SELECT semantics", () => {
  const base: SimulatedGuestContext = {
    measurement: new Uint8Array(48).fill(0x11),
    policy: 0x30000n,
    imageId: new Uint8Array(16).fill(0x22),
    familyId: new Uint8Array(16).fill(0x33),
    guestSvn: 5,
  };
  const changes: Record<DerivedKeyField, Partial<SimulatedGuestContext>> = {
    policy: { policy: 0x30000n | (1n << 19n) },
    imageId: { imageId: new Uint8Array(16).fill(0x44) },
    familyId: { familyId: new Uint8Array(16).fill(0x55) },
    measurement: { measurement: new Uint8Array(48).fill(0x66) },
    // GUEST_SVN and TCB_VERSION mix the request's values (the SVN/TCB asked for), not the guest's.
    guestSvn: {},
    tcbVersion: {},
  };

  it("a guest field changes the key exactly when it is selected", async () => {
    const sim = await createSnpSimulator({ rsaBits: 1024 });
    const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
    for (const f of ["policy", "imageId", "familyId", "measurement"] as const) {
      const sel = encodeKeyRequest({ rootKey: "vcek", fields: [f], vmpl: 0, guestSvn: 0 }, sim.product);
      const unsel = encodeKeyRequest({ rootKey: "vcek", fields: [], vmpl: 0, guestSvn: 0 }, sim.product);
      const other = { ...base, ...changes[f] };
      expect(hex(sim.deriveKey(sel, other)), `${f} selected`).not.toBe(hex(sim.deriveKey(sel, base)));
      expect(hex(sim.deriveKey(unsel, other)), `${f} not selected`).toBe(hex(sim.deriveKey(unsel, base)));
    }
    // The auto-unseal binding: measurement and policy change it; image id, family id and the guest's SVN do not.
    const auto = encodeKeyRequest(AUTO_UNSEAL_KEY_REQUEST, sim.product);
    const k = hex(sim.deriveKey(auto, base));
    expect(hex(sim.deriveKey(auto, { ...base, ...changes.measurement }))).not.toBe(k);
    expect(hex(sim.deriveKey(auto, { ...base, ...changes.policy }))).not.toBe(k);
    expect(hex(sim.deriveKey(auto, { ...base, ...changes.imageId, ...changes.familyId, guestSvn: 9 }))).toBe(k);
    // Another chip: another key for the same request and launch.
    const chipB = await createSnpSimulator({ rsaBits: 1024 });
    expect(hex(chipB.deriveKey(auto, base))).not.toBe(k);
  });
});
