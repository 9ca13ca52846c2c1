#!/usr/bin/env bash
# Builds CoreDNS from its Go module (github.com/coredns/coredns, no replace directives, so a
# plain `go install module@version` works through the Go module proxy) and caches the binary
# by version, like e2e/scripts/build-control-plane.sh does for the control plane.
#
# Output: $CACHE/bin/coredns-$VER/coredns; its path is the last stdout line. Progress goes to
# stderr. A cached binary is reused at once.
# Environment: COREDNS_VERSION (default v1.14.7, the newest v1.14.x the Go proxy served when
#   this was written), HARNESS_CACHE (default $HOME/.cache/nameplane-harness).
set -euo pipefail

VER=${COREDNS_VERSION:-v1.14.7}
CACHE=${HARNESS_CACHE:-$HOME/.cache/nameplane-harness}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath
export GOMODCACHE=$CACHE/gomod GOCACHE=$CACHE/gobuild

BIN=$CACHE/bin/coredns-$VER
say() { printf '[coredns] %s\n' "$*" >&2; }

if [ -x "$BIN/coredns" ]; then
  echo "$BIN/coredns"
  exit 0
fi
command -v go >/dev/null || { say "ERROR: go (1.25 or later) is needed to build CoreDNS"; exit 1; }
say "building CoreDNS $VER from the Go module proxy (first time only: a few minutes on 2 cores; cached in $BIN)."
started=$SECONDS
rm -rf "$BIN.tmp"
mkdir -p "$BIN.tmp"
# -p 2: this machine class has two cores. GitCommit as CoreDNS's own Makefile sets it.
GOBIN=$BIN.tmp go install -p 2 \
  -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$VER" \
  "github.com/coredns/coredns@$VER"
"$BIN.tmp/coredns" -version >&2
rm -rf "$BIN" && mv "$BIN.tmp" "$BIN"
say "CoreDNS $VER built in $((SECONDS - started)) s."
echo "$BIN/coredns"
