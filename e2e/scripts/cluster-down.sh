#!/usr/bin/env bash
# Stops the control plane started by cluster-up.sh: only the processes recorded in
# target/e2e/cluster/*.pid (each leads its own process group). SIGTERM to the group,
# up to 15 s grace, then SIGKILL. Idempotent; exits 0 when nothing was running.
# Keeps target/e2e/cluster/logs/ (and the PKI) for diagnosis; removes the pid files and
# target/e2e/kubeconfig, which would otherwise point at a dead server.
set -euo pipefail

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPTS/../.." && pwd)
E2E=$ROOT/target/e2e
D=$E2E/cluster
GRACE=${CLUSTER_DOWN_GRACE:-15}

say() { printf '[cluster-down] %s\n' "$*" >&2; }

[ -d "$E2E" ] || { say "nothing to stop."; exit 0; }

# cluster-up.sh calls us while it holds the lock.
if [ "${_NAMEPLANE_E2E_LOCK_HELD:-}" != 1 ]; then
  exec 9>"$E2E/.lock"
  if ! flock -n 9; then
    say "another cluster-up/cluster-down holds $E2E/.lock; waiting..."
    flock 9
  fi
fi

# Field N of /proc/PID/stat counted after the "(comm)" field: 1 = state, 3 = pgid.
# (Reads /proc directly: minimal images have no ps.)
stat_field() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f"$2"; }

# Alive = exists and is not a zombie (zombies are gone for our purposes, and an
# unreaped one must not make us wait).
alive() {
  local st
  st=$(stat_field "$1" 1) && [ -n "$st" ] && [ "$st" != Z ]
}

# Some member of process group $1 is still alive.
group_alive() {
  kill -0 -- "-$1" 2>/dev/null || return 1
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
    awk -v g="$1" '{ sub(/^.*\) /, ""); split($0, f, " "); if (f[3] == g && f[1] != "Z") { found = 1 } }
                   END { exit !found }'
}

# The recorded pid still runs our component (guards against pid reuse).
ours() { # name pid
  alive "$2" && tr '\0' ' ' <"/proc/$2/cmdline" 2>/dev/null | grep -q -- "/$1 "
}

stopped=0
# Reverse start order: the controller manager first, etcd last.
for name in kube-controller-manager kube-apiserver etcd; do
  f=$D/$name.pid
  [ -f "$f" ] || continue
  pid=$(cat "$f" 2>/dev/null || true)
  if [ -z "$pid" ] || ! ours "$name" "$pid"; then
    rm -f "$f"
    continue
  fi
  # cluster-up starts each component with setsid, so pid == pgid; fall back to the pid.
  pgid=$(stat_field "$pid" 3 || true)
  if [ "$pgid" = "$pid" ]; then target=(-- "-$pid"); check() { group_alive "$pid"; }
  else target=("$pid"); check() { alive "$pid"; }; fi
  say "stopping $name (pid $pid)..."
  kill -TERM "${target[@]}" 2>/dev/null || true
  deadline=$((SECONDS + GRACE))
  while check && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
  if check; then
    say "$name did not exit within ${GRACE}s; sending SIGKILL."
    kill -KILL "${target[@]}" 2>/dev/null || true
    deadline=$((SECONDS + 5))
    while check && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if check; then say "WARNING: $name (pid $pid) still alive after SIGKILL."; fi
  fi
  rm -f "$f"
  stopped=$((stopped + 1))
done
rm -f "$E2E/kubeconfig" "$E2E/kubeconfig.tmp"

if [ "$stopped" = 0 ]; then
  say "nothing was running."
else
  say "stopped $stopped component(s); logs kept in ${D#"$ROOT"/}/logs/."
fi
