#!/usr/bin/env bash
# Regenerates bench/results/pretraining.md: masked-byte pretraining (`--task mlm --preset quick`:
# the quick model on 64-byte windows of IMDb's training reviews and the Brown corpus, 10,000
# steps) and the quick Text task at 64 bytes fine-tuned from its encoder against the same task
# from scratch, three seeds each. About 8 minutes on 2 cores; finished runs are kept.
# ELECTRA, the comparison this is the baseline of, is not built yet.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p eft
eft=./target/release/eft
out=runs/pretraining
finished() { grep -qs '"status": "finished"' "$1/record.json"; }
if ! finished "$out/mlm"; then
  rm -rf "$out/mlm"
  $eft train --task mlm --preset quick --name mlm --out "$out" --no-progress >/dev/null
fi
for seed in 1 2 3; do
  for init in none mlm; do
    name="text-$init-seed$seed"
    finished "$out/$name" && continue
    rm -rf "${out:?}/$name"
    extra=()
    if [ "$init" = mlm ]; then
      extra=(--set "train.init_from=\"$out/mlm\"")
    fi
    $eft train --task text --preset quick --set task.max_len=64 --seed "$seed" --name "$name" \
      --out "$out" --no-progress "${extra[@]}" >/dev/null
  done
done
mkdir -p bench/results
python3 - "$out" > bench/results/pretraining.md <<'PY'
import json, os, statistics, sys
root = sys.argv[1]
record = lambda name: json.load(open(os.path.join(root, name, "record.json")))
m = record("mlm")
print("# Pretraining\n\nWritten by `bench/pretrain.sh`.\n")
print(
    f"Masked-byte pretraining (`eft train --task mlm --preset quick`): {m['steps_done']} steps, "
    f"{m['meter']['total_flops']:.3g} FLOPs (the meter's count), {m['wall_clock_seconds']:.0f} s; "
    f"test accuracy on the masked bytes {100 * m['test']['accuracy']:.1f}% (always the most "
    f"frequent byte: {100 * m['majority_baseline']['test_accuracy']:.1f}%), test loss "
    f"{m['test']['loss']:.3f} nats.\n"
)
print("Text (quick preset, first 64 bytes, 400 steps), test accuracy over seeds 1–3:\n")
print("| start | seeds | mean ± sd |\n|---|---|---:|")
for init, label in (("none", "from scratch"), ("mlm", "from the MLM encoder")):
    acc = [100 * record(f"text-{init}-seed{s}")["test"]["accuracy"] for s in (1, 2, 3)]
    runs = ", ".join(f"{a:.1f}%" for a in acc)
    print(f"| {label} | {runs} | {statistics.mean(acc):.1f} ± {statistics.stdev(acc):.1f}% |")
print()
PY
cat bench/results/pretraining.md
