#!/usr/bin/env bash
# Tears down stacks/local: `pulumi destroy` stops every local VM and the runtime and removes their files
# (the simulated platform included). Env: BK_LOCAL_STACK (default local).
set -euo pipefail
BK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${BK_LOCAL_STACK:-local}"
# shellcheck source=env.sh
source "$BK_ROOT/scripts/env.sh"
# shellcheck source=pulumi-env.sh
source "$BK_ROOT/scripts/pulumi-env.sh"
cd "$BK_ROOT/stacks/local"
if ! pulumi stack select "$STACK" --non-interactive >/dev/null 2>&1; then echo "no stack '$STACK': nothing to destroy"; exit 0; fi
pulumi destroy --yes --non-interactive --skip-preview --suppress-progress --stack "$STACK"
