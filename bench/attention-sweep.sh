#!/usr/bin/env bash
# Regenerates bench/results/attention-cpu.{json,csv,md} and attention-{time,memory}.{png,svg}:
# every mechanism at N = 1K…16K, the linear-memory ones on to 64K, and xl in segments.
# Each configuration runs in a fresh process; expect about an hour on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p eft
eft=./target/release/eft
$eft profile sweep --out bench/results --max-gib 20
$eft profile sweep --out bench/results --max-gib 20 --repeats 1 \
  --mechanisms linear,performer,linformer,nystrom,lsh --lens 32768,65536
$eft profile sweep --out bench/results --max-gib 20 --repeats 1 \
  --mechanisms xl --param segment=512 --param mem_len=512 \
  --lens 1024,2048,4096,8192,16384,32768,65536
# Whole training steps of the quick ListOps model, one mechanism per family.
$eft profile sweep --out bench/results --max-gib 20 --repeats 1 --max-seconds 300 --model quick \
  --mechanisms full,flash,local,bigbird,longformer,linear,performer,linformer,nystrom,lsh,sinkhorn \
  --lens 1024,2048,4096,8192
