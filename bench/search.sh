#!/usr/bin/env bash
# Regenerates bench/results/search.md and its charts: aging evolution and random search with
# the same budget (60 candidates of 300 proxy steps each, seed 0) on quick ListOps over the
# default space, then `eft report` on both. Resumes where it stopped if interrupted. About an
# hour on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p eft
eft=target/release/eft
budget=${BUDGET:-60}
for strategy in evolution random; do
  "$eft" search --task listops --strategy "$strategy" --budget-evals "$budget" \
    --proxy-steps 300 --out "searches/listops-$strategy" >/dev/null
done
mkdir -p bench/results
{
  echo "# Architecture search on quick ListOps"
  echo
  echo "Written by \`bench/search.sh\`: \`eft search --task listops --budget-evals $budget"
  echo "--proxy-steps 300\` with \`--strategy evolution\` (P = 12, S = 4) and \`--strategy random\`,"
  echo "seed 0, the default space; then \`eft report\` on both folders."
  echo
  "$eft" report searches/listops-evolution searches/listops-random
} > bench/results/search.md
for strategy in evolution random; do
  cp "searches/listops-$strategy/front.svg" "bench/results/search-$strategy.svg"
  cp "searches/listops-$strategy/front.png" "bench/results/search-$strategy.png"
done
echo "wrote bench/results/search.md"
