#!/usr/bin/env bash
# eft's weights in PyTorch: trains two short quick-ListOps runs with eft (CLS pooling and learned
# positions; mean pooling and sinusoidal positions), exports each with `eft export --format
# pytorch --check-batch`, loads them into bench/torch_reference.py with load_state_dict(strict=True)
# and compares logits on the first 8 test examples; writes bench/results/export-pytorch.md.
# Needs torch and safetensors in bench/.venv (--install puts them there). About 2 minutes.
set -euo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" = "--install" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -c 'import torch' 2>/dev/null || .venv/bin/pip install --quiet 'torch==2.15.0'
  .venv/bin/python -c 'import safetensors' 2>/dev/null || .venv/bin/pip install --quiet 'safetensors==0.8.0'
fi
.venv/bin/python -c 'import torch, safetensors' 2>/dev/null || {
  echo "bench/.venv lacks torch or safetensors; run bench/export-check.sh --install" >&2
  exit 2
}
(cd .. && cargo build --release -p eft)
eft=../target/release/eft
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rows=""
status=0
for variant in "cls-learned" "mean-sinusoidal"; do
  pool=${variant%-*}
  positions=${variant#*-}
  $eft train --task listops --preset quick --attention full --no-progress --out "$work" \
    --name "listops-full-$variant" --set train.steps=200 --set "model.pool=\"$pool\"" \
    --set "model.positions=\"$positions\"" >/dev/null
  run="$work/listops-full-$variant"
  $eft export "$run" "$run.safetensors" --format pytorch --check-batch "$run.check.safetensors"
  row=$(.venv/bin/python torch_reference.py "$run" "$run.safetensors" "$run.check.safetensors" \
    2>/dev/null) || status=1
  rows+="$row"$'\n'
done
{
  echo "# eft weights in PyTorch"
  echo
  echo "\`bench/export-check.sh\` on $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD):" \
    "two quick ListOps runs (200 steps) trained by eft, exported with \`eft export --format" \
    "pytorch\`, loaded into plain PyTorch modules (\`bench/torch_reference.py\`) with" \
    "\`load_state_dict(strict=True)\`; the logits of the first 8 test examples compared with" \
    "eft's. PyTorch $(.venv/bin/python -c 'import torch; print(torch.__version__)' 2>/dev/null)," \
    "f32, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)."
  echo
  echo "| run | attention | tokens [B, N] | classes | max abs logit difference | within 1e-5 |"
  echo "|---|---|---|---|---|---|"
  printf '%s' "$rows"
} >results/export-pytorch.md
cat results/export-pytorch.md
exit $status
