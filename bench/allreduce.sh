#!/usr/bin/env bash
# Regenerates bench/results/allreduce-pieces.md: seconds per step of the data-parallel gradient
# sum under `mpirun -np 2` for the quick and paper ListOps models, as one MPI all-reduce of the
# flat buffer, in buckets of parameter tensors (PyTorch DDP's form), one per tensor, and in
# pieces of a fixed size (crates/eft-train/examples/allreduce_buckets.rs). Needs the MPI build
# (see the README's Data parallelism). About 2 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p eft-train --features mpi --example allreduce_buckets
run() {
  mpirun --allow-run-as-root --oversubscribe -np 2 -x RAYON_NUM_THREADS=1 \
    target/release/examples/allreduce_buckets "$@"
}
mkdir -p bench/results
{
  echo "# The gradient sum in one piece or several"
  echo
  echo "Written by \`bench/allreduce.sh\` (2 MPI ranks on this machine, OpenMPI's shared-memory"
  echo "transport). The same values are summed each way; medians of interleaved rounds."
  echo
  run listops quick
  echo
  run listops paper
  echo
  echo "One MPI all-reduce of the whole buffer is the slowest way on this machine at both sizes:"
  echo "OpenMPI picks its algorithm by message size, and large messages take a slower one here."
  echo "eft's MPI sum therefore sends the flat gradient buffer in pieces of 32 Ki values (128 KiB),"
  echo "the row marked eft's (chosen from a first run of this script; nearby sizes are within noise)."
  echo "Buckets in PyTorch DDP also overlap the sum with the backward pass; burn hands over all"
  echo "gradients when the backward pass ends, so there is nothing to overlap here, and buckets"
  echo "win only by their size. Across machines (TCP) the best piece size will differ."
} > bench/results/allreduce-pieces.md
cat bench/results/allreduce-pieces.md
