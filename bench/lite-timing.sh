#!/usr/bin/env bash
# How long the `lite` arena preset takes on this machine, without training it for hours: every
# lite cell of ListOps, Text, Image and Pathfinder (LRA's lengths, the quick model) trained for
# STEPS steps with 64 validation and test examples, then each cell extrapolated to the preset's
# 5,000 steps, its ten validations and its test split (bench/lite_estimate.py). Writes
# bench/results/lite-timing.md. About 30 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p eft
steps=${STEPS:-12}
# MECHANISMS (comma-separated) times some of the preset's mechanisms only; the default is all.
mechanisms=()
[ -n "${MECHANISMS:-}" ] && mechanisms=(--mechanisms "$MECHANISMS")
./target/release/eft arena --preset lite --tasks listops,text,image,pathfinder --out arena \
  "${mechanisms[@]}" \
  --name lite-timing --no-progress --no-profile --set "train.steps=$steps" \
  --set "train.eval_every=$steps" --set "train.checkpoint_every=$steps" \
  --set train.schedule.warmup=1 --set task.val=64 --set task.test=64 > /dev/null || true
python3 bench/lite_estimate.py arena/lite-timing "$steps" > bench/results/lite-timing.md
cat bench/results/lite-timing.md
