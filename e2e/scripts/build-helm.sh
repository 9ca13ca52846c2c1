#!/usr/bin/env bash
# Builds helm from the Go module proxy (no release downloads) with `go install` and the
# version ldflags of helm's own Makefile, and caches it by version, so later runs find it
# in place at once.
#
# Output: $CACHE/bin/helm-$HELM/helm; its path is the last stdout line. Progress on stderr.
# Environment: HELM_VERSION (default v3.21.4), HARNESS_CACHE (default
#   $HOME/.cache/nameplane-harness), K8S_VERSION (default v1.35.4: the Kubernetes version
#   helm assumes offline, for `helm template` and `helm lint`).
set -euo pipefail

HELM=${HELM_VERSION:-v3.21.4}
K8S=${K8S_VERSION:-v1.35.4}
CACHE=${HARNESS_CACHE:-$HOME/.cache/nameplane-harness}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath
export GOMODCACHE=$CACHE/gomod GOCACHE=$CACHE/gobuild

HBIN=$CACHE/bin/helm-$HELM
say() { printf '[helm] %s\n' "$*" >&2; }

if [ ! -x "$HBIN/helm" ]; then
  command -v go >/dev/null || { say "ERROR: go is required to build helm"; exit 1; }
  major=${HELM#v}; major=${major%%.*}
  mod=helm.sh/helm/v$major
  kmajor=$(echo "${K8S#v}" | cut -d. -f1)
  kminor=$(echo "${K8S#v}" | cut -d. -f2)
  ldflags="-s -w -X $mod/internal/version.version=$HELM"
  if [ "$major" = 3 ]; then
    ldflags="$ldflags -X $mod/pkg/chartutil.k8sVersionMajor=$kmajor -X $mod/pkg/chartutil.k8sVersionMinor=$kminor"
    ldflags="$ldflags -X $mod/pkg/lint/rules.k8sVersionMajor=$kmajor -X $mod/pkg/lint/rules.k8sVersionMinor=$kminor"
  fi
  say "building helm $HELM from the Go module proxy (first time only: a few minutes on 2 cores)."
  rm -rf "$HBIN.tmp" && mkdir -p "$HBIN.tmp"
  GOBIN=$HBIN.tmp go install -p 2 -ldflags "$ldflags" "$mod/cmd/helm@$HELM"
  rm -rf "$HBIN" && mv "$HBIN.tmp" "$HBIN"
  say "helm $HELM built in $HBIN."
fi
say "$("$HBIN/helm" version --short) at $HBIN/helm"
echo "$HBIN/helm"
