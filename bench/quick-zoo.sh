#!/usr/bin/env bash
# Trains the quick ListOps preset once per attention mechanism and writes the table of results
# to bench/results/quick-zoo.md. Parameters are scaled to the preset's 10–100-token trees.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p eft
out=runs/zoo
mkdir -p bench/results
while read -r mechanism params; do
  name="listops-$mechanism-quick"
  if [ -e "$out/$name/checkpoint.safetensors" ]; then
    # Finished runs are kept; interrupted ones continue where they stopped.
    grep -q '"status": "finished"' "$out/$name/record.json" && continue
    ./target/release/eft train --resume "$out/$name" --no-progress
    continue
  fi
  # shellcheck disable=SC2086
  ./target/release/eft train --preset quick --attention "$mechanism" $params --out "$out" --name "$name" --no-progress
done <<'LIST'
full
flash --param tile=32
local --param block=16
sliding --param window=8
strided --param stride=10
fixed --param block=16 --param summary=4
cascade --param window=4
blockbert --param blocks=4
longformer --param window=8 --param global=0
bigbird --param block=8 --param random_blocks=2
linear
performer
linformer --param k=16
nystrom --param landmarks=16
synthesizer
sinkhorn --param block=16
lsh --param buckets=4 --param chunk=16
xl --param segment=32 --param mem_len=32 --set model.pool=mean
LIST
./target/release/eft report "$out" > bench/results/quick-zoo.md
cat bench/results/quick-zoo.md
