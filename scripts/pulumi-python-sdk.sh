#!/usr/bin/env bash
# Generates and installs the Python SDK of the buckypaper components (pulumi_buckypaper) from the
# component provider plugin, with the engine built by scripts/setup-pulumi.sh.
#
#   scripts/pulumi-python-sdk.sh OUT_DIR      -> OUT_DIR/schema.json, OUT_DIR/sdk (sources),
#                                                OUT_DIR/site (installed; put it on PYTHONPATH)
#   scripts/pulumi-python-sdk.sh --setup      -> only prepare the venv and the generator (ci-deps.sh)
#
# Steps: `pulumi package get-schema bin/pulumi-resource-buckypaper` (the plugin infers the schema from
# the TypeScript source), SDK generation with pkg/v3/codegen/python (scripts/pulumi-build/sdkgen: the
# Python language host buildable here predates GeneratePackage, so `pulumi package gen-sdk` cannot),
# then `pip install --target` into the venv's interpreter. Needs dist/ (npm run build).
#
# Env: BK_PULUMI_PYTHON_VENV (default ~/.cache/buckypaper/pulumi-python-venv, created with the PyPI
# Python SDK pulumi==$BK_PULUMI_VERSION), BK_PULUMI_VERSION (default 3.259.0).
set -euo pipefail
BK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BK_PULUMI_VERSION="${BK_PULUMI_VERSION:-3.259.0}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/buckypaper"
VENV="${BK_PULUMI_PYTHON_VENV:-$CACHE/pulumi-python-venv}"
SDKGEN="$CACHE/sdkgen-$BK_PULUMI_VERSION/buckypaper-sdkgen"
log() { printf '\033[2m[python-sdk]\033[0m %s\n' "$*" >&2; }

# Python SDK from PyPI at the CLI's version, plus what generated SDKs import and need to install.
if ! "$VENV/bin/python" -c "import pulumi, parver, semver, wheel, setuptools" 2>/dev/null \
   || [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("pulumi"))')" != "$BK_PULUMI_VERSION" ]; then
  log "creating $VENV (pulumi==$BK_PULUMI_VERSION from PyPI)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "pulumi==$BK_PULUMI_VERSION" "parver>=0.2.1" "semver>=2.8.1" wheel setuptools
fi

if [ ! -x "$SDKGEN" ]; then
  command -v go >/dev/null || { echo "pulumi-python-sdk: Go toolchain not found (need Go >= 1.26)" >&2; exit 1; }
  src="$CACHE/sdkgen-$BK_PULUMI_VERSION/src"
  mkdir -p "$src" "$(dirname "$SDKGEN")"
  cp "$BK_ROOT"/scripts/pulumi-build/sdkgen/{go.mod,go.sum,main.go} "$src/"
  log "building buckypaper-sdkgen (pkg/v3 v$BK_PULUMI_VERSION codegen/python)"
  (cd "$src" && GOSUMDB=off GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -mod=mod -p=${BK_GO_JOBS:-2} -trimpath" \
    nice -n 10 go build -ldflags "-s -w" -o "$SDKGEN.tmp" .)
  mv "$SDKGEN.tmp" "$SDKGEN"
fi
[ "${1:-}" = "--setup" ] && exit 0

OUT="${1:?usage: scripts/pulumi-python-sdk.sh OUT_DIR | --setup}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
source "$BK_ROOT/scripts/pulumi-env.sh"
for d in "$BK_ROOT"/.tools/node-*/bin; do [ -x "$d/node" ] && export BK_NODE="${BK_NODE:-$d/node}"; done
log "pulumi package get-schema bin/pulumi-resource-buckypaper"
# From OUT: at the repository root the CLI refuses to load a project that has both Pulumi.yaml and PulumiPlugin.yaml.
(cd "$OUT" && pulumi package get-schema "$BK_ROOT/bin/pulumi-resource-buckypaper" > "$OUT/schema.json.tmp")
mv "$OUT/schema.json.tmp" "$OUT/schema.json"
rm -rf "$OUT/sdk" "$OUT/site"
"$SDKGEN" "$OUT/schema.json" "$OUT/sdk"
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation --no-index --target "$OUT/site" "$OUT/sdk"
log "installed pulumi_buckypaper into $OUT/site"
