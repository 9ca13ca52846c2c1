#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kubectl from the Go module
# proxy (no Docker, no release downloads) and caches them by version, so that every
# later run finds them in place and starts in seconds.
#
# Output: $CACHE/bin/k8s-$K8S/{kube-apiserver,kube-controller-manager,kubectl} and
#         $CACHE/bin/etcd-$ETCD/etcd; the paths are printed on the last lines.
set -euo pipefail

K8S=${K8S_VERSION:-v1.35.4}
ETCD=${ETCD_VERSION:-v3.6.14}
CACHE=${HARNESS_CACHE:-$HOME/.cache/nameplane-harness}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath
export GOMODCACHE=$CACHE/gomod GOCACHE=$CACHE/gobuild

KBIN=$CACHE/bin/k8s-$K8S
EBIN=$CACHE/bin/etcd-$ETCD
say() { printf '[control-plane] %s\n' "$*" >&2; }

build_k8s() {
  if [ -x "$KBIN/kube-apiserver" ] && [ -x "$KBIN/kube-controller-manager" ] && [ -x "$KBIN/kubectl" ]; then
    return
  fi
  local stg=v0.${K8S#v1.} minor
  minor=$(echo "$K8S" | cut -d. -f2)
  local w=$CACHE/src/k8s-$K8S
  mkdir -p "$w" && cd "$w"
  say "building Kubernetes $K8S (kube-apiserver, kube-controller-manager, kubectl) from the Go module proxy."
  say "first time only: about 5-10 minutes on 2 cores; cached in $KBIN afterwards."
  printf 'module local/kubebins\n\ngo 1.25.0\n' > go.mod
  local kmod
  kmod=$(go mod download -json "k8s.io/kubernetes@$K8S" | sed -n 's/.*"GoMod": "\([^"]*\)".*/\1/p')
  go mod edit -go="$(awk '$1=="go"{print $2; exit}' "$kmod")"
  grep '^godebug ' "$kmod" >> go.mod || true
  go mod edit -require="k8s.io/kubernetes@$K8S"
  awk '/=> \.\/staging\//{for(i=2;i<=NF;i++) if($i=="=>") print $(i-1)}' "$kmod" |
    while read -r m; do go mod edit -replace="$m=$m@$stg"; done
  go mod edit -tool=k8s.io/kubernetes/cmd/kube-apiserver \
    -tool=k8s.io/kubernetes/cmd/kube-controller-manager -tool=k8s.io/kubernetes/cmd/kubectl
  say "resolving modules (go mod tidy)..."
  go mod tidy
  local v="-X k8s.io/component-base/version.gitVersion=$K8S -X k8s.io/component-base/version.gitMajor=1 \
-X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean \
-X k8s.io/component-base/version.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  v="$v $(echo "$v" | sed 's#component-base/version#client-go/pkg/version#g')"
  mkdir -p "$KBIN.tmp"
  for cmd in kube-apiserver kube-controller-manager kubectl; do
    say "compiling $cmd ($(date +%H:%M:%S))..."
    go build -p 2 -ldflags "-s -w $v" -o "$KBIN.tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd"
  done
  rm -rf "$KBIN" && mv "$KBIN.tmp" "$KBIN"
  say "Kubernetes $K8S built ($(date +%H:%M:%S))."
}

build_etcd() {
  if [ -x "$EBIN/etcd" ]; then
    return
  fi
  local w=$CACHE/src/etcd-$ETCD
  mkdir -p "$w" && cd "$w"
  say "building etcd $ETCD from the Go module proxy (first time only: a few minutes)."
  printf 'module local/etcdbin\n\ngo 1.25.0\n' > go.mod
  go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD" -tool=go.etcd.io/etcd/server/v3
  go mod tidy
  mkdir -p "$EBIN.tmp"
  go build -p 2 -ldflags "-s -w" -o "$EBIN.tmp/etcd" go.etcd.io/etcd/server/v3
  rm -rf "$EBIN" && mv "$EBIN.tmp" "$EBIN"
  say "etcd $ETCD built."
}

build_etcd
build_k8s
echo "$KBIN"
echo "$EBIN"
