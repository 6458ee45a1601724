#!/usr/bin/env bash
# Source me (or call scripts/run) to get Node 22 and the project's dependencies on a fresh machine.
# Why: the machine ships Node 20, while @pulumi/pulumi and vitest need Node 22. The npm registry
# carries the official Node binaries as `node-linux-<arch>` packages with no install script, so we
# unpack one into .tools/ instead of depending on an installer that downloads from the internet.
set -euo pipefail
BK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BK_NODE_VERSION="${BK_NODE_VERSION:-22.23.3}"
BK_TOOLS="$BK_ROOT/.tools"

bk_log() { printf '\033[2m[setup]\033[0m %s\n' "$*" >&2; }

bk_node_ok() {
  local v; v="$("$1" -p 'process.versions.node' 2>/dev/null)" || return 1
  local major="${v%%.*}" rest="${v#*.}"; local minor="${rest%%.*}"
  [ "$major" -gt 22 ] || { [ "$major" -eq 22 ] && [ "$minor" -ge 12 ]; }
}

bk_ensure_node() {
  if command -v node >/dev/null 2>&1 && bk_node_ok node; then return 0; fi
  local dir="$BK_TOOLS/node-$BK_NODE_VERSION"
  if [ ! -x "$dir/bin/node" ]; then
    local arch; case "$(uname -m)" in x86_64) arch=x64;; aarch64|arm64) arch=arm64;; *) echo "unsupported arch $(uname -m)" >&2; return 1;; esac
    bk_log "installing Node $BK_NODE_VERSION from the npm registry (node-linux-$arch) into .tools/"
    local tmp; tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "node-linux-$arch@$BK_NODE_VERSION" >/dev/null)
    mkdir -p "$dir"
    tar xzf "$tmp"/node-linux-*.tgz -C "$dir" --strip-components=1
    rm -rf "$tmp"
  fi
  export PATH="$dir/bin:$PATH"
  bk_node_ok node || { echo "Node 22 setup failed" >&2; return 1; }
}

bk_ensure_deps() {
  local stamp="$BK_ROOT/node_modules/.bk-lock-hash" want
  want="$(sha256sum "$BK_ROOT/package-lock.json" | cut -c1-64)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    bk_log "installing npm dependencies (npm ci)"
    (cd "$BK_ROOT" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
  fi
}

bk_ensure_node
bk_ensure_deps
export PATH="$BK_ROOT/node_modules/.bin:$PATH"
# The Pulumi engine built by scripts/setup-pulumi.sh, when present.
if [ -x "$HOME/.pulumi/versions/${BK_PULUMI_VERSION:-3.259.0}/bin/pulumi" ]; then export PATH="$HOME/.pulumi/versions/${BK_PULUMI_VERSION:-3.259.0}/bin:$PATH"; fi
