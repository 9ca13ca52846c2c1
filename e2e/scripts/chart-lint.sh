#!/usr/bin/env bash
# Static checks of the packaging, no cluster needed (`make chart-lint`, part of `make test`):
#   - charts/nameplane/crds/ and config/crd/bases/ are byte-identical copies of crds/
#     (`make chart-crds` syncs them);
#   - `helm lint` and `helm lint --strict` pass with the default values, with
#     dnsServer.enabled=true and with every value set (e2e/testdata/chart/full-values.yaml);
#   - `helm template` renders those, and the default DNSServer only when it is enabled;
#   - values.schema.json rejects bad values (a string for a number, an unknown key, ...);
#   - `kubectl kustomize` builds config/default, config/samples and config/monitoring;
#   - charts/nameplane/README.md is what helm-docs generates (`make chart-docs`);
#   - the monitoring bundle: copies fresh, `promtool check rules`, the dashboard's queries
#     parse (e2e/scripts/monitoring.sh check).
# helm comes from build-helm.sh, kubectl from build-control-plane.sh (both cached).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CHART=charts/nameplane
say() { printf '[chart-lint] %s\n' "$*" >&2; }
failures=0
fail() { say "FAIL: $*"; failures=$((failures + 1)); }

HELM=${HELM:-$(e2e/scripts/build-helm.sh | tail -n 1)}
KUBECTL=${KUBECTL:-$(e2e/scripts/build-control-plane.sh | tail -n 2 | head -n 1)/kubectl}

for copy in "$CHART/crds" config/crd/bases; do
  if diff -r crds "$copy" >/dev/null; then
    say "ok: $copy is identical to crds/"
  else
    diff -r crds "$copy" | head -n 20 >&2 || true
    fail "$copy differs from crds/: run \`make chart-crds\` and commit the result"
  fi
done

values_sets=("" "--set dnsServer.enabled=true" "-f e2e/testdata/chart/full-values.yaml")
for values in "${values_sets[@]}"; do
  for strict in "" --strict; do
    # shellcheck disable=SC2086
    if out=$("$HELM" lint $strict "$CHART" $values 2>&1); then
      say "ok: helm lint $strict ${values:-(default values)}"
    else
      printf '%s\n' "$out" >&2
      fail "helm lint $strict $values"
    fi
  done
  # shellcheck disable=SC2086
  if rendered=$("$HELM" template nameplane "$CHART" --namespace nameplane-system $values 2>&1); then
    kinds=$(printf '%s\n' "$rendered" | grep -c '^kind: ' || true)
    say "ok: helm template ${values:-(default values)}: $kinds objects"
    has_server=$(printf '%s\n' "$rendered" | grep -c '^kind: DNSServer$' || true)
    if [ -z "$values" ] && [ "$has_server" != 0 ]; then fail "a DNSServer is rendered with dnsServer.enabled=false"; fi
    if [ -n "$values" ] && [ "$has_server" != 1 ]; then fail "no DNSServer rendered with $values"; fi
  else
    printf '%s\n' "$rendered" >&2
    fail "helm template $values"
  fi
done

# Each of these must be refused by values.schema.json.
bad_values=(
  operator.replicas=two
  operator.replicas=-1
  dnsServer.replicas=0
  dnsServer.ttlSeconds=99999
  dnsServer.clusterDomain=bad_domain!
  'dnsServer.upstreams={dns.example.com}'
  dnsServer.cache.capacity=0
  dnsServer.tenantDomainSuffix=under_score
  dnsServer.cache.unknown=1
  dnsServer.ipFamilyPolicy=DualStack
  'dnsServer.ipFamilies={IPv5}'
  dnsServer.autoscaling.mode=Fixed
  dnsServer.autoscaling.nodesPerReplica=0
  dnsServer.kubeDNSLabel=yes-please
  'dnsServer.clusterIPs={dns.example.com}'
  image.pullPolicy=Sometimes
  image.digest=latest
  metrics.service.port=70000
  unknownTopLevelKey=1
  'dnsServerNamespaces={Team_A}'
)
for bad in "${bad_values[@]}"; do
  if out=$("$HELM" template nameplane "$CHART" --set "$bad" 2>&1); then
    fail "the schema accepted --set $bad"
  elif printf '%s\n' "$out" | grep -q "don't meet the specifications of the schema"; then
    say "ok: schema rejects --set $bad: $(printf '%s\n' "$out" | grep '^- at' | head -n 1)"
  else
    printf '%s\n' "$out" >&2
    fail "--set $bad failed, but not because of the schema"
  fi
done

# The default DNSServer lives in the release namespace, so that namespace must be allowed.
if out=$("$HELM" template nameplane "$CHART" --namespace nameplane-system --set dnsServer.enabled=true --set 'dnsServerNamespaces={dns}' 2>&1); then
  fail "the chart renders a default DNSServer in a namespace dnsServerNamespaces leaves out"
elif printf '%s\n' "$out" | grep -q "which dnsServerNamespaces leaves out"; then
  say "ok: a default DNSServer outside dnsServerNamespaces is refused"
else
  printf '%s\n' "$out" >&2
  fail "dnsServer.enabled with dnsServerNamespaces={dns} failed for another reason"
fi

for dir in config/default config/samples config/monitoring; do
  if out=$("$KUBECTL" kustomize "$dir" 2>&1); then
    say "ok: kubectl kustomize $dir: $(printf '%s\n' "$out" | grep -c '^kind: ') objects"
  else
    printf '%s\n' "$out" >&2
    fail "kubectl kustomize $dir"
  fi
done

# The monitoring bundle renders with every part on, with the rules and dashboard inside.
if out=$("$HELM" template nameplane "$CHART" --namespace nameplane-system -f e2e/testdata/chart/full-values.yaml 2>&1) \
  && [ "$(printf '%s\n' "$out" | grep -c '^kind: ServiceMonitor$')" = 2 ] \
  && printf '%s\n' "$out" | grep -q 'alert: NameplaneDNSServfailRatioHigh' \
  && printf '%s\n' "$out" | grep -q '"uid": "nameplane-dns"'; then
  say "ok: the chart's monitoring bundle renders (2 ServiceMonitors, rules, dashboard)"
else
  fail "the chart's monitoring bundle does not render as expected"
fi
# The chart README is what helm-docs makes of Chart.yaml, values.yaml and the template.
HELM_DOCS=${HELM_DOCS:-$(e2e/scripts/build-helm-docs.sh | tail -n 1)}
if diff <("$HELM_DOCS" --chart-search-root charts --skip-version-footer --dry-run 2>/dev/null) "$CHART/README.md" >/dev/null; then
  say "ok: $CHART/README.md is what helm-docs generates"
else
  fail "$CHART/README.md is stale: run \`make chart-docs\` and commit the result"
fi

if e2e/scripts/monitoring.sh check; then
  say "ok: monitoring bundle"
else
  fail "monitoring bundle (e2e/scripts/monitoring.sh check)"
fi

if [ "$failures" != 0 ]; then
  say "$failures check(s) failed"
  exit 1
fi
say "all packaging checks passed"
