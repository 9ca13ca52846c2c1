#!/usr/bin/env bash
# Starts a real, throw-away Kubernetes control plane on loopback for the e2e tests:
# etcd + kube-apiserver + kube-controller-manager, no kubelet, no scheduler, plus a fake
# Node "fake-node" (status Ready) that tests bind Pods to.
#
# Idempotent: if the cluster recorded under target/e2e/ is running and ready, it only
# prints the kubeconfig path. Otherwise it builds/reuses the binaries
# (build-control-plane.sh), wipes target/e2e/cluster/ and starts a fresh cluster.
#
# Layout (relative to the repository root):
#   target/e2e/kubeconfig              admin kubeconfig (client cert in group system:masters)
#   target/e2e/bin/                    symlinks to kubectl, kube-apiserver, ... in the cache
#   target/e2e/cluster/pki/            CA, serving and client certs, SA key pair
#   target/e2e/cluster/logs/*.log      one log per component
#   target/e2e/cluster/*.pid           pids (= process-group ids) for cluster-down.sh
#   target/e2e/cluster/*.cmd           each component's command line, one argument a line
#                                      (apiserver.sh restarts kube-apiserver from it)
#
# Output: progress on stderr; the last stdout line is the absolute kubeconfig path.
# Environment: HARNESS_CACHE, K8S_VERSION, ETCD_VERSION (see build-control-plane.sh),
#   CLUSTER_UP_TIMEOUT (seconds per readiness wait, default 60),
#   KCM_CONTROLLERS (override the kube-controller-manager --controllers list).
set -euo pipefail

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPTS/../.." && pwd)
E2E=$ROOT/target/e2e
D=$E2E/cluster
P=$D/pki
LOGS=$D/logs
KUBECONFIG_OUT=$E2E/kubeconfig
KUBECTL=$E2E/bin/kubectl
TIMEOUT=${CLUSTER_UP_TIMEOUT:-60}
# Dual stack, so Services can have IPv4 and IPv6 cluster IPs (e2e covers AAAA and ip6.arpa).
SERVICE_CIDR=10.96.0.0/16,fd00:10:96::/112
SERVICE_APISERVER_IP=10.96.0.1
# No kubelet: node-lifecycle, pod-garbage-collector and taint-eviction stay off (they would
# mark fake-node NotReady, evict or delete its pods).
DEFAULT_CONTROLLERS=namespace-controller,garbage-collector-controller,deployment-controller
DEFAULT_CONTROLLERS+=,replicaset-controller,endpointslice-controller,endpointslice-mirroring-controller
DEFAULT_CONTROLLERS+=,endpoints-controller,serviceaccount-controller,serviceaccount-token-controller
DEFAULT_CONTROLLERS+=,root-ca-certificate-publisher-controller,clusterrole-aggregation-controller
CONTROLLERS=${KCM_CONTROLLERS:-$DEFAULT_CONTROLLERS}

say() { printf '[cluster-up] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
kc() { "$KUBECTL" --kubeconfig="$KUBECONFIG_OUT" "$@"; }

# A recorded pid counts as running only if it is alive, not a zombie, and still runs
# the expected binary (guards against pid reuse).
running() { # name
  local pid
  pid=$(cat "$D/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  [ "$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" != Z ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "/$1 "
}

cluster_ready() {
  [ -s "$KUBECONFIG_OUT" ] && [ -x "$KUBECTL" ] || return 1
  running etcd && running kube-apiserver && running kube-controller-manager || return 1
  kc --request-timeout=5s get --raw /readyz >/dev/null 2>&1
}

mkdir -p "$E2E"
# Serialise concurrent cluster-up/cluster-down calls (e.g. several test binaries).
exec 9>"$E2E/.lock"
if ! flock -n 9; then
  say "another cluster-up/cluster-down holds $E2E/.lock; waiting..."
  flock 9
fi

if cluster_ready; then
  say "cluster already running ($(kc config view --minify -o jsonpath='{.clusters[0].cluster.server}'))."
  echo "$KUBECONFIG_OUT"
  exit 0
fi

# Leftovers of a half-started or crashed cluster: stop them first (logs are kept).
_NAMEPLANE_E2E_LOCK_HELD=1 "$SCRIPTS/cluster-down.sh" >&2

# --- binaries --------------------------------------------------------------------------
say "locating control-plane binaries (build-control-plane.sh; builds only on a cold cache)..."
dirs=$("$SCRIPTS/build-control-plane.sh" 9>&-) || die "build-control-plane.sh failed"
KBIN=$(printf '%s\n' "$dirs" | tail -n 2 | head -n 1)
EBIN=$(printf '%s\n' "$dirs" | tail -n 1)
for b in "$KBIN/kube-apiserver" "$KBIN/kube-controller-manager" "$KBIN/kubectl" "$EBIN/etcd"; do
  [ -x "$b" ] || die "missing binary $b"
done
mkdir -p "$E2E/bin"
for b in "$KBIN/kube-apiserver" "$KBIN/kube-controller-manager" "$KBIN/kubectl" "$EBIN/etcd"; do
  ln -sfn "$b" "$E2E/bin/$(basename "$b")"
done

# --- fresh data dir + PKI ----------------------------------------------------------------
rm -rf "$D" "$KUBECONFIG_OUT"
mkdir -p "$P" "$LOGS"
say "generating PKI in ${P#"$ROOT"/}..."
(
  cd "$P"
  exec 2>"$LOGS/openssl.log"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
    -subj /CN=nameplane-e2e-ca
  openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver
  printf '%s\n' \
    "subjectAltName=IP:127.0.0.1,IP:$SERVICE_APISERVER_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
    'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' >srv.ext
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile srv.ext -out apiserver.crt
  openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=admin"
  printf '%s\n' 'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=clientAuth' >cli.ext
  openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile cli.ext -out admin.crt
  openssl genrsa -out sa.key 2048
  openssl rsa -in sa.key -pubout -out sa.pub
) || { cat "$LOGS/openssl.log" >&2; die "openssl failed"; }

# --- helpers ------------------------------------------------------------------------------
# N distinct free TCP ports on 127.0.0.1 (held open together so they are distinct).
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Starts a component in its own session/process group, detached from our stdio (so
# callers reading our stdout see EOF) and from every other inherited fd (the lock, pipes
# of the caller); records its pid (= its process-group id).
start() { # name binary args...
  local name=$1
  shift
  printf '%s\n' "$@" >"$D/$name.cmd"
  (
    for fd in "/proc/$BASHPID/fd"/*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
    done
    exec setsid "$@" </dev/null >"$LOGS/$name.log" 2>&1
  ) &
  echo $! >"$D/$name.pid"
}

fail_with_log() { # name message
  say "ERROR: $2"
  say "---- last lines of ${LOGS#"$ROOT"/}/$1.log ----"
  tail -n 40 "$LOGS/$1.log" >&2 || true
  say "----"
  exit 1
}

# poll name description command...: polls command until it succeeds (return 0), the
# component dies (return 2), or TIMEOUT passes (return 3).
poll() {
  local name=$1 deadline=$((SECONDS + TIMEOUT))
  shift 2
  until "$@" >/dev/null 2>&1; do
    running "$name" || return 2
    [ "$SECONDS" -lt "$deadline" ] || return 3
    sleep 0.2
  done
}

# wait_for name description command...: like poll, but fails the whole script.
wait_for() {
  local rc=0
  poll "$@" || rc=$?
  case $rc in
    0) ;;
    2) fail_with_log "$1" "$1 exited while waiting for $2" ;;
    *) fail_with_log "$1" "timed out after ${TIMEOUT}s waiting for $2" ;;
  esac
}

etcd_healthy_port() { etcd_healthy "$EP"; }
etcd_healthy() {
  python3 -c 'import sys, urllib.request
r = urllib.request.urlopen(sys.argv[1], timeout=2).read()
sys.exit(0 if b"\"health\":\"true\"" in r else 1)' "http://127.0.0.1:$1/health"
}

addr_in_use() { grep -q 'address already in use' "$LOGS/$1.log" 2>/dev/null; }

# On any failure from here on, stop what was started (logs stay for diagnosis).
ok=0
cleanup() {
  if [ "$ok" != 1 ]; then
    say "startup failed; stopping partial cluster (logs kept in ${LOGS#"$ROOT"/})."
    _NAMEPLANE_E2E_LOCK_HELD=1 "$SCRIPTS/cluster-down.sh" >&2 || true
  fi
}
trap cleanup EXIT

# --- etcd ---------------------------------------------------------------------------------
# A port picked as free can be taken by someone else before the component binds it:
# if the component dies with "address already in use", retry with new ports.
# start_with_retry name description pick-ports-fn launch-fn readiness-command...
start_with_retry() {
  local name=$1 what=$2 pick=$3 launch=$4 attempt rc
  shift 4
  for attempt in 1 2 3; do
    "$pick"
    "$launch"
    rc=0
    poll "$name" "$what" "$@" || rc=$?
    case $rc in
      0) return 0 ;;
      2) if addr_in_use "$name" && [ "$attempt" -lt 3 ]; then
           say "$name: port clash, retrying with other ports"
           continue
         fi
         fail_with_log "$name" "$name exited while waiting for $what" ;;
      *) fail_with_log "$name" "timed out after ${TIMEOUT}s waiting for $what" ;;
    esac
  done
}

pick_etcd_ports() { read -r EP PP < <(free_ports 2); }
launch_etcd() {
  say "starting etcd on 127.0.0.1:$EP..."
  rm -rf "$D/etcd"
  start etcd "$EBIN/etcd" --name=nameplane-e2e --data-dir="$D/etcd" \
    --listen-client-urls="http://127.0.0.1:$EP" --advertise-client-urls="http://127.0.0.1:$EP" \
    --listen-peer-urls="http://127.0.0.1:$PP" --initial-advertise-peer-urls="http://127.0.0.1:$PP" \
    --initial-cluster="nameplane-e2e=http://127.0.0.1:$PP" --initial-cluster-state=new \
    --unsafe-no-fsync=true
}
start_with_retry etcd "etcd /health" pick_etcd_ports launch_etcd etcd_healthy_port

# --- kubeconfig ---------------------------------------------------------------------------
write_kubeconfig() { # port
  local tmp=$KUBECONFIG_OUT.tmp
  rm -f "$tmp"
  {
    "$KUBECTL" --kubeconfig="$tmp" config set-cluster nameplane-e2e --server="https://127.0.0.1:$1" \
      --certificate-authority="$P/ca.crt" --embed-certs=true
    "$KUBECTL" --kubeconfig="$tmp" config set-credentials nameplane-e2e-admin \
      --client-certificate="$P/admin.crt" --client-key="$P/admin.key" --embed-certs=true
    "$KUBECTL" --kubeconfig="$tmp" config set-context nameplane-e2e --cluster=nameplane-e2e \
      --user=nameplane-e2e-admin
    "$KUBECTL" --kubeconfig="$tmp" config use-context nameplane-e2e
  } >/dev/null
  mv "$tmp" "$KUBECONFIG_OUT"
}

# --- kube-apiserver -----------------------------------------------------------------------
# The `kubernetes` Service endpoints cannot be 127.0.0.1 (Endpoints validation rejects
# loopback), hence --endpoint-reconciler-type=none: the Service exists without endpoints.
pick_apiserver_port() { read -r AP < <(free_ports 1); write_kubeconfig "$AP"; }
launch_apiserver() {
  say "starting kube-apiserver on https://127.0.0.1:$AP..."
  start kube-apiserver "$KBIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$EP" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$AP" \
    --endpoint-reconciler-type=none \
    --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
    --cert-dir="$D/apiserver" --client-ca-file="$P/ca.crt" --authorization-mode=RBAC \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --service-account-issuer="https://127.0.0.1:$AP" \
    --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
    --disable-admission-plugins=ServiceAccount --allow-privileged=true
}
start_with_retry kube-apiserver "kube-apiserver /readyz" pick_apiserver_port launch_apiserver \
  kc --request-timeout=5s get --raw /readyz

# --- kube-controller-manager ------------------------------------------------------------
say "starting kube-controller-manager..."
start kube-controller-manager "$KBIN/kube-controller-manager" --kubeconfig="$KUBECONFIG_OUT" \
  --leader-elect=false --secure-port=0 --use-service-account-credentials=false \
  --controllers="$CONTROLLERS" \
  --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt"

# --- fake node + readiness of the controllers -------------------------------------------
say "creating Node fake-node (Ready)..."
kc apply -f - >/dev/null <<'EOF' || die "could not create Node fake-node"
{"apiVersion": "v1", "kind": "Node",
 "metadata": {"name": "fake-node", "labels": {"kubernetes.io/hostname": "fake-node",
   "kubernetes.io/os": "linux"}}}
EOF
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
kc patch node fake-node --subresource=status --type=merge -p "$(cat <<EOF
{"status": {
  "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
    "message": "fake node of the nameplane e2e harness",
    "lastHeartbeatTime": "$now", "lastTransitionTime": "$now"}],
  "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": "fake-node"}],
  "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
  "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"}}}
EOF
)" >/dev/null || die "could not set the status of Node fake-node"

say "waiting for namespace default..."
wait_for kube-apiserver "namespace default" kc get namespace default
# The ServiceAccount controller creating default/default shows the KCM is working.
say "waiting for kube-controller-manager (ServiceAccount default/default)..."
wait_for kube-controller-manager "ServiceAccount default/default" kc -n default get serviceaccount default

ok=1
say "control plane ready; logs in ${LOGS#"$ROOT"/}/, stop with e2e/scripts/cluster-down.sh"
kc version >&2 || true
echo "$KUBECONFIG_OUT"
