#!/usr/bin/env bash
# Regenerates bench/results/compression.md, pruning.{png,svg}, lottery.{png,svg} and
# distillation.svg: magnitude pruning of the quick
# arena's `full` ListOps and Image models at 0–95% sparsity (global ranking of the dense layers'
# weights), evaluated as pruned and after 100 steps of fine-tuning with the mask held. The
# source models are the quick arena's cells (eft arena --tasks listops,image --mechanisms full).
# Then the same models as teachers of performer, linear and half-width full students (soft
# targets at T = 2, alpha = 0.5) against the students alone, three seeds each, and lottery
# tickets (five rounds of halving, rewound to the initialisation, beside fresh-init controls),
# and head pruning (importance against random choice, and the step it makes faster).
# About 45 minutes on 2 cores; finished runs are kept, so rerunning continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p eft
eft=./target/release/eft
out=runs/compression
$eft arena --tasks listops,image --mechanisms full --out "$out" --name sources --no-progress
for task in listops image; do
  source="$out/sources/$task-full"
  for sparsity in 0 0.2 0.4 0.6 0.8 0.9 0.95; do
    for steps in 0 100; do
      name="$task-s$sparsity-ft$steps"
      if [ -f "$out/pruned/$name/record.json" ] && grep -q '"status": "finished"' "$out/pruned/$name/record.json"; then
        continue
      fi
      rm -rf "${out:?}/pruned/$name"
      $eft prune "$source" --sparsity "$sparsity" --finetune "$steps" --name "$name" \
        --out "$out/pruned" --no-progress >/dev/null
    done
  done
done
# Distillation: the full models above teach performer, linear and a half-width full student,
# each also trained without the teacher; three seeds, the same steps and data as the teacher.
for task in listops image; do
  teacher="$out/sources/$task-full"
  for student in performer linear half; do
    flags=(--attention "$student")
    if [ "$student" = half ]; then
      flags=(--attention full --set model.d_model=32 --set model.d_ff=64)
    fi
    for seed in 1 2 3; do
      for alpha in 0 0.5; do
        name="$task-$student-a$alpha-seed$seed"
        if [ -f "$out/distilled/$name/record.json" ] && grep -q '"status": "finished"' "$out/distilled/$name/record.json"; then
          continue
        fi
        rm -rf "${out:?}/distilled/$name"
        distill=()
        if [ "$alpha" != 0 ]; then
          distill=(--set "train.distill={ teacher = \"$teacher\", temperature = 2.0, alpha = $alpha }")
        fi
        $eft train --config "$teacher/config.toml" "${flags[@]}" "${distill[@]}" --seed "$seed" \
          --name "$name" --out "$out/distilled" --no-progress >/dev/null
      done
    done
  done
done
# Lottery tickets: the same models retrained with their initialisation kept, then five rounds
# that each prune half the remaining weights, the ticket rewound to the initialisation beside a
# control with the same mask from a fresh initialisation.
for task in listops image; do
  source="$out/lottery/$task-source"
  if ! grep -qs '"status": "finished"' "$source/record.json"; then
    rm -rf "$source"
    $eft train --config "$out/sources/$task-full/config.toml" --set "train.keep_at=[0]" \
      --name "$task-source" --out "$out/lottery" --no-progress >/dev/null
  fi
  $eft prune "$source" --lottery --rounds 5 --rate 0.5 --rewind 0 --no-progress >/dev/null
done
# Head pruning: the same models' heads ranked by |dL/dgate| over 32 training batches (normalised
# per layer), the least important 25/50/75% cut out of the weights, evaluated and fine-tuned for
# 100 steps; beside a control that cuts as many heads chosen at random (three draws, seeded by
# task, share and draw). Then a training step of the quick model with 4, 3, 2 and 1 heads per layer at
# N = 1024 and 4096, each in its own process, three rounds.
mkdir -p "$out/heads"
for task in listops image; do
  source="$out/sources/$task-full"
  for share in 0.25 0.5 0.75; do
    for steps in 0 100; do
      for order in importance random random2 random3; do
        name="$task-h$share-ft$steps-$order"
        if [ -f "$out/heads/$name/record.json" ] && grep -q '"status": "finished"' "$out/heads/$name/record.json"; then
          continue
        fi
        rm -rf "${out:?}/heads/$name"
        extra=()
        if [ "$order" != importance ]; then
          kept=$(python3 -c "
import random
seed = '$task-$share' + {'random': ''}.get('$order', '-$order')
rng, layers, heads = random.Random(seed), 2, 4
remove = round($share * layers * heads)
while True:
    gone = set(rng.sample(range(layers * heads), remove))
    kept = [[h for h in range(heads) if l * heads + h not in gone] for l in range(layers)]
    if all(kept):
        print(kept)
        break")
          extra=(--set "model.kept_heads=$kept")
        fi
        $eft prune "$source" --heads "$share" --finetune "$steps" --name "$name" \
          --out "$out/heads" --no-progress "${extra[@]}" > "$out/heads/$name.log"
      done
    done
  done
done
steps_file="$out/heads/steps.jsonl"
if [ ! -s "$steps_file" ]; then
  rm -f "$steps_file.partial"
  # Three rounds over every configuration in turn, so a slow spell of the machine lands on all.
  for round in 1 2 3; do
    for len in 1024 4096; do
      for h in 4 3 2 1; do
        kept=$(python3 -c "print([list(range($h))] * 2)")
        $eft profile attention --model quick --mechanism full --len "$len" --repeats 5 \
          --set "model.kept_heads=$kept" >> "$steps_file.partial"
      done
    done
  done
  mv "$steps_file.partial" "$steps_file"
fi
mkdir -p bench/results
$eft report "$out/pruned" --pruning bench/results >/dev/null
lottery_plot=$(mktemp -d)
$eft report "$out/lottery" --pruning "$lottery_plot" >/dev/null
cp "$lottery_plot/pruning.png" bench/results/lottery.png
cp "$lottery_plot/pruning.svg" bench/results/lottery.svg
rm -rf "$lottery_plot"
python3 bench/compression_table.py "$out" bench/results > bench/results/compression.md
cat bench/results/compression.md
