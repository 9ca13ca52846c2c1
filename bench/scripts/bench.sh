#!/usr/bin/env bash
# `make bench` and `make bench-smoke`: installs the tools when missing (dnsperf, Knot DNS),
# builds CoreDNS from its Go module and the nameplane binaries, starts a fresh local control
# plane, runs nameplane-bench, and stops everything it started, also on failure or Ctrl-C.
#
# Results: target/bench/results.{md,json} (smoke: target/bench/smoke/).
# Knobs (see bench/README.md): BENCH_SETS, BENCH_QUICK, BENCH_SMOKE, BENCH_RUNS,
# BENCH_DURATION, COREDNS_VERSION, NAMEPLANE_PROFILE (release; the smoke uses debug).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
say() { printf '[bench] %s\n' "$*" >&2; }

missing=()
command -v dnsperf >/dev/null || missing+=(dnsperf)
command -v knotd >/dev/null || missing+=(knot)
command -v taskset >/dev/null || missing+=(util-linux)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (Debian packages)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) ||
    { say "could not install ${missing[*]}; install them yourself"; exit 1; }
fi
if [ "$(nproc)" -lt 2 ]; then
  say "WARNING: $(nproc) CPU: the servers (CPU 0) and dnsperf (CPU 1) cannot be pinned apart"
fi

# etcd keeps every object of the large set (and its snapshots) under target/e2e: a full disk
# kills it mid-run ("no space left on device" in target/e2e/cluster/logs/etcd.log).
free_mib=$(df -Pm "$ROOT" | awk 'NR==2 {print $4}')
if [ "${free_mib:-0}" -lt 3072 ]; then
  say "WARNING: only ${free_mib} MiB free on the disk of $ROOT; the large set needs about 3 GiB (etcd data, logs)"
fi

say "CoreDNS (built from its Go module on first use, then cached)"
COREDNS_BIN=$(bench/scripts/build-coredns.sh | tail -n 1)
export COREDNS_BIN

PROFILE=${NAMEPLANE_PROFILE:-release}
export NAMEPLANE_PROFILE=$PROFILE
say "building nameplane-dns, nameplane-operator and nameplane-bench ($PROFILE)"
if [ "$PROFILE" = release ]; then
  cargo build --release --bins -p nameplane-dns -p nameplane-operator -p nameplane-bench
else
  cargo build --bins -p nameplane-dns -p nameplane-operator -p nameplane-bench
fi

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
export BENCH_PIDFILE=$TARGET/bench/.pids
mkdir -p "$TARGET/bench"
: >"$BENCH_PIDFILE"
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # Processes nameplane-bench started (each leads its own process group); normally it has
  # stopped them already. Only pids it recorded, and only if they still run what it started.
  while read -r pid; do
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || continue
    if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -Eq 'coredns|nameplane-(dns|operator)|knotd'; then
      kill -TERM -- "-$pid" 2>/dev/null || true
    fi
  done <"$BENCH_PIDFILE"
  e2e/scripts/cluster-down.sh || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "starting a fresh local control plane"
e2e/scripts/cluster-down.sh
e2e/scripts/cluster-up.sh >/dev/null

# The harness (and what it starts without a CPU of its own: kubectl, the operator) runs on
# the load generator's CPU, never on the servers' CPU 0.
if [ "$(nproc)" -ge 2 ]; then
  taskset -c 1 "$TARGET/$PROFILE/nameplane-bench"
else
  "$TARGET/$PROFILE/nameplane-bench"
fi
