#!/usr/bin/env bash
# `make run`: the local control plane, nameplane's CRDs, the operator and the DNS server as
# local processes, the samples and a demo Service; prints a dig command that answers, then
# keeps running with both logs in the foreground until Ctrl-C, and cleans up.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
DNS_PORT=${DNS_PORT:-5353}
CLIENT_IP=${CLIENT_IP:-127.0.0.2}
# A loopback address that is neither a Pod's nor a Node's.
STRANGER_IP=${STRANGER_IP:-127.0.0.3}
HEALTH_PORT=${HEALTH_PORT:-8053}
say() { printf '\033[1m[run]\033[0m %s\n' "$*" >&2; }

pids=()
cleanup() {
  trap - EXIT INT TERM
  say "stopping operator, dns-server and the control plane"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  e2e/scripts/cluster-down.sh || true
}
trap cleanup EXIT INT TERM

command -v dig >/dev/null || say "dig is not installed (apt-get install bind9-dnsutils); the printed command needs it"
say "starting the local control plane (the first run builds it from Go modules and takes a while)"
KUBECONFIG_PATH=$(e2e/scripts/cluster-up.sh | tail -n 1)
KUBECTL="target/e2e/bin/kubectl --kubeconfig $KUBECONFIG_PATH"

say "building nameplane (cargo build)"
cargo build --bins -p nameplane-operator -p nameplane-dns

say "installing CRDs"
$KUBECTL apply --server-side --field-manager=nameplane-run --force-conflicts -f crds/ >/dev/null
for plural in dnsservers dnszones stubdomains rewriterules dnspolicies; do
  $KUBECTL wait --for=condition=Established --timeout=60s "crd/$plural.nameplane.io" >/dev/null
done
$KUBECTL create namespace nameplane-system --dry-run=client -o yaml | $KUBECTL apply -f - >/dev/null
say "applying config/samples/"
$KUBECTL apply -f config/samples/

prefix() { sed -u "s/^/$(printf '\033[36m')[$1]$(printf '\033[0m') /"; }
say "starting the operator"
target/debug/nameplane-operator --kubeconfig "$KUBECONFIG_PATH" \
  --metrics-listen "127.0.0.1:${OPERATOR_METRICS_PORT:-8081}" > >(prefix operator) 2>&1 &
pids+=($!)
say "starting the dns-server on 127.0.0.1:$DNS_PORT (UDP and TCP)"
target/debug/nameplane-dns --kubeconfig "$KUBECONFIG_PATH" \
  --config-map nameplane-system/cluster-dns-config \
  --listen "127.0.0.1:$DNS_PORT" --health-listen "127.0.0.1:$HEALTH_PORT" > >(prefix dns) 2>&1 &
pids+=($!)

say "creating the demo Service demo/hello"
$KUBECTL create namespace demo --dry-run=client -o yaml | $KUBECTL apply -f - >/dev/null
$KUBECTL apply -n demo -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Service
metadata:
  name: hello
spec:
  selector: {app: hello}
  ports:
  - {name: http, port: 80}
YAML
IP=$($KUBECTL get service hello -n demo -o jsonpath='{.spec.clusterIP}')

# The sample DNSServer refuses clients it cannot tie to a Pod (clients.unidentified: Deny)
# except node addresses (clients.nodes: 127.0.0.1 is Node fake-node's InternalIP). The demo
# asks from a Pod's address too: 127.0.0.2 (loopback), registered as the IP of Pod
# demo/client (no kubelet runs here, so the status is set by hand).
say "registering Pod demo/client with IP $CLIENT_IP (dig -b $CLIENT_IP asks as that Pod)"
$KUBECTL apply -n demo -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Pod
metadata:
  name: client
  labels: {app: client}
spec:
  nodeName: fake-node
  containers:
  - {name: client, image: registry.invalid/none}
YAML
$KUBECTL patch pod client -n demo --subresource=status --type=merge \
  -p "{\"status\":{\"podIP\":\"$CLIENT_IP\",\"podIPs\":[{\"ip\":\"$CLIENT_IP\"}]}}" >/dev/null

for _ in $(seq 1 100); do
  if [ "$(dig -b "$CLIENT_IP" @127.0.0.1 -p "$DNS_PORT" hello.demo.svc.cluster.local +short 2>/dev/null)" = "$IP" ]; then break; fi
  sleep 0.2
done
$KUBECTL get dnsservers -A
cat >&2 <<MSG

  nameplane is answering. Try:

    dig -b $CLIENT_IP @127.0.0.1 -p $DNS_PORT hello.demo.svc.cluster.local      # -> $IP
    dig -b $CLIENT_IP @127.0.0.1 -p $DNS_PORT +tcp hello.demo.svc.cluster.local
    dig @127.0.0.1 -p $DNS_PORT hello.demo.svc.cluster.local   # -> $IP: 127.0.0.1 is Node fake-node's address
    dig -b $STRANGER_IP @127.0.0.1 -p $DNS_PORT hello.demo.svc.cluster.local   # REFUSED: no Pod, no Node

  kubectl: $KUBECTL get dnsservers,dnszones,stubdomains,rewriterules,dnspolicies -A
  health:  curl http://127.0.0.1:$HEALTH_PORT/ready   metrics: curl http://127.0.0.1:$HEALTH_PORT/metrics
  Ctrl-C stops everything.

MSG
wait
