"""Batch driver for the PyPI reference implementation (sev-snp-measure), used by snp-reference.test.ts.

Reads a JSON list of jobs on stdin and prints a JSON list of {"digest": hex} or {"error": text}, one per
job, computing all of them in this one process through the library API (sevsnpmeasure.guest) instead of
spawning the CLI per configuration.

The reference has no "ec2-legacy" VMM type: that is its own pre-0.0.13 EC2 layout (RDX=0 instead of
0x600). A job with "ec2_legacy": true runs the ec2 layout with RDX forced to 0 by wrapping
VMSA.build_save_area; nothing else is changed.
"""
import json
import sys

from sevsnpmeasure import guest, vcpu_types, vmsa
from sevsnpmeasure.sev_mode import SevMode
from sevsnpmeasure.vmm_types import VMMType

_build = vmsa.VMSA.build_save_area
_legacy = {"on": False}


def _build_legacy_aware(eip, sev_features, vcpu_sig, vmm_type=VMMType.QEMU):
    area = _build(eip, sev_features, vcpu_sig, vmm_type)
    if _legacy["on"] and vmm_type == VMMType.ec2:
        area.rdx = 0
    return area


vmsa.VMSA.build_save_area = staticmethod(_build_legacy_aware)

MODES = {"snp": SevMode.SEV_SNP, "seves": SevMode.SEV_ES, "sev": SevMode.SEV, "svsm": SevMode.SEV_SNP_SVSM}
VMMS = {"qemu": VMMType.QEMU, "ec2": VMMType.ec2, "ec2-legacy": VMMType.ec2, "gce": VMMType.gce}


def vcpu_sig(job):
    # Resolved here by the reference's own tables, not by the implementation under test.
    if job.get("vcpu_type"):
        return vcpu_types.CPU_SIGS[job["vcpu_type"]]
    if job.get("vcpu_fms"):
        return vcpu_types.cpu_sig(*job["vcpu_fms"])
    return job.get("vcpu_sig") or 0


def run(job):
    _legacy["on"] = job.get("vmm") == "ec2-legacy"
    if job["mode"] == "ovmf-hash":
        return guest.calc_snp_ovmf_hash(job["ovmf"]).hex()
    ld = guest.calc_launch_digest(
        MODES[job["mode"]], job.get("vcpus"), vcpu_sig(job), job["ovmf"],
        job.get("kernel"), job.get("initrd"), job.get("append"), int(job.get("guest_features", "0x1"), 0),
        job.get("ovmf_hash") or "", VMMS[job.get("vmm", "qemu")], False, job.get("svsm") or "", job.get("vars_size") or 0)
    return ld.hex()


def main():
    out = []
    for job in json.load(sys.stdin):
        try:
            out.append({"digest": run(job)})
        except Exception as e:  # the reference signals bad input with several exception types
            out.append({"error": f"{type(e).__name__}: {e}"})
    json.dump(out, sys.stdout)


main()
