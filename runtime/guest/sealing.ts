// The SEV-SNP sealing key on real hardware: SNP_GET_DERIVED_KEY on /dev/sev-guest (MSG_KEY_REQ, see
// runtime/attestation/snp/derived-key.ts) through a small python3 helper, since Node cannot issue
// ioctl(2) without a native addon (same approach as evidence/sev-guest-helper.ts). Layouts from
// include/uapi/linux/sev-guest.h:
//   struct snp_derived_key_req  { u32 root_key_select; u32 rsvd; u64 guest_field_select; u32 vmpl;
//                                 u32 guest_svn; u64 tcb_version; }                       32 B
//   struct snp_derived_key_resp { u8 data[64]; }  = MSG_KEY_RSP: status u32, 28 reserved, key[32]
//   SNP_GET_DERIVED_KEY = _IOWR('S', 0x1, struct snp_guest_request_ioctl) = 0xC0205301
// stdin: the 32-byte request hex; stdout: JSON {key} hex or {error, errno, fw_error, vmm_error}.
// `--layout` and `--parse-response` (stdin: a 64-byte MSG_KEY_RSP) let the tests check the structure and the
// response parsing the ioctl path uses, on machines without /dev/sev-guest.
import { type CommandRunner, spawnRunner } from "./exec.js";
import { VIRTIO_PSP_PORT, virtioPspExchange } from "./evidence/virtio-psp.js";

export const SEV_GUEST_DERIVED_KEY_HELPER = String.raw`
import ctypes, fcntl, json, os, sys, errno as E

class GuestRequest(ctypes.Structure):
    _fields_ = [("msg_version", ctypes.c_uint8), ("req_data", ctypes.c_uint64), ("resp_data", ctypes.c_uint64), ("exitinfo2", ctypes.c_uint64)]

def iowr(t, nr, size):
    return (3 << 30) | (size << 16) | (ord(t) << 8) | nr

SNP_GET_DERIVED_KEY = iowr("S", 0x1, ctypes.sizeof(GuestRequest))
MSG_VERSION = 1

def out(obj, code):
    sys.stdout.write(json.dumps(obj))
    sys.exit(code)

def parse(raw):
    # MSG_KEY_RSP: STATUS u32 at 0x00 (0 = success), reserved to 0x1F, DERIVED_KEY[32] at 0x20.
    status = int.from_bytes(raw[0:4], "little")
    if status != 0:
        out({"error": "firmware status 0x%x" % status}, 1)
    out({"key": raw[32:64].hex()}, 0)

if len(sys.argv) > 1 and sys.argv[1] == "--layout":
    out({"guest_request": ctypes.sizeof(GuestRequest), "SNP_GET_DERIVED_KEY": SNP_GET_DERIVED_KEY, "msg_version": MSG_VERSION,
         "offsets": {f: getattr(GuestRequest, f).offset for f, _ in GuestRequest._fields_}}, 0)
if len(sys.argv) > 1 and sys.argv[1] == "--parse-response":
    raw = bytes.fromhex(sys.stdin.read().strip())
    if len(raw) != 64:
        out({"error": "response must be 64 bytes"}, 2)
    parse(raw)

dev = sys.argv[1]
req_bytes = bytes.fromhex(sys.stdin.read().strip())
if len(req_bytes) != 32:
    out({"error": "key request must be 32 bytes"}, 2)
try:
    fd = os.open(dev, os.O_RDWR)
except OSError as e:
    out({"error": "open %s: %s" % (dev, E.errorcode.get(e.errno, str(e.errno))), "errno": e.errno}, 1)
req = ctypes.create_string_buffer(req_bytes, 32)
resp = ctypes.create_string_buffer(64)
g = GuestRequest(msg_version=MSG_VERSION, req_data=ctypes.addressof(req), resp_data=ctypes.addressof(resp), exitinfo2=0)
try:
    fcntl.ioctl(fd, SNP_GET_DERIVED_KEY, g, True)
except OSError as e:
    out({"error": "SNP_GET_DERIVED_KEY: %s" % E.errorcode.get(e.errno, str(e.errno)), "errno": e.errno, "fw_error": g.exitinfo2 & 0xffffffff, "vmm_error": g.exitinfo2 >> 32}, 1)
parse(resp.raw)
`;

export class DerivedKeyError extends Error {
  override name = "DerivedKeyError";
}

export interface SevGuestDerivedKeyOptions {
  device?: string;
  python?: string;
  runner?: CommandRunner;
}

/** Asks the PSP for the key MSG_KEY_REQ `request` selects; 32 bytes. The key never leaves this process's memory. */
export async function sevGuestDerivedKey(request: Uint8Array, o: SevGuestDerivedKeyOptions = {}): Promise<Uint8Array> {
  if (request.length !== 32) throw new DerivedKeyError(`key request: must be 32 bytes, got ${request.length}`);
  const device = o.device ?? "/dev/sev-guest";
  const r = await (o.runner ?? spawnRunner).run([o.python ?? "python3", "-c", SEV_GUEST_DERIVED_KEY_HELPER, device], {
    stdin: Buffer.from(Buffer.from(request).toString("hex") + "\n"),
  });
  let res: { key?: string; error?: string; fw_error?: number; vmm_error?: number };
  try {
    res = JSON.parse(r.stdout.toString("utf8"));
  } catch {
    throw new DerivedKeyError(
      `${device}: python3 helper failed (exit ${r.code}): ${r.stderr.toString("utf8").trim().split("\n").pop() ?? ""}`,
    );
  }
  if (r.code !== 0 || !res.key || res.key.length !== 64) {
    const fw =
      res.fw_error !== undefined
        ? ` fw_error=0x${res.fw_error.toString(16)} vmm_error=0x${(res.vmm_error ?? 0).toString(16)}`
        : "";
    throw new DerivedKeyError(`${device}: ${res.error ?? "no key"}${fw}`);
  }
  return new Uint8Array(Buffer.from(res.key, "hex"));
}

/**
 * The same MSG_KEY_REQ over the local stack's virtio-serial PSP (runtime/sim/qemu/psp.ts), the stand-in
 * for the guest request channel in real QEMU guests without SEV-SNP: the host-side PSP derives the key
 * from the MEASUREMENT and POLICY it fixed at launch and its simulated chip secret. Only as strong as the
 * host that runs it — a local-stack path, never a substitute for /dev/sev-guest on real hardware.
 */
export async function virtioPspDerivedKey(
  request: Uint8Array,
  o: { port?: string; timeoutMs?: number } = {},
): Promise<Uint8Array> {
  if (request.length !== 32) throw new DerivedKeyError(`key request: must be 32 bytes, got ${request.length}`);
  const port = o.port ?? VIRTIO_PSP_PORT;
  const msg = await virtioPspExchange(
    port,
    { key_request: Buffer.from(request).toString("hex") },
    { timeoutMs: o.timeoutMs ?? 60_000, fail: (stage, m) => new DerivedKeyError(`virtio-psp: ${stage}: ${m}`) },
  );
  if (typeof msg.key !== "string" || !/^[0-9a-f]{64}$/i.test(msg.key))
    throw new DerivedKeyError(`virtio-psp: ${port}: the answer has no 32-byte key`);
  return new Uint8Array(Buffer.from(msg.key, "hex"));
}
