#!/usr/bin/env bash
# Re-sizing experiments for the quick arena's hard tasks (issue 21): `full` attention alone on
# Text, Retrieval, Pathfinder and induction heads under other lengths, steps, data and learning
# rates, each an `eft arena` of one cell with the quick preset and `--set` overrides. Writes the
# test accuracy of every seed beside the majority baseline to bench/results/quick-sizing.md.
# About 110 minutes on 2 cores. bench/retrieval_probe.py gives the ceiling of a byte-histogram
# classifier on the same Retrieval pairs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p eft
eft=./target/release/eft
out=${SIZING_OUT:-arena/sizing}
md=bench/results/quick-sizing.md
cos() { echo "train.schedule={kind=\"cosine\",lr=$1,warmup=$2,min_lr=1e-5}"; }
# The Pathfinder rows ran on the quick cell before it changed to 3-paddle snakes (LRA's 6-paddle
# snakes with 2 distractors, 100 validation images, cosine 1e-3 with 10 warm-up steps): these
# overrides bring that cell back.
pf="task.val=100"
pf6="task.contour_length=6 task.distractors=2 $pf"
# name | seeds | task | --set overrides (space-separated KEY=VALUE)
experiments=(
  "text-quick|3|text|"
  "text-128-mean|1|text|train.steps=400 task.max_len=128 model.pool=\"mean\""
  "text-256-mean|3|text|train.steps=400 task.max_len=256 model.pool=\"mean\" $(cos 2e-3 40)"
  "text-64-mean-5k|3|text|task.train=5000 model.pool=\"mean\" $(cos 2e-3 15)"
  "text-128-mean-5k|3|text|task.max_len=128 task.train=5000 model.pool=\"mean\" $(cos 2e-3 15)"
  "text-128-cls-5k|3|text|task.max_len=128 task.train=5000 train.steps=300 $(cos 1e-3 30)"
  "retrieval-quick|3|retrieval|"
  "retrieval-128|1|retrieval|train.steps=400 task.passage_len=128"
  "retrieval-64-mean|3|retrieval|train.steps=400 task.passage_len=64 model.pool=\"mean\" $(cos 2e-3 40)"
  "retrieval-64-mean-20k|1|retrieval|train.steps=400 task.passage_len=64 task.train=20000 model.pool=\"mean\" $(cos 2e-3 40)"
  "pathfinder-400x32|1|pathfinder|$pf6 $(cos 1e-3 10) train.steps=400 train.batch_size=32 task.train=5000 task.test=500"
  "pathfinder-1500x32|1|pathfinder|$pf6 train.steps=1500 train.batch_size=32 task.train=10000 task.test=500 $(cos 2e-3 150)"
  "pathfinder-c4-d0-800x32|3|pathfinder|$pf task.contour_length=4 task.distractors=0 train.steps=800 train.batch_size=32 task.train=10000 task.test=500 $(cos 2e-3 80)"
  "pathfinder-c4-d0-500x16-3e-3|1|pathfinder|$pf task.contour_length=4 task.distractors=0 train.steps=500 train.batch_size=16 task.train=10000 task.test=500 $(cos 3e-3 50)"
  "pathfinder-c3-d0-500x16-3e-3|1|pathfinder|$pf task.contour_length=3 task.distractors=0 train.steps=500 train.batch_size=16 task.train=10000 task.test=500 $(cos 3e-3 50)"
  "pathfinder-c4-d0-300x32-3e-3|1|pathfinder|$pf task.contour_length=4 task.distractors=0 train.steps=300 train.batch_size=32 task.train=10000 task.test=500 $(cos 3e-3 30)"
  "pathfinder-c3-d0-300x16-3e-3|1|pathfinder|$pf task.contour_length=3 task.distractors=0 train.steps=300 train.batch_size=16 task.train=5000 task.test=500 $(cos 3e-3 30)"
  "pathfinder-12px-c3-d0-400x16-3e-3|1|pathfinder|$pf task.size=12 task.contour_length=3 task.distractors=0 train.steps=400 train.batch_size=16 task.train=10000 task.test=500 $(cos 3e-3 40)"
  "pathfinder-c3-d0-300x16-sinusoidal|1|pathfinder|$pf task.contour_length=3 task.distractors=0 train.steps=300 train.batch_size=16 task.train=5000 task.test=500 model.positions=\"sinusoidal\" $(cos 3e-3 30)"
  "retrieval-other-genre|1|retrieval|task.negatives=\"other_genre\""
  "retrieval-other-genre-64-mean|1|retrieval|task.negatives=\"other_genre\" train.steps=400 task.passage_len=64 model.pool=\"mean\" $(cos 2e-3 40)"
  "retrieval-other-genre-64-mean-20k|1|retrieval|task.negatives=\"other_genre\" train.steps=400 task.passage_len=64 task.train=20000 model.pool=\"mean\" $(cos 2e-3 40)"
  "retrieval-other-genre-256-mean-500x16|1|retrieval|task.negatives=\"other_genre\" task.passage_len=256 model.pool=\"mean\" train.steps=500 train.batch_size=16 task.train=10000 $(cos 3e-3 50)"
  "retrieval-other-genre-256-mean-800x32|3|retrieval|task.negatives=\"other_genre\" task.passage_len=256 model.pool=\"mean\" train.steps=800 train.batch_size=32 task.train=20000 model.dropout=0.0 $(cos 3e-3 80)"
  "retrieval-other-genre-128-mean-800x32|1|retrieval|task.negatives=\"other_genre\" task.passage_len=128 model.pool=\"mean\" train.steps=800 train.batch_size=32 task.train=20000 model.dropout=0.0 $(cos 3e-3 80)"
  "retrieval-other-genre-256-mean-800x16|1|retrieval|task.negatives=\"other_genre\" task.passage_len=256 model.pool=\"mean\" train.steps=800 train.batch_size=16 task.train=20000 model.dropout=0.0 $(cos 3e-3 80)"
  "retrieval-other-genre-256-mean-500x32-5e-3|1|retrieval|task.negatives=\"other_genre\" task.passage_len=256 model.pool=\"mean\" train.steps=500 train.batch_size=32 task.train=20000 model.dropout=0.0 $(cos 5e-3 50)"
  "induction-quick|3|induction|"
  "induction-600-3e-3|1|induction|train.steps=600 $(cos 3e-3 60)"
  "induction-1500-20k|3|induction|train.steps=1500 task.train=20000 $(cos 1e-3 150)"
  "induction-400-2e-3-10k|3|induction|task.train=10000 train.steps=400 $(cos 2e-3 40)"
)
{
  echo "# Sizing the quick arena's hard tasks"
  echo
  echo "\`full\` attention alone, the quick preset's cell with the overrides shown (\`--set\`), test"
  echo "accuracy of each seed (\`train.replica\` 0, 1, 2: initial weights, batch order, dropout) against"
  echo "the majority-class baseline, and the whole experiment's wall-clock time on $(nproc) cores."
  echo "Regenerate with \`bash bench/quick-sizing.sh\`."
  echo
  echo "| task | overrides | seeds' test accuracy | majority | wall |"
  echo "|---|---|---|---|---|"
} > "$md.tmp"
for e in "${experiments[@]}"; do
  IFS='|' read -r name seeds task sets <<< "$e"
  args=()
  for kv in $sets; do args+=(--set "$kv"); done
  start=$(date +%s)
  "$eft" arena --preset quick --tasks "$task" --mechanisms full --out "$out" --name "$name" \
    --seeds "$seeds" --no-profile --no-progress "${args[@]}" > /dev/null 2>&1 || true
  wall=$(( $(date +%s) - start ))
  accs=$(awk -F, 'NR > 1 { printf "%s%s%%", (n++ ? ", " : ""), $5 }' "$out/$name/report.csv")
  base=$(awk -F, 'NR == 2 { print $6 }' "$out/$name/report.csv")
  echo "| $task | ${sets:-the quick cell} | $accs | $base% | ${wall} s |" >> "$md.tmp"
done
mv "$md.tmp" "$md"
cat "$md"
