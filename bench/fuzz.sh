#!/usr/bin/env bash
# Runs each property-test fuzz target (crates/eft-train/tests/fuzz.rs; the IDX, CIFAR, IMDb-JSON
# and Brown-corpus loaders' in crates/eft-data/src; eft attn's input reader in crates/eft/src/attn.rs)
# for CASES inputs (default 1000000) and writes bench/results/fuzz.md: executions, seconds, and the
# outcome (a failure prints the shrunk input that panicked, aborted or loaded wrongly; a target
# still running after LIMIT seconds, default 3600, is reported as a hang).
#   bench/fuzz.sh [CASES] [LIMIT]
set -uo pipefail
cd "$(dirname "$0")/.."
cases=${1:-1000000}
limit=${2:-3600}
out=bench/results/fuzz.md
# Built once up front and run from copies, so a rebuild during a long run changes nothing.
test_binary() { # PACKAGE KIND [NAME] -> path of the test executable
  # shellcheck disable=SC2068
  cargo test -p $@ --no-run --message-format=json 2>/dev/null |
    grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4
}
declare -A binaries
copies=$(mktemp -d)
trap 'rm -rf "$copies"' EXIT
for target in "eft-train --test fuzz" "eft-data --lib" "eft --bin eft"; do
  built=$(test_binary $target)
  [ -x "$built" ] || { echo "building the tests of $target failed"; exit 1; }
  binaries[$target]=$copies/$(basename "$built")
  cp "$built" "${binaries[$target]}"
done
tmp=$(mktemp)
{
  echo "# Fuzzing (property tests over hostile inputs)"
  echo
  echo "\`bench/fuzz.sh $cases\` on $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD)," \
    "$(nproc) cores. Each target draws \`PROPTEST_CASES\` inputs from"
  echo "crates/eft-train/tests/fuzz.rs, the loaders' modules in crates/eft-data/src and"
  echo "crates/eft/src/attn.rs, from a fixed seed; CI runs 256 per target."
  echo
  echo "| target | executions | seconds | outcome |"
  echo "|---|---|---|---|"
} >"$tmp"
status=0
for spec in "eft-train --test fuzz config_parsing_never_panics" \
  "eft-train --test fuzz checkpoint_reading_never_panics" \
  "eft-train --test fuzz attention_parameters_and_shapes_never_panic" \
  "eft-data --lib image::tests::idx_reading_never_panics" \
  "eft-data --lib cifar::tests::cifar_reading_never_panics" \
  "eft-data --lib text::tests::text_reading_never_panics" \
  "eft-data --lib retrieval::tests::corpus_reading_never_panics" \
  "eft-data --lib retrieval::tests::retrieval_pairs_never_panic_or_hang" \
  "eft --bin eft attn::tests::attn_input_reading_never_panics"; do
  target=${spec##* }
  start=$(date +%s)
  PROPTEST_CASES=$cases timeout "$limit" "${binaries[${spec% *}]}" --exact "$target" \
    >"$tmp.log" 2>&1
  rc=$?
  if [ $rc = 0 ]; then
    outcome="0 panics, 0 aborts, 0 hangs"
  elif [ $rc = 124 ]; then
    outcome="HUNG: still running after $limit s"
    status=1
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
