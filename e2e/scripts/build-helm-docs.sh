#!/usr/bin/env bash
# Builds helm-docs from the Go module proxy (no release downloads) and caches it by version,
# for the chart README generated from values.yaml (`make chart-docs`; chart-lint checks it is
# fresh).
#
# Output: $CACHE/bin/helm-docs-$VERSION/helm-docs; its path is the last stdout line.
# Environment: HELM_DOCS_VERSION (default v1.14.2), HARNESS_CACHE (default
# $HOME/.cache/nameplane-harness).
set -euo pipefail

VERSION=${HELM_DOCS_VERSION:-v1.14.2}
CACHE=${HARNESS_CACHE:-$HOME/.cache/nameplane-harness}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath
export GOMODCACHE=$CACHE/gomod GOCACHE=$CACHE/gobuild

BIN=$CACHE/bin/helm-docs-$VERSION
say() { printf '[helm-docs] %s\n' "$*" >&2; }

if [ ! -x "$BIN/helm-docs" ]; then
  command -v go >/dev/null || { say "ERROR: go is required to build helm-docs"; exit 1; }
  say "building helm-docs $VERSION from the Go module proxy (first time only: a few minutes on 2 cores)."
  rm -rf "$BIN.tmp" && mkdir -p "$BIN.tmp"
  GOBIN=$BIN.tmp go install -p 2 -ldflags "-s -w" "github.com/norwoodj/helm-docs/cmd/helm-docs@$VERSION"
  rm -rf "$BIN" && mv "$BIN.tmp" "$BIN"
  say "helm-docs $VERSION built in $BIN."
fi
echo "$BIN/helm-docs"
