#!/usr/bin/env bash
# `npm run local`: the embedded default, end to end on this machine (docs/local-stack.md).
# Sets up what is missing (Node 22 + npm deps, the Pulumi engine, the pinned boot inputs, dist/), then
# builds (once, cached) the real guests' image, deploys stacks/local on the offline file backend and
# prints what was measured, registered, booted and attested, and how to ssh in to `web`.
# Idempotent: run it again and nothing changes. Tear down with scripts/local-down.sh.
# Env: BK_LOCAL_STACK (default local), BK_PULUMI_STATE (default <repo>/.pulumi-state),
#      BK_LOCAL_VMS=process (process-tree VMs even where real QEMU guests could run).
set -euo pipefail
BK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${BK_LOCAL_STACK:-local}"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "1/7 Node 22 and npm dependencies"
# shellcheck source=env.sh
source "$BK_ROOT/scripts/env.sh"
node --version

step "2/7 Pulumi engine (built from the Go module proxy on first use)"
"$BK_ROOT/scripts/setup-pulumi.sh"

step "3/7 Boot inputs of the process-tree fallback: firmware, kernel, initrd"
if [ ! -f /usr/share/ovmf/OVMF.fd ]; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -q --no-install-recommends ovmf >/dev/null; else
    echo "Debian's OVMF firmware is missing: sudo apt-get install ovmf" >&2; exit 1; fi
fi
"$BK_ROOT/scripts/fetch-boot-inputs.sh"
printf '  firmware  /usr/share/ovmf/OVMF.fd  sha256 %s\n' "$(sha256sum /usr/share/ovmf/OVMF.fd | cut -c1-16)…"
printf '  kernel    .bk/boot/vmlinuz         sha256 %s\n' "$(sha256sum "$BK_ROOT/.bk/boot/vmlinuz" | cut -c1-16)…"
printf '  initrd    .bk/boot/initrd.img      sha256 %s\n' "$(sha256sum "$BK_ROOT/.bk/boot/initrd.img" | cut -c1-16)…"

step "4/7 Build (tsc → dist/)"
# tsc emits even when it reports type errors; go on then (loudly) as long as the CLI was built.
if ! (cd "$BK_ROOT" && tsc -p tsconfig.json); then
  [ -f "$BK_ROOT/dist/cli/main.js" ] || { echo "build failed" >&2; exit 1; }
  echo "warning: tsc reported type errors (above); dist/ was emitted, continuing" >&2
fi
node "$BK_ROOT/scripts/bundle-cli.js"   # the bundled `buckypaper measure` fast path (optional)

step "5/7 Guest images: the kit image (dm-verity root) + AmdSev firmware for the VMs, and its runtime role for the vHSM's own guest (built once, then cached)"
T0=$(date +%s)
if [ "${BK_LOCAL_VMS:-auto}" = process ]; then
  echo "  BK_LOCAL_VMS=process: process-tree VMs, no guest image"
elif ! node "$BK_ROOT/bin/buckypaper.js" simulate guest-image; then
  echo "  → the VMs will be process trees (fast, but no guest kernel, cloud-init or sshd)"
elif ! node "$BK_ROOT/bin/buckypaper.js" simulate runtime-image; then
  echo "  → the vHSM runtime's own guest image could not be built: the runtime will not start" >&2
fi

step "6/7 Deploy stacks/local (stack '$STACK'): platform, runtime, registrations, VMs"
# shellcheck source=pulumi-env.sh
source "$BK_ROOT/scripts/pulumi-env.sh"
cd "$BK_ROOT/stacks/local"
pulumi stack select --create "$STACK" --non-interactive >/dev/null
echo "  registering each VM's expected launch measurement (and user-data hash), then booting the VMs;"
echo "  each VM's simulated PSP measures what it actually booted and its enclaivelet attests with that."
STATE_DIR="$(pulumi config get stateDir --stack "$STACK" 2>/dev/null || echo "$BK_ROOT/.bk/local/$STACK")"
node "$BK_ROOT/stacks/local/progress.ts" "$STATE_DIR" &
PROGRESS=$!
trap 'kill "$PROGRESS" 2>/dev/null || true' EXIT
T1=$(date +%s)
pulumi up --yes --non-interactive --skip-preview --suppress-progress --stack "$STACK"
kill "$PROGRESS" 2>/dev/null || true
echo "  image step $((T1 - T0)) s, deploy $(($(date +%s) - T1)) s"

step "7/7 Summary"
OUTPUTS="$(pulumi stack output --json --stack "$STACK")"
if [ "$OUTPUTS" = "{}" ]; then
  # Seen once on a first deploy of the full default (vHSM guest + eight guests, 11 min): every resource was
  # created but the engine recorded no stack outputs; a no-change update records them (cause not found).
  echo "  the engine recorded no stack outputs for this update; recording them with a no-change update"
  pulumi up --yes --non-interactive --skip-preview --suppress-progress --stack "$STACK" >/dev/null
  OUTPUTS="$(pulumi stack output --json --stack "$STACK")"
fi
printf '%s\n' "$OUTPUTS" | node "$BK_ROOT/stacks/local/summary.ts"
echo
echo "Tear down: scripts/local-down.sh   (pulumi destroy: stops the guests and the runtime, removes their files)"
echo "Run pulumi yourself (it is not on your PATH otherwise): source scripts/env.sh; source scripts/pulumi-env.sh; cd stacks/local"
