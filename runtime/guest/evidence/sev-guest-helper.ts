// Node cannot issue ioctl(2) without a native addon, so the /dev/sev-guest path runs this small
// Python 3 program: python3 is on every image that runs cloud-init (cloud-init is written in it),
// and ctypes + fcntl.ioctl are in its standard library. Layouts from include/uapi/linux/sev-guest.h:
//   struct snp_report_req        { u8 user_data[64]; u32 vmpl; u8 rsvd[28]; }            96 B
//   struct snp_ext_report_req    { snp_report_req data; u64 certs_address; u32 certs_len; } 112 B
//   struct snp_guest_request_ioctl { u8 msg_version; u64 req_data; u64 resp_data; u64 exitinfo2; } 32 B
//   SNP_GET_EXT_REPORT = _IOWR('S', 0x2, struct snp_guest_request_ioctl) = 0xC0205302
// The response (4000 B) is MSG_REPORT_RSP: status u32, report_size u32, 24 reserved, report.
// stdin: REPORT_DATA hex; stdout: JSON {report, certs} hex, or {error, errno, fw_error, vmm_error}.
export const SEV_GUEST_HELPER = String.raw`
import ctypes, fcntl, json, os, sys, errno as E

class ReportReq(ctypes.Structure):
    _fields_ = [("user_data", ctypes.c_uint8 * 64), ("vmpl", ctypes.c_uint32), ("rsvd", ctypes.c_uint8 * 28)]

class ExtReportReq(ctypes.Structure):
    _fields_ = [("data", ReportReq), ("certs_address", ctypes.c_uint64), ("certs_len", ctypes.c_uint32)]

class GuestRequest(ctypes.Structure):
    _fields_ = [("msg_version", ctypes.c_uint8), ("req_data", ctypes.c_uint64), ("resp_data", ctypes.c_uint64), ("exitinfo2", ctypes.c_uint64)]

def iowr(t, nr, size):
    return (3 << 30) | (size << 16) | (ord(t) << 8) | nr

SNP_GET_EXT_REPORT = iowr("S", 0x2, ctypes.sizeof(GuestRequest))
PAGE = 4096
VMM_ERR_INVALID_LEN = 1

def out(obj, code):
    sys.stdout.write(json.dumps(obj))
    sys.exit(code)

if len(sys.argv) > 1 and sys.argv[1] == "--layout":
    out({"report_req": ctypes.sizeof(ReportReq), "ext_report_req": ctypes.sizeof(ExtReportReq), "guest_request": ctypes.sizeof(GuestRequest), "SNP_GET_EXT_REPORT": SNP_GET_EXT_REPORT}, 0)

dev = sys.argv[1]
user_data = bytes.fromhex(sys.stdin.read().strip())
if len(user_data) != 64:
    out({"error": "REPORT_DATA must be 64 bytes"}, 2)
try:
    fd = os.open(dev, os.O_RDWR)
except OSError as e:
    out({"error": "open %s: %s" % (dev, E.errorcode.get(e.errno, str(e.errno))), "errno": e.errno}, 1)

certs_len = 4 * PAGE
for _ in range(3):
    req = ExtReportReq()
    ctypes.memmove(req.data.user_data, user_data, 64)
    certs = ctypes.create_string_buffer(certs_len)
    req.certs_address = ctypes.addressof(certs)
    req.certs_len = certs_len
    resp = ctypes.create_string_buffer(4000)
    g = GuestRequest(msg_version=1, req_data=ctypes.addressof(req), resp_data=ctypes.addressof(resp), exitinfo2=0)
    try:
        fcntl.ioctl(fd, SNP_GET_EXT_REPORT, g, True)
    except OSError as e:
        fw, vmm = g.exitinfo2 & 0xffffffff, g.exitinfo2 >> 32
        if vmm == VMM_ERR_INVALID_LEN and req.certs_len > certs_len:
            certs_len = (req.certs_len + PAGE - 1) // PAGE * PAGE
            continue
        out({"error": "SNP_GET_EXT_REPORT: %s" % E.errorcode.get(e.errno, str(e.errno)), "errno": e.errno, "fw_error": fw, "vmm_error": vmm}, 1)
    raw = resp.raw
    status = int.from_bytes(raw[0:4], "little")
    size = int.from_bytes(raw[4:8], "little")
    if status != 0 or size == 0 or size > 4000 - 32:
        out({"error": "firmware status 0x%x, report size %d" % (status, size)}, 1)
    out({"report": raw[32:32 + size].hex(), "certs": certs.raw[:req.certs_len].hex()}, 0)
out({"error": "certificate buffer kept growing"}, 1)
`;
