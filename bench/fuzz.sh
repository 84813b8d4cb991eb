#!/usr/bin/env bash
# Runs each property-test fuzz target (crates/eft-train/tests/fuzz.rs, and the IDX reader's in
# crates/eft-data/src/image.rs) for CASES inputs
# (default 1000000) and writes bench/results/fuzz.md: executions, seconds, and the outcome
# (a failure prints the shrunk input that panicked, aborted or loaded wrongly).
#   bench/fuzz.sh [CASES]
set -uo pipefail
cd "$(dirname "$0")/.."
cases=${1:-1000000}
out=bench/results/fuzz.md
cargo test -p eft-train --test fuzz --no-run >/dev/null 2>&1 || { echo "build failed"; exit 1; }
cargo test -p eft-data --lib --no-run >/dev/null 2>&1 || { echo "build failed"; exit 1; }
tmp=$(mktemp)
{
  echo "# Fuzzing (property tests over hostile inputs)"
  echo
  echo "\`bench/fuzz.sh $cases\` on $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD)," \
    "$(nproc) cores. Each target draws \`PROPTEST_CASES\` inputs from"
  echo "crates/eft-train/tests/fuzz.rs (the IDX target from crates/eft-data/src/image.rs); CI runs"
  echo "256 per target."
  echo
  echo "| target | executions | seconds | outcome |"
  echo "|---|---|---|---|"
} >"$tmp"
status=0
for spec in "eft-train --test fuzz config_parsing_never_panics" \
  "eft-train --test fuzz checkpoint_reading_never_panics" \
  "eft-train --test fuzz attention_parameters_and_shapes_never_panic" \
  "eft-data --lib image::tests::idx_reading_never_panics"; do
  read -r package kind binary target <<<"$spec"
  [ "$kind" = "--lib" ] && { target=$binary; binary=""; }
  start=$(date +%s)
  # shellcheck disable=SC2086
  if PROPTEST_CASES=$cases cargo test -q -p "$package" $kind $binary -- --exact "$target" \
    >"$tmp.log" 2>&1; then
    outcome="0 panics, 0 aborts"
  else
    outcome="FAILED: $(grep -m1 -E 'minimal failing input|panicked|SIGABRT|memory allocation' "$tmp.log" | tr '|' '/')"
    status=1
  fi
  echo "| \`$target\` | $cases | $(( $(date +%s) - start )) | $outcome |" >>"$tmp"
done
rm -f "$tmp.log"
mv "$tmp" "$out"
cat "$out"
exit $status
