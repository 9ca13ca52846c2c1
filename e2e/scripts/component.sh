#!/usr/bin/env bash
# Stops or starts one component of the cluster cluster-up.sh started (kube-apiserver or
# kube-controller-manager), with the same command line (same port, certificates, etcd), so
# tests can take the API away and bring it back while the rest keeps running.
#
#   e2e/scripts/component.sh NAME stop    SIGTERM to its process group, SIGKILL after 15 s
#   e2e/scripts/component.sh NAME kill    SIGKILL at once (a crash, as coredns/ci's pkill test)
#   e2e/scripts/component.sh NAME start   start it again from target/e2e/cluster/NAME.cmd;
#                                         kube-apiserver: wait for /readyz
#                                         (CLUSTER_UP_TIMEOUT, default 60 s)
#
# Serialised with cluster-up.sh/cluster-down.sh through target/e2e/.lock.
set -euo pipefail

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPTS/../.." && pwd)
E2E=$ROOT/target/e2e
D=$E2E/cluster
LOGS=$D/logs
NAME=${1:-}
case $NAME in
  kube-apiserver | kube-controller-manager) ;;
  *) printf '[component] usage: %s kube-apiserver|kube-controller-manager stop|kill|start\n' "$0" >&2; exit 1 ;;
esac
TIMEOUT=${CLUSTER_UP_TIMEOUT:-60}
GRACE=${CLUSTER_DOWN_GRACE:-15}

say() { printf '[component] %s: %s\n' "$NAME" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ -f "$D/$NAME.cmd" ] || die "no $D/$NAME.cmd: start the cluster with e2e/scripts/cluster-up.sh"

exec 9>"$E2E/.lock"
flock 9

# Same liveness rules as cluster-up.sh: alive, not a zombie, still our binary.
running() {
  local pid
  pid=$(cat "$D/$NAME.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  [ "$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" != Z ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "/$NAME "
}

ready() {
  "$E2E/bin/kubectl" --kubeconfig="$E2E/kubeconfig" --request-timeout=5s get --raw /readyz \
    >/dev/null 2>&1
}

kill_now() {
  if ! running; then
    say "$NAME is not running."
    return 0
  fi
  local pid
  pid=$(cat "$D/$NAME.pid")
  say "killing $NAME (pid $pid)..."
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  while running; do sleep 0.1; done
  say "$NAME killed."
}

stop() {
  if ! running; then
    say "$NAME is not running."
    return 0
  fi
  local pid deadline
  pid=$(cat "$D/$NAME.pid")
  say "stopping $NAME (pid $pid)..."
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + GRACE))
  while running && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  if running; then
    say "$NAME did not exit within ${GRACE}s; sending SIGKILL."
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    while running; do sleep 0.1; done
  fi
  say "$NAME stopped."
}

start() {
  if running; then
    say "$NAME is already running."
    return 0
  fi
  local args=() deadline
  mapfile -t args <"$D/$NAME.cmd"
  say "starting $NAME again with its recorded command line..."
  (
    for fd in "/proc/$BASHPID/fd"/*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
    done
    exec setsid "${args[@]}" </dev/null >>"$LOGS/$NAME.log" 2>&1
  ) &
  echo $! >"$D/$NAME.pid"
  deadline=$((SECONDS + TIMEOUT))
  if [ "$NAME" != kube-apiserver ]; then
    # No health port (--secure-port=0): running for a second is what can be checked.
    sleep 1
    running || { tail -n 30 "$LOGS/$NAME.log" >&2; die "$NAME exited while starting"; }
    say "$NAME running."
    return 0
  fi
  until ready; do
    running || { tail -n 30 "$LOGS/$NAME.log" >&2; die "$NAME exited while starting"; }
    [ "$SECONDS" -lt "$deadline" ] || die "$NAME not ready after ${TIMEOUT}s"
    sleep 0.2
  done
  say "$NAME ready."
}

case ${2:-} in
  stop) stop ;;
  kill) kill_now ;;
  start) start ;;
  *) die "usage: $0 $NAME stop|kill|start" ;;
esac
