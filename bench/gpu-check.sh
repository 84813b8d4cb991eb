#!/usr/bin/env bash
# Runs eft's wgpu build on a GPU beside the same machine's CPU: quick ListOps with `full`,
# `flash` and `linear` attention for 200 steps (same seed, data and dropout masks on both
# devices) and 50 steps at 500–1,024 tokens, and writes steps/s, last training loss and test
# accuracy of each run to bench/results/gpu-check.md. Needs an eft built with
# `cargo build --release -p eft --features wgpu` (EFT= points at it) and a Vulkan driver; each run
# is stopped after RUN_LIMIT seconds (150).
set -uo pipefail
cd "$(dirname "$0")/.."
eft=${EFT:-./target/release/eft}
runs=${RUNS:-$(mktemp -d)}
md=${MD:-bench/results/gpu-check.md}
steps=${STEPS:-200}
mkdir -p "$runs"
for dev in wgpu cpu; do
  for m in full flash linear; do
    timeout "${RUN_LIMIT:-150}" "$eft" train --task listops --preset quick --attention "$m" --steps "$steps" --device "$dev" \
      --no-progress --name "$m-$dev" --out "$runs" > "$runs/$m-$dev.log" 2>&1 \
      || echo "$m on $dev failed: $(tail -3 "$runs/$m-$dev.log")"
    timeout "${RUN_LIMIT:-150}" "$eft" train --task listops --preset quick --attention "$m" --steps ${LONG_STEPS:-50} --device "$dev" \
      --batch-size 8 --set task.min_len=500 --set task.max_len=1024 --set task.train=2000 \
      --set task.max_depth=10 --set task.max_args=10 --set task.val=100 --set task.test=200 \
      --no-progress --name "$m-$dev-1k" --out "$runs" > "$runs/$m-$dev-1k.log" 2>&1 \
      || echo "$m on $dev at 1K failed: $(tail -3 "$runs/$m-$dev-1k.log")"
  done
done
python3 - "$runs" "$md" <<'PY'
import json, os, subprocess, sys
runs, md = sys.argv[1], sys.argv[2]
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
except OSError:
    gpu = ""
rows = []
for name in sorted(os.listdir(runs)):
    path = os.path.join(runs, name, "record.json")
    if not os.path.exists(path):
        continue
    r = json.load(open(path))
    step = ((r.get("meter") or {}).get("step_seconds") or {}).get("median")
    last = r["evals"][-1] if r.get("evals") else {}
    acc = (r.get("test") or {}).get("accuracy")
    rows.append((name, r["steps_done"], 1 / step if step else None, last.get("train_loss"),
                 100 * acc if acc is not None else None, r["wall_clock_seconds"]))
f = lambda x, spec: "—" if x is None else format(x, spec)
with open(md, "w") as out:
    out.write("# eft's wgpu build on a GPU\n\n")
    out.write(f"GPU: {gpu or 'not named'}; the CPU rows ran on the same machine's {os.cpu_count()} "
              "cores. Regenerate with `bash bench/gpu-check.sh` (EFT= an eft built with "
              "`--features wgpu`).\n\n")
    out.write("| run | steps | steps/s (median) | last training loss | test accuracy | wall |\n")
    out.write("|---|---|---|---|---|---|\n")
    for n, s, sps, loss, acc, wall in rows:
        out.write(f"| {n} | {s} | {f(sps, '.1f')} | {f(loss, '.4f')} | {f(acc, '.1f')}% | {wall:.0f} s |\n")
print(open(md).read())
PY
