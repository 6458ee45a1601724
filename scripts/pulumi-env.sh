#!/usr/bin/env bash
# Source me: environment for running the Pulumi engine offline against a local file backend.
# Tests (test/support/pulumi.ts) set the same variables; README and docs/pulumi.md use this file.
#   BK_PULUMI_STATE  state directory (default <repo>/.pulumi-state)
#   PULUMI_CONFIG_PASSPHRASE  kept if already set; the default is for local/test stacks only.
BK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BK_PULUMI_VERSION="${BK_PULUMI_VERSION:-3.259.0}"
if [ -x "$HOME/.pulumi/versions/$BK_PULUMI_VERSION/bin/pulumi" ]; then
  case ":$PATH:" in *":$HOME/.pulumi/versions/$BK_PULUMI_VERSION/bin:"*) ;; *) export PATH="$HOME/.pulumi/versions/$BK_PULUMI_VERSION/bin:$PATH";; esac
fi
export BK_PULUMI_STATE="${BK_PULUMI_STATE:-$BK_ROOT/.pulumi-state}"
mkdir -p "$BK_PULUMI_STATE"
export PULUMI_BACKEND_URL="file://$BK_PULUMI_STATE"
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE-buckypaper-local-only}"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_DISABLE_REGISTRY_RESOLVE=true
export PULUMI_SKIP_CONFIRMATIONS=true
export PULUMI_DIY_BACKEND_NO_LEGACY_WARNING=true
export PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK=true
