#!/usr/bin/env bash
# Regenerates bench/results/long-sequences.txt: `full` and `flash` forward+backward at N = 32768
# (B=1, H=4, D=64) with the address space capped below the machine's memory, so that `full`
# running out of memory fails cleanly instead of swapping or invoking the OOM killer.
set -uo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p eft || exit 1
eft=./target/release/eft
out=bench/results/long-sequences.txt
cap=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) * 1024 * 94 / 100 ))
tmp=$(mktemp)
{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) forward+backward at N = 32768, B=1 H=4 D=64, f32," \
    "$(nproc)-core CPU with $(( cap / 1024 / 1024 / 1024 )) GiB address-space cap"
  for mechanism in full flash; do
    echo "\$ prlimit --as=$cap eft profile attention --mechanism $mechanism --len 32768 --repeats 1"
    prlimit --as="$cap" $eft profile attention --mechanism "$mechanism" --len 32768 --repeats 1 \
      2>"$tmp.err"
    status=$?
    [ -s "$tmp.err" ] && echo "$(head -n 1 "$tmp.err")   (first line of stderr)"
    echo "exit status: $status"
  done
} >"$tmp"
rm -f "$tmp.err"
mv "$tmp" "$out"
cat "$out"
