#!/usr/bin/env bash
# Conditional computation against the dense model on the quick arena's ListOps, Text and Image
# cells: dense `full` (2 blocks), Switch with 4 and 8 experts (each expert as wide as the dense
# MLP), a Universal Transformer (one block, adaptive computation time, at most 6 steps) and
# the dense model with a head after each block (early exit at top probability >= 0.5, or at
# the depth a classifier picks), three
# seeds each; then seed 1's early-exit models are swept over thresholds (table and chart).
# Writes bench/results/conditional.md (mean ± standard deviation over the seeds) and
# bench/results/conditional-steps.md (step times measured side by side).
# Finished cells are kept and interrupted ones resume, so rerunning continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p eft
out=runs/conditional
mechanisms=full,full+switch,full+switch:experts=8,full+act:max_steps=6,full+exits,full+learned_exits
for seed in 1 2 3; do
  ./target/release/eft arena --tasks listops,text,image --mechanisms "$mechanisms" \
    --name "seed$seed" --out "$out" --set "seed=$seed" --no-progress
done
mkdir -p bench/results
thresholds=0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0
for task in listops text image; do
  ./target/release/eft eval "$out/seed1/$task-full+exits" --exit-threshold "$thresholds" >/dev/null
  cp "$out/seed1/$task-full+exits/exits.png" "bench/results/conditional-exits-$task.png"
  cp "$out/seed1/$task-full+exits/exits.svg" "bench/results/conditional-exits-$task.svg"
done
python3 bench/conditional_table.py "$out"/seed*/report.json > bench/results/conditional.md
cat bench/results/conditional.md
# Step times interleaved in one session (the arena's cells ran at different times).
python3 bench/conditional_steps.py 3
