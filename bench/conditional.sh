#!/usr/bin/env bash
# Conditional computation against the dense model on the quick arena's ListOps, Text and Image
# cells: dense `full`, Switch with 4 and 8 experts (each expert as wide as the dense MLP), three
# seeds each. Writes bench/results/conditional.md (mean ± standard deviation over the seeds).
# Finished cells are kept and interrupted ones resume, so rerunning continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p eft
out=runs/conditional
mechanisms=full,full+switch,full+switch:experts=8
for seed in 1 2 3; do
  ./target/release/eft arena --tasks listops,text,image --mechanisms "$mechanisms" \
    --name "seed$seed" --out "$out" --set "seed=$seed" --no-progress
done
mkdir -p bench/results
python3 bench/conditional_table.py "$out"/seed*/report.json > bench/results/conditional.md
cat bench/results/conditional.md
