#!/usr/bin/env bash
# Regenerates bench/results/data-parallel.md: steps per second of quick ListOps (the quick
# model, global batch 32, 400 steps, no dropout) on one process with one thread, on 2 MPI ranks
# with one thread each splitting the batch (data parallel) or every layer (tensor parallel), and
# on one process with both threads (how one would use this machine without MPI); three rounds,
# each configuration in turn; the sums' share of a step; and a projection of the data-parallel
# all-reduce on K machines from its size and a stated bandwidth. Needs the MPI build (see the
# README's Data parallelism). About 5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p eft --features mpi
eft=$PWD/target/release/eft
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run=(train --task listops --steps 400 --set model.dropout=0.0 --set train.eval_every=400
  --set train.checkpoint_every=400 --no-progress --out "$out")
for round in 1 2 3; do
  RAYON_NUM_THREADS=1 "$eft" "${run[@]}" --name "k1-t1-r$round" >/dev/null 2>&1
  mpirun --allow-run-as-root --oversubscribe -np 2 -x RAYON_NUM_THREADS=1 \
    "$eft" "${run[@]}" --name "k2-t1-r$round" >/dev/null 2>&1
  mpirun --allow-run-as-root --oversubscribe -np 2 -x RAYON_NUM_THREADS=1 \
    "$eft" "${run[@]}" --set model.tensor_parallel=2 --name "tp2-t1-r$round" >/dev/null 2>&1
  RAYON_NUM_THREADS=2 "$eft" "${run[@]}" --name "k1-t2-r$round" >/dev/null 2>&1
done
mkdir -p bench/results
python3 - "$out" > bench/results/data-parallel.md <<'PY'
import json, os, statistics, sys
root = sys.argv[1]
rec = lambda n: json.load(open(os.path.join(root, n, "record.json")))
rows = {}
for cfg in ("k1-t1", "k2-t1", "tp2-t1", "k1-t2"):
    rs = [rec(f"{cfg}-r{r}") for r in (1, 2, 3)]
    step = statistics.median(r["meter"]["step_seconds"]["median"] for r in rs)
    reduce = [r["parallel"]["all_reduce_seconds_per_step"] for r in rs if r.get("parallel")]
    rows[cfg] = (step, statistics.median(reduce) if reduce else None, rs[0])
base = rows["k1-t1"][0]
print("# Data parallelism on this machine\n\nWritten by `bench/data-parallel.sh`.\n")
print(
    "Quick ListOps (the quick model, global batch 32, 400 steps, no dropout), median step time "
    "(warm-up excluded) of each run, the median over three rounds that run every configuration "
    "in turn. Speed-up and efficiency are against one rank with one thread, measured in the same "
    "rounds; the all-reduce time is rank 0's per step, flattening and writing back included (for "
    "tensor parallelism: the sums inside the layers, waiting for the other rank included, and "
    "the step's small sum of shared gradients).\n"
)
print("| configuration | GFLOP/step | ms/step | steps/s | speed-up | efficiency | all-reduce ms/step | share |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
labels = {
    "k1-t1": ("1 rank × 1 thread", 1),
    "k2-t1": ("2 MPI ranks × 1 thread, batch split", 2),
    "tp2-t1": ("2 MPI ranks × 1 thread, layers split", 2),
    "k1-t2": ("1 rank × 2 threads", 2),
}
for cfg, (label, workers) in labels.items():
    step, reduce, record = rows[cfg]
    speed = base / step
    r = "—" if reduce is None else f"{1e3 * reduce:.2f}"
    share = "—" if reduce is None else f"{100 * reduce / step:.0f}%"
    gflop = record["meter"]["flops_per_step"] / 1e9
    print(f"| {label} | {gflop:.3f} | {1e3 * step:.1f} | {1 / step:.1f} | {speed:.2f}× | {100 * speed / workers:.0f}% | {r} | {share} |")
print(
    "\nGFLOP/step is the meter's count for the whole global batch. Two ranks execute fewer: each "
    "half batch is padded only to its own longest sequence (ListOps lengths vary from 10 to 100), "
    "which with smaller working sets is how two ranks beat twice one rank. Two ranks also beat "
    "one process on both threads: at this size burn's threading within each operation leaves "
    "much of the second core idle, and splitting the batch does not."
)
tp = rows["tp2-t1"]
print(
    f"\nSplitting the layers (`model.tensor_parallel = 2`) runs at {base / tp[0]:.2f}× one rank: "
    "each rank computes half of every layer's heads and MLP columns on the whole batch, but "
    "embeddings, norms and heads are computed on both, and every block sums its attention and "
    "MLP outputs over the ranks forward and their input gradients backward (four sums of a "
    "[batch, length, width] activation per block and step). "
    + (
        "At the quick model's width that costs more than it saves: tensor parallelism is for "
        "layers too big for one process's memory, not for speed on small ones."
        if base / tp[0] < 1
        else "Even at the quick model's width this beats one rank, though not splitting the batch."
    )
)
params = rows["k2-t1"][2]["parameters"]
bytes_ = 4 * params
print(
    f"\nThe all-reduce carries the {params:,} gradients as f32 ({bytes_ / 2**20:.2f} MiB) plus a flag per "
    "parameter tensor and three numbers. Projection for K machines, not measured: a ring "
    "all-reduce sends 2·(K−1)/K of the buffer over each machine's link and takes 2·(K−1) "
    "latency hops; at 10 Gbit/s (1.25 GB/s) and 20 µs per hop:\n"
)
print("| K | all-reduce ms (model) |")
print("|---:|---:|")
for k in (2, 4, 8, 16):
    t = 2 * (k - 1) / k * bytes_ / 1.25e9 + 2 * (k - 1) * 20e-6
    print(f"| {k} | {1e3 * t:.2f} |")
print(
    "\nA step's compute grows with batch × length × parameters, its all-reduce with the "
    "parameters alone: splitting pays while each machine's share of the step stays well above "
    "these times."
)
PY
cat bench/results/data-parallel.md
