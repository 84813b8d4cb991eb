#!/usr/bin/env bash
# Regenerates bench/results/effective-context.{json,md,png,svg}: trains the quick language model
# (128-byte windows of IMDb reviews, 600 steps) with full attention, Transformer-XL (segments of
# 32 bytes, memory 32) and linear attention, then measures each one's bits per byte on 2,000 test
# targets against how many bytes of context it is given. About 5 minutes on 2 cores; finished
# runs are kept and an interrupted one resumes, so rerunning continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p eft
eft=./target/release/eft
$eft data fetch lm
out=runs/context
train() { # run name, then the flags that make it
  local name=$1
  shift
  if [ -f "$out/$name/record.json" ] && grep -q '"status": "finished"' "$out/$name/record.json"; then
    return
  fi
  if [ -f "$out/$name/checkpoint.safetensors" ]; then
    $eft train --resume "$out/$name" --no-progress
  else
    rm -rf "${out:?}/$name"
    $eft train --task lm --out "$out" --name "$name" --no-progress "$@"
  fi
}
train lm-full --attention full
train lm-xl --attention xl --param segment=32 --param mem_len=32
train lm-linear --attention linear
$eft context "$out/lm-full" "$out/lm-xl" "$out/lm-linear" --out bench/results
cat bench/results/effective-context.md
