#!/usr/bin/env bash
# Regenerates bench/results/decoding.{json,md} and decoding-{speed,memory}.{png,svg}: the quick
# language model decoding one byte at a time at contexts of 1K to 64K positions, with each
# decoding form (key-value cache, window cache, segment memory, kernel sums, and recomputing the
# causal pass up to 4K). Reaching 64K with full attention's cache is an O(N²) prefill: expect
# about 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p eft
./target/release/eft profile decode --out bench/results
cat bench/results/decoding.md
