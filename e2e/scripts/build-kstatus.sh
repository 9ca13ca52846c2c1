#!/usr/bin/env bash
# Builds e2e/kstatus (a small Go program computing kstatus with sigs.k8s.io/cli-utils, the
# library Flux uses for `wait: true`) from the Go module proxy, and caches it by the content
# of its go.mod, go.sum and main.go, so later runs find it in place at once.
#
# Output: $CACHE/bin/kstatus-<digest>/kstatus; its path is the last stdout line. Progress on
# stderr. Environment: HARNESS_CACHE (default $HOME/.cache/nameplane-harness).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/../kstatus" && pwd)
CACHE=${HARNESS_CACHE:-$HOME/.cache/nameplane-harness}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath
export GOMODCACHE=$CACHE/gomod GOCACHE=$CACHE/gobuild

digest=$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-12)
KBIN=$CACHE/bin/kstatus-$digest
say() { printf '[kstatus] %s\n' "$*" >&2; }

if [ ! -x "$KBIN/kstatus" ]; then
  command -v go >/dev/null || { say "ERROR: go is required to build e2e/kstatus"; exit 1; }
  say "building e2e/kstatus (cli-utils $(grep -o 'cli-utils v[^ ]*' "$SRC/go.mod" | cut -d' ' -f2)) from the Go module proxy"
  rm -rf "$KBIN.tmp" && mkdir -p "$KBIN.tmp"
  (cd "$SRC" && go build -p 2 -mod=readonly -o "$KBIN.tmp/kstatus" .)
  rm -rf "$KBIN" && mv "$KBIN.tmp" "$KBIN"
  say "built in $KBIN."
fi
echo "$KBIN/kstatus"
