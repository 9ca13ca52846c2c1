#!/usr/bin/env bash
# The monitoring bundle has one source, config/monitoring/{rules.yaml,grafana-dashboard.json};
# this script derives the rest from it:
#   - config/monitoring/prometheusrule.yaml (the rule groups wrapped in a PrometheusRule),
#   - charts/nameplane/files/{prometheus-rules.yaml,grafana-dashboard.json} (the chart's copies;
#     a chart cannot read files outside its directory).
# `monitoring.sh sync` writes them (`make monitoring`); `monitoring.sh check` (chart-lint)
# fails when they are stale, runs `promtool check rules` on the rules, and checks the
# dashboard: valid JSON, every panel on the `${datasource}` variable, and every PromQL query
# valid (promtool parses them as recording rules, Grafana's `$__rate_interval` and variables
# replaced by literals).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
MODE=${1:-check}
SRC=config/monitoring
FILES=charts/nameplane/files
say() { printf '[monitoring] %s\n' "$*" >&2; }

render_prometheusrule() {
  cat <<'HEAD'
# Generated from rules.yaml by `make monitoring` (e2e/scripts/monitoring.sh): edit rules.yaml.
# The alerts for nameplane DNS servers as a Prometheus Operator PrometheusRule; series come
# from servicemonitor.yaml, which labels every DNS server's series with `dnsserver`.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: nameplane
  namespace: nameplane-system
  labels:
    app.kubernetes.io/part-of: nameplane
spec:
HEAD
  grep -v '^#' "$SRC/rules.yaml" | sed 's/^/  /'
}

case "$MODE" in
  sync)
    mkdir -p "$FILES"
    render_prometheusrule >"$SRC/prometheusrule.yaml"
    cp "$SRC/rules.yaml" "$FILES/prometheus-rules.yaml"
    cp "$SRC/grafana-dashboard.json" "$FILES/grafana-dashboard.json"
    say "wrote $SRC/prometheusrule.yaml and $FILES/"
    ;;
  check)
    failures=0
    if ! diff <(render_prometheusrule) "$SRC/prometheusrule.yaml" >/dev/null \
      || ! cmp -s "$SRC/rules.yaml" "$FILES/prometheus-rules.yaml" \
      || ! cmp -s "$SRC/grafana-dashboard.json" "$FILES/grafana-dashboard.json"; then
      say "FAIL: the monitoring copies are stale: run \`make monitoring\` and commit the result"
      failures=$((failures + 1))
    fi
    PROMTOOL=${PROMTOOL:-$(e2e/scripts/build-promtool.sh | tail -n 1)}
    if "$PROMTOOL" check rules "$SRC/rules.yaml" >&2; then
      say "ok: promtool check rules $SRC/rules.yaml"
    else
      say "FAIL: promtool check rules $SRC/rules.yaml"; failures=$((failures + 1))
    fi
    queries=$(mktemp --suffix=.yaml)
    trap 'rm -f "$queries"' EXIT
    if python3 - "$SRC/grafana-dashboard.json" "$queries" <<'PY'
import json, sys
dash = json.load(open(sys.argv[1]))
problems = []
if not dash.get("uid") or not dash.get("title"):
    problems.append("the dashboard needs a uid and a title")
names = {v["name"] for v in dash.get("templating", {}).get("list", [])}
if "datasource" not in names:
    problems.append("no `datasource` template variable")
exprs = []
for panel in dash.get("panels", []):
    title = panel.get("title", "?")
    if panel.get("datasource", {}).get("uid") != "${datasource}":
        problems.append(f"panel {title!r} does not use the ${{datasource}} variable")
    if not panel.get("targets"):
        problems.append(f"panel {title!r} has no query")
    for target in panel.get("targets", []):
        expr = target.get("expr", "")
        if not expr:
            problems.append(f"panel {title!r} has an empty query")
        exprs.append((title, expr))
ids = [p.get("id") for p in dash.get("panels", [])]
if len(ids) != len(set(ids)):
    problems.append("panel ids are not unique")
with open(sys.argv[2], "w") as out:
    out.write("groups:\n  - name: dashboard-queries\n    rules:\n")
    for i, (title, expr) in enumerate(exprs):
        literal = (expr.replace("$__rate_interval", "5m").replace('"$dnsserver"', '".+"'))
        if "$" in literal:
            problems.append(f"panel {title!r}: unknown variable in {expr!r}")
        out.write(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(literal)}\n")
for p in problems:
    print(f"[monitoring] FAIL: {p}", file=sys.stderr)
print(f"[monitoring] dashboard: {len(dash.get('panels', []))} panels, {len(exprs)} queries", file=sys.stderr)
sys.exit(1 if problems else 0)
PY
    then
      if "$PROMTOOL" check rules "$queries" >/dev/null 2>"$queries.err"; then
        say "ok: every dashboard query parses (promtool)"
      else
        cat "$queries.err" >&2
        say "FAIL: a dashboard query does not parse"; failures=$((failures + 1))
      fi
      rm -f "$queries.err"
    else
      failures=$((failures + 1))
    fi
    [ "$failures" = 0 ] || exit 1
    ;;
  *) say "usage: monitoring.sh sync|check"; exit 2 ;;
esac
