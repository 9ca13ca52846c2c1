#!/usr/bin/env bash
# Runs each fuzz target for FUZZ_SECONDS (default 60) and prints, per target, the
# executions run and the crashes found; exits non-zero if any target crashed.
#
#   FUZZ_SECONDS=600 fuzz/run.sh               every target, ten minutes each
#   FUZZ_TARGETS="answer" fuzz/run.sh           one target
#   FUZZ_SANITIZER=address fuzz/run.sh          with ASan (slower; the default is none:
#                                               the code under test is safe Rust)
#
# Installs cargo-fuzz from crates.io when missing. cargo-fuzz passes nightly-only rustc
# flags: on a stable toolchain they are allowed with RUSTC_BOOTSTRAP=1 (set here).
# libFuzzer adds what it finds to fuzz/learned/<target>/ (ignored by git); the committed seeds
# in fuzz/corpus/<target>/ are only read. A crash is written to fuzz/artifacts/<target>/:
# turn it into a regression (CONTRIBUTING.md, "Fuzzing"). The executions and crashes of the
# run go to target/fuzz/summary.json, which `make bench` puts in its report.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-60}"
targets="${FUZZ_TARGETS:-answer upstream_reply config import}"
sanitizer="${FUZZ_SANITIZER:-none}"
cargo_fuzz_version=0.13.2

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "[fuzz] installing cargo-fuzz $cargo_fuzz_version"
  cargo install --locked cargo-fuzz --version "$cargo_fuzz_version"
fi
if ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi

echo "[fuzz] building targets (sanitizer: $sanitizer)"
cargo fuzz build -s "$sanitizer"

summary_dir="$(cd .. && pwd)/target/fuzz"
mkdir -p "$summary_dir"
rows=()
status=0
for target in $targets; do
  mkdir -p "learned/$target" "artifacts/$target"
  max_len=4096
  [ "$target" = config ] && max_len=65536
  log="learned/$target.log"
  before=$(find "artifacts/$target" -type f | wc -l)
  set +e
  cargo fuzz run -s "$sanitizer" "$target" "learned/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  after=$(find "artifacts/$target" -type f | wc -l)
  runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1)
  crashes=$((after - before))
  echo "[fuzz] $target: ${runs:-?} executions in ${seconds}s, $crashes crash(es), exit $rc"
  rows+=("{\"target\": \"$target\", \"executions\": ${runs:-null}, \"crashes\": $crashes, \"exit\": $rc}")
  if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    status=1
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -20 || true
  fi
done
joined=$(IFS=,; echo "${rows[*]}")
printf '{"when": "%s", "seconds": %s, "sanitizer": "%s", "targets": [%s]}\n' \
  "$(date -u +%FT%TZ)" "$seconds" "$sanitizer" "$joined" >"$summary_dir/summary.json"
echo "[fuzz] summary: $summary_dir/summary.json"
exit $status
