#!/usr/bin/env bash
# cargo-mutants over the query path's pure stages, each file scoped to the unit tests that
# cover it, so a run is bounded (`make mutants`; not part of `make test`). Results per file in
# target/mutants/<name>/mutants.out/ (missed.txt, caught.txt, timeout.txt, unviable.txt).
#
#   mutants/run.sh                       policy, rewrite and request (hours on 2 cores)
#   MUTANTS_FILES="policy" mutants/run.sh    one file (policy.rs: 30 mutants)
#   MUTANTS_SHARD=0/4 mutants/run.sh     a quarter of each file's mutants (cargo-mutants --shard)
#
# Installs the pinned cargo-mutants from crates.io when missing. The mutated tree is a copy
# (cargo-mutants' default; the target directory is not copied: the first build is cold).
set -euo pipefail
cd "$(dirname "$0")/.."
version=27.1.0
files="${MUTANTS_FILES:-policy rewrite request}"
export CARGO_INCREMENTAL=0

if [ "$(cargo mutants --version 2>/dev/null)" != "cargo-mutants $version" ]; then
  echo "[mutants] installing cargo-mutants $version"
  cargo install --locked cargo-mutants --version "$version"
fi

status=0
for name in $files; do
  # The file, and the unit tests (libtest name filters, any matches) that cover it.
  case "$name" in
    policy) file=dns-server/src/pipeline/client/policy.rs; tests="pipeline::client::policy pipeline::client::tests pipeline::tests" ;;
    rewrite) file=dns-server/src/pipeline/client/rewrite.rs; tests="pipeline::client::rewrite pipeline::client::tests pipeline::tests" ;;
    request) file=dns-server/src/request.rs; tests="request pipeline::tests server::" ;;
    *) echo "[mutants] unknown file $name (policy, rewrite, request)"; exit 2 ;;
  esac
  out="target/mutants/$name"
  mkdir -p "$out"
  echo "[mutants] $file (tests: $tests)"
  set +e
  # shellcheck disable=SC2086
  # --cargo-arg=--lib: build only the lib's unit tests for each mutant (without it
  # `cargo test --no-run` also builds the binary and every integration test, twice the time).
  cargo mutants -p nameplane-dns -f "$file" -j 1 --timeout 120 --build-timeout 900 \
    --cargo-arg=--lib ${MUTANTS_SHARD:+--shard "$MUTANTS_SHARD"} -o "$out" -- -- $tests
  rc=$?
  set -e
  missed="$out/mutants.out/missed.txt"
  echo "[mutants] $name: exit $rc; missed: $(wc -l <"$missed" 2>/dev/null || echo '?')"
  [ -s "$missed" ] && cat "$missed"
  # 0: all caught; 2: some missed; 3: some timed out (cargo-mutants' exit codes).
  [ "$rc" -ne 0 ] && status=$rc
done
exit $status
