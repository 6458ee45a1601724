#!/usr/bin/env bash
# Builds the Pulumi engine from the Go module proxy and installs it where Pulumi looks for it.
# Why: the official installer downloads from get.pulumi.com, which this machine (and CI) cannot reach;
# the Go module proxy is reachable and carries the engine's source.
#
# What is built (pinned; the proxy mirror here refuses other versions, see docs/pulumi.md):
#   pulumi                    CLI from github.com/pulumi/pulumi/pkg/v3 @ v$BK_PULUMI_VERSION
#   pulumi-language-nodejs    from github.com/pulumi/pulumi/sdk/v3 @ v$BK_PULUMI_LANG_VERSION
#   pulumi-language-python    same module (the last sdk release that still contains the language hosts;
#                             later ones moved them into untagged modules the proxy does not serve)
# plus the small launcher scripts the engine expects next to them (dynamic providers, Python exec).
#
# Result: ~/.cache/buckypaper/pulumi-<version>/bin (cache, keyed by version) copied to
# ~/.pulumi/versions/<version>/bin (where @pulumi/pulumi's automation API looks). scripts/env.sh puts
# that directory on PATH. Idempotent: a second run only checks versions. Network: Go proxy only.
#
# Env: BK_GO_JOBS (parallel compile jobs, default 2), BK_PULUMI_SKIP_PYTHON=1 (skip the Python host).
set -euo pipefail
BK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BK_PULUMI_VERSION="${BK_PULUMI_VERSION:-3.259.0}"
BK_PULUMI_LANG_VERSION="${BK_PULUMI_LANG_VERSION:-3.68.0}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/buckypaper/pulumi-$BK_PULUMI_VERSION"
DEST="$HOME/.pulumi/versions/$BK_PULUMI_VERSION/bin"
WRAPPERS="$BK_ROOT/scripts/pulumi-build"

log() { printf '\033[2m[pulumi]\033[0m %s\n' "$*" >&2; }

command -v go >/dev/null || { echo "setup-pulumi: Go toolchain not found (need Go >= 1.26)" >&2; exit 1; }
# sum.golang.org is not reachable here: integrity comes from the go.sum files committed next to the
# wrapper modules instead (a download that does not match them fails the build).
export GOSUMDB=off GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -mod=mod -p=${BK_GO_JOBS:-2} -trimpath"
GOMODCACHE="$(go env GOMODCACHE)"

# build NAME WRAPPER PACKAGE LDFLAGS ESTIMATE_S: go build PACKAGE inside a copy of scripts/pulumi-build/WRAPPER.
# The wrapper module only pins versions: `go install pkg@version` refuses modules with replace
# directives (pulumi's go.mod has them), a wrapper module does not. `go build` itself is silent for
# minutes, so a heartbeat says how long it has run against the cold-build estimate (2 cores).
build() {
  local name="$1" wrapper="$2" pkg="$3" ldflags="$4" estimate="$5" src="$CACHE/src-$2"
  mkdir -p "$src" "$CACHE/bin"
  cp "$WRAPPERS/$wrapper/go.mod" "$src/go.mod"
  if [ -f "$WRAPPERS/$wrapper/go.sum" ]; then cp "$WRAPPERS/$wrapper/go.sum" "$src/go.sum"; fi
  log "building $name ($pkg): about $(( (estimate + 59) / 60 )) min cold on 2 cores (downloads first), much less when Go's build cache is warm"
  local t0; t0=$(date +%s)
  (cd "$src" && nice -n 10 go build -ldflags "-s -w $ldflags" -o "$CACHE/bin/$name.tmp" "$pkg") &
  local pid=$! elapsed
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    elapsed=$(( $(date +%s) - t0 ))
    if [ $(( elapsed % 30 )) -lt 2 ] && kill -0 "$pid" 2>/dev/null; then
      if [ "$elapsed" -lt "$estimate" ]; then log "  $name: still compiling, ${elapsed}s elapsed, ~$(( estimate - elapsed ))s left (estimate)"
      else log "  $name: still compiling, ${elapsed}s elapsed (past the ${estimate}s estimate: a busy machine)"; fi
    fi
  done
  wait "$pid"
  mv "$CACHE/bin/$name.tmp" "$CACHE/bin/$name"
  log "built $name in $(( $(date +%s) - t0 ))s"
}

have_version() { [ -x "$1" ] && "$1" version 2>/dev/null | grep -q "$2"; }

# 1. CLI
if ! have_version "$CACHE/bin/pulumi" "v$BK_PULUMI_VERSION"; then
  build pulumi cli github.com/pulumi/pulumi/pkg/v3/cmd/pulumi \
    "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$BK_PULUMI_VERSION" 540
fi

# 2. Language hosts (same wrapper module, one download)
LANG_LDFLAGS="-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$BK_PULUMI_LANG_VERSION"
if [ ! -x "$CACHE/bin/pulumi-language-nodejs" ]; then
  build pulumi-language-nodejs lang github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs "$LANG_LDFLAGS" 90
fi
if [ "${BK_PULUMI_SKIP_PYTHON:-}" != 1 ] && [ ! -x "$CACHE/bin/pulumi-language-python" ]; then
  build pulumi-language-python lang github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python "$LANG_LDFLAGS" 60
fi

# 3. Launcher scripts shipped in the same source modules (the release tarball carries them too).
LANG_SRC="$GOMODCACHE/github.com/pulumi/pulumi/sdk/v3@v$BK_PULUMI_LANG_VERSION"
install -m 0755 "$LANG_SRC/nodejs/dist/pulumi-resource-pulumi-nodejs" "$CACHE/bin/"
if [ -x "$CACHE/bin/pulumi-language-python" ]; then
  install -m 0755 "$LANG_SRC/python/cmd/pulumi-language-python-exec" "$CACHE/bin/"
  install -m 0755 "$LANG_SRC/python/dist/pulumi-resource-pulumi-python" "$CACHE/bin/"
fi

# 4. Install where Pulumi looks (copy, not symlink: the CLI finds its language hosts next to the
# resolved path of its own executable, and ~/.pulumi must survive a cache wipe).
mkdir -p "$DEST"
for f in "$CACHE"/bin/*; do
  [ -f "$f" ] || continue
  case "$f" in *.tmp) continue;; esac
  if ! cmp -s "$f" "$DEST/$(basename "$f")"; then install -m 0755 "$f" "$DEST/"; fi
done
log "installed into $DEST: $(cd "$DEST" && ls | tr '\n' ' ')"
"$DEST/pulumi" version >&2
case ":$PATH:" in
  *":$DEST:"*) ;;
  *) log "pulumi is not on your PATH; for this shell: source scripts/pulumi-env.sh (adds $DEST and the offline file backend)" ;;
esac
