#!/usr/bin/env bash
# Installs the non-npm prerequisites of the test suite on a fresh Debian machine (idempotent).
# Used by .ci/run; developers can run it once too.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

# swtpm + tpm2-tools: a real software TPM 2.0 for the vTPM quote / event-log tests (test/support/swtpm.ts).
# wrk: the second load generator of `npm run bench` (runtime-kv); the tests do not need it.
# socat: the local real guests' forward to the runtime (guestfwd cmd:, one per connection).
# mmdebstrap squashfs-tools cpio: the guest image build (images/guest, `buckypaper image build`);
# build-essential … mtools: the AmdSev OVMF build from Debian's edk2 source package (scripts/build-firmware.sh).
# systemd-boot-efi + binutils: a real systemd-stub to build a UKI with objcopy, whose PCR 11 prediction is
# cross-checked with systemd-measure (test/images/vtpm-uki.test.ts; systemd-measure ships with systemd).
# osslsigncode: signs the cloud disk's UKI for Secure Boot (`image build --sign-key`; its -time makes the signature
# reproducible); sbsigntool: sbverify, an independent check of that signature (test/images/guest/uki-signing.test.ts).
APT_PACKAGES=(cloud-init postgresql cryptsetup-bin qemu-system-x86 qemu-utils ovmf genisoimage openssh-client openssh-server openssl curl wrk swtpm swtpm-tools tpm2-tools
  mmdebstrap squashfs-tools cpio
  socat
  build-essential nasm acpica-tools uuid-dev grub-efi-amd64-bin dosfstools mtools
  systemd-boot-efi binutils
  osslsigncode sbsigntool)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== apt-get install ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The measured firmware (OVMF AmdSev) from Debian's edk2 source: ~30-40 min cold on 2 cores, cached by input
# hash under ~/.cache/buckypaper/firmware/ (a warm run only checks the cache).
echo "== firmware: $(scripts/build-firmware.sh)"

# Reference implementations and real clients used by differential/interop tests.
# virt-firmware: virt-fw-vars enrolls the test's PK/KEK/db in an OVMF vars file for the Secure Boot disk boot
# (test/images/guest/secure-boot-disk.test.ts).
PIP_PACKAGES=(sev-snp-measure hvac "pyjwt[crypto]" jwcrypto virt-firmware)
python3 -m pip install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"

# Independent ML-KEM (FIPS 203) / ML-DSA (FIPS 204) implementations for the post-quantum interop tests
# (test/support/pq-python.ts): pure-Python kyber-py and dilithium-py, pinned, in a cached venv.
PQ_VENV="${BK_PQ_PYTHON_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/buckypaper/pq-python-venv}"
PQ_PACKAGES=("kyber-py==1.2.0" "dilithium-py==1.5.1" "cryptography")
if ! "$PQ_VENV/bin/python" -c 'import importlib.metadata as m, cryptography; assert m.version("kyber-py") == "1.2.0" and m.version("dilithium-py") == "1.5.1"' 2>/dev/null; then
  echo "== pq interop venv $PQ_VENV (${PQ_PACKAGES[*]})"
  python3 -m venv "$PQ_VENV"
  "$PQ_VENV/bin/pip" install -q --disable-pip-version-check "${PQ_PACKAGES[@]}"
fi

# The Pulumi engine (CLI + language hosts), built from the Go module proxy; cached, so a warm machine
# only checks versions (docs/pulumi.md).
scripts/setup-pulumi.sh

# The real HashiCorp Vault CLI v1.21.4 for test/compat/ (built from the Go module proxy by the shared
# script; ~25 min cold on 2 cores, cached in ~/.cache/buckypaper/vault-1.21.4). ../shared is read-only:
# the script writes only under ~/.cache.
SHARED="${BK_SHARED_DIR:-$(cd .. && pwd)/shared}"
if [ -x "$SHARED/tools/vault-cli/build.sh" ] || [ -f "$SHARED/tools/vault-cli/build.sh" ]; then
  bash "$SHARED/tools/vault-cli/build.sh"
else
  echo "== $SHARED/tools/vault-cli/build.sh not found: test/compat (the vault CLI suite) will fail under CI=true" >&2
fi

# Node 22 + npm dependencies (+ dist/ build).
source scripts/env.sh
# Python SDK from PyPI (pulumi==3.259.0) in a venv and the Python SDK generator, for the other-languages
# test (test/provider/python-consumer.test.ts, docs/pulumi.md "Other languages").
scripts/pulumi-python-sdk.sh --setup
