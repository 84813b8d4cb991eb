#!/usr/bin/env bash
# Regenerates bench/results/pretraining.md and pretraining-finetune.{png,svg}: the quick model
# pretrained on 64-byte windows of IMDb's training reviews and the Brown corpus by masked-byte
# prediction (`eft pretrain --objective mlm`, the preset's 10,000 steps) and by ELECTRA
# (`--objective electra`, generator at a quarter of the width, lambda 50) for the same measured
# FLOPs, then the quick Text task at 64 bytes fine-tuned from each encoder and from scratch,
# three seeds each, for 400 and for 2,000 steps. Then the pretraining section of
# bench/results/compression.md. About 35 minutes on 2 cores; finished runs are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p eft
eft=./target/release/eft
out=runs/pretraining
finished() { grep -qs '"status": "finished"' "$1/record.json"; }
if ! finished "$out/mlm"; then
  rm -rf "$out/mlm"
  $eft pretrain --objective mlm --name mlm --out "$out" --no-progress >/dev/null
fi
if ! finished "$out/electra"; then
  rm -rf "$out/electra"
  budget=$(python3 -c "import json; print(json.load(open('$out/mlm/record.json'))['meter']['total_flops'])")
  $eft pretrain --objective electra --flops "$budget" --name electra --out "$out" \
    --no-progress >/dev/null
fi
for steps in 400 2000; do
  prefix=text
  [ "$steps" = 400 ] || prefix="text$steps"
  for seed in 1 2 3; do
    for init in none mlm electra; do
      name="$prefix-$init-seed$seed"
      finished "$out/$name" && continue
      rm -rf "${out:?}/$name"
      extra=()
      if [ "$init" != none ]; then
        extra=(--set "train.init_from=\"$out/$init\"")
      fi
      $eft train --task text --preset quick --set task.max_len=64 --steps "$steps" \
        --set train.eval_every=$((steps / 4)) --set train.checkpoint_every=$((steps / 4)) \
        --seed "$seed" --name "$name" --out "$out" --no-progress "${extra[@]}" >/dev/null
    done
  done
done
mkdir -p bench/results
curves=$(mktemp -d)
$eft report "$out"/text2000-{none,mlm,electra}-seed1 --curves "$curves" >/dev/null
cp "$curves/curves.png" bench/results/pretraining-finetune.png
cp "$curves/curves.svg" bench/results/pretraining-finetune.svg
rm -rf "$curves"
python3 bench/pretrain_table.py "$out" > bench/results/pretraining.md
if [ -d runs/compression/pruned ]; then
  python3 bench/compression_table.py runs/compression bench/results > bench/results/compression.md
fi
cat bench/results/pretraining.md
