#!/usr/bin/env bash
# Builds promtool from the Go module proxy (no release downloads) and caches it by version,
# for `promtool check rules` on the shipped PrometheusRule (chart-lint). Prometheus tags its
# Go module v0.<minor*100+patch>.x (v0.316.0 is Prometheus 3.16.0).
#
# Output: $CACHE/bin/promtool-$VERSION/promtool; its path is the last stdout line. Progress
# on stderr. Environment: PROMTOOL_VERSION (default v0.316.0), HARNESS_CACHE (default
# $HOME/.cache/nameplane-harness).
set -euo pipefail

VERSION=${PROMTOOL_VERSION:-v0.316.0}
CACHE=${HARNESS_CACHE:-$HOME/.cache/nameplane-harness}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath
export GOMODCACHE=$CACHE/gomod GOCACHE=$CACHE/gobuild

PBIN=$CACHE/bin/promtool-$VERSION
say() { printf '[promtool] %s\n' "$*" >&2; }

if [ ! -x "$PBIN/promtool" ]; then
  command -v go >/dev/null || { say "ERROR: go is required to build promtool"; exit 1; }
  say "building promtool $VERSION from the Go module proxy (first time only: several minutes on 2 cores)."
  rm -rf "$PBIN.tmp" && mkdir -p "$PBIN.tmp"
  GOBIN=$PBIN.tmp go install -p 2 -ldflags "-s -w" "github.com/prometheus/prometheus/cmd/promtool@$VERSION"
  rm -rf "$PBIN" && mv "$PBIN.tmp" "$PBIN"
  say "promtool $VERSION built in $PBIN."
fi
say "$("$PBIN/promtool" --version 2>&1 | head -n 1) at $PBIN/promtool"
echo "$PBIN/promtool"
