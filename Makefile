# nameplane: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
DNS_PORT ?= 5353
export DNS_PORT
# cargo-deny for `make deny`, installed with `cargo install --locked` when missing. 0.20.2 needs
# rustc 1.88 or later and builds with the toolchain pinned in rust-toolchain.toml (about 2 min).
CARGO_DENY_VERSION := 0.20.2

##@ Getting started

.PHONY: run
run: ## Local control plane + CRDs + operator + dns-server + samples; prints a dig command (Ctrl-C stops all)
	e2e/scripts/run.sh

.PHONY: test
test: deps fmt-check deny lint unit chart-lint e2e torture-smoke bench-smoke ## Everything CI checks: format, cargo-deny, clippy, unit tests, chart lint, e2e on a real control plane, torture smoke, bench smoke

##@ Development

.PHONY: deps
deps: ## Install what the tests need (dig; Knot as a zone-transfer secondary and torture upstream; lua5.4 for the Argo CD health check; dnsperf for the torture flood) when missing
	@command -v dig >/dev/null && command -v dnsperf >/dev/null && command -v lua5.4 >/dev/null && { command -v knotd || test -x /usr/sbin/knotd; } >/dev/null || { \
	  echo "[deps] installing dig (bind9-dnsutils), Knot (knot), Lua (lua5.4) and dnsperf"; \
	  (apt-get update -qq && apt-get install -y -qq bind9-dnsutils knot lua5.4 dnsperf >/dev/null) || \
	  { echo "[deps] could not install bind9-dnsutils, knot, lua5.4 and dnsperf; install them yourself"; exit 1; }; }

.PHONY: build
build: ## Build every binary (debug)
	$(CARGO) build --workspace --bins

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: fmt-check
fmt-check: ## Fail when the code is not formatted
	$(CARGO) fmt --all -- --check

.PHONY: cargo-deny
cargo-deny: ## Install the pinned cargo-deny (CARGO_DENY_VERSION) when missing
	@if [ "$$($(CARGO) deny --version 2>/dev/null)" != "cargo-deny $(CARGO_DENY_VERSION)" ]; then \
	  echo "[deny] installing cargo-deny $(CARGO_DENY_VERSION) from crates.io (about 2 min on 2 cores)"; \
	  $(CARGO) install --locked cargo-deny --version $(CARGO_DENY_VERSION); fi

.PHONY: deny
deny: cargo-deny ## cargo-deny per deny.toml: licenses, bans (a new duplicate version, wildcards), sources (crates.io only); no advisories (no network for their database)
	$(CARGO) deny check licenses bans sources

.PHONY: lint
lint: ## Clippy on every target, warnings are errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: unit
unit: ## Unit and integration tests that need no cluster (includes the stale-CRD check)
	$(CARGO) test --workspace --exclude nameplane-e2e

.PHONY: crds
crds: ## Regenerate crds/ and the dnsServer part of the chart values schema from the Rust types in operator/src/api/
	$(CARGO) run -q -p nameplane-operator --bin crdgen -- crds charts/nameplane/values.schema.json

.PHONY: golden
golden: ## Rewrite the renderer's golden files after an intended change
	UPDATE_GOLDEN=1 $(CARGO) test -p nameplane-operator golden

##@ Local control plane (etcd + kube-apiserver + kube-controller-manager, built from Go modules)

.PHONY: cluster-up
cluster-up: ## Start the local control plane (idempotent); prints the kubeconfig path
	e2e/scripts/cluster-up.sh

.PHONY: cluster-down
cluster-down: ## Stop everything cluster-up started
	e2e/scripts/cluster-down.sh

.PHONY: e2e
e2e: deps build ## End-to-end tests: fresh control plane, real binaries, dig over UDP and TCP
	e2e/scripts/cluster-down.sh
	e2e/scripts/cluster-up.sh
	bench/scripts/build-coredns.sh >/dev/null  # for coredns_differential/coredns_cutover; cached by version
	status=0; $(CARGO) test -p nameplane-e2e -- --test-threads=1 --nocapture --skip under_attack || status=$$?; \
	  e2e/scripts/cluster-down.sh; exit $$status

##@ Packaging

.PHONY: helm
helm: ## Build helm from its Go module (cached by version); prints its path
	@e2e/scripts/build-helm.sh

.PHONY: kstatus
kstatus: ## Build e2e/kstatus (cli-utils kstatus, as Flux computes it) from its Go module (cached); prints its path
	@e2e/scripts/build-kstatus.sh

.PHONY: chart-crds
chart-crds: ## Copy the generated crds/ into charts/nameplane/crds/ and config/crd/bases/
	for d in charts/nameplane/crds config/crd/bases; do rm -f $$d/*.yaml && cp crds/*.yaml $$d/; done

.PHONY: monitoring
monitoring: ## Derive config/monitoring/prometheusrule.yaml and the chart's copies from rules.yaml and the dashboard
	e2e/scripts/monitoring.sh sync

.PHONY: chart-docs
chart-docs: ## Regenerate charts/nameplane/README.md from Chart.yaml, values.yaml and README.md.gotmpl (helm-docs)
	$$(e2e/scripts/build-helm-docs.sh | tail -n 1) --chart-search-root charts --skip-version-footer

.PHONY: chart-lint
chart-lint: ## Chart and kustomize checks: CRD copies fresh, helm lint --strict, schema rejects bad values
	e2e/scripts/chart-lint.sh

##@ Benchmarks

.PHONY: bench
bench: ## nameplane vs CoreDNS (+ Knot ceiling) on the local control plane -> target/bench/results.md (45-60 min est.; BENCH_SETS=small, BENCH_QUICK=1)
	bench/scripts/bench.sh

.PHONY: bench-smoke
bench-smoke: ## Pipeline check of make bench: tiny set, one 1 s run per point, no performance threshold (~2 min)
	BENCH_SMOKE=1 NAMEPLANE_PROFILE=debug bench/scripts/bench.sh

##@ Adversarial suite

.PHONY: torture
torture: deps ## Torture harness, release build: each attack 20 s, 800 slow clients, p99 bound 10 ms (~4 min) -> target/torture/figures.json
	$(CARGO) build --release -p nameplane-dns --bins
	e2e/scripts/cluster-up.sh >/dev/null
	status=0; NAMEPLANE_PROFILE=release TORTURE_SECONDS=$${TORTURE_SECONDS:-20} TORTURE_CLIENTS=$${TORTURE_CLIENTS:-800} \
	  TORTURE_FLOOD_QPS=$${TORTURE_FLOOD_QPS:-20000} \
	  $(CARGO) test -p nameplane-e2e --test torture -- --nocapture || status=$$?; \
	  e2e/scripts/cluster-down.sh; exit $$status

.PHONY: torture-smoke
torture-smoke: deps build ## Torture harness, short (4 s per attack, 200 slow clients, debug build, p99 bound 1 s; under 1 min)
	e2e/scripts/cluster-up.sh >/dev/null
	status=0; TORTURE_P99_MS=$${TORTURE_P99_MS:-1000} TORTURE_CLIENTS=$${TORTURE_CLIENTS:-200} $(CARGO) test -p nameplane-e2e --test torture -- --nocapture || status=$$?; \
	  e2e/scripts/cluster-down.sh; exit $$status

.PHONY: mutants
mutants: ## cargo-mutants over pipeline/client/{policy,rewrite}.rs, request.rs with their unit tests (pinned; hours on 2 cores; MUTANTS_FILES=policy for one)
	mutants/run.sh

.PHONY: fuzz
fuzz: ## Each fuzz target (answer, upstream_reply, config) for FUZZ_SECONDS (default 60); installs cargo-fuzz; crashes -> fuzz/artifacts/, figures -> target/fuzz/summary.json
	fuzz/run.sh

.PHONY: fuzz-smoke
fuzz-smoke: ## Each fuzz target for 20 s (not part of `make test`: see CONTRIBUTING.md, "Fuzzing")
	FUZZ_SECONDS=20 fuzz/run.sh

##@ Help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
	  /^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)
