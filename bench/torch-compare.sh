#!/usr/bin/env bash
# eft against plain PyTorch on this machine (bench/torch_compare.py): attention calls, whole
# training steps and the GEMM rate, each in fresh processes, eft and PyTorch interleaved; writes
# bench/results/torch-vs-eft.{md,json}. About 15 minutes on 2 cores.
# With --install, first installs torch from PyPI into bench/.venv (about 3 GB with its CUDA
# libraries, which the CPU run does not use but PyPI's wheel needs to import).
set -euo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" = "--install" ]; then
  shift
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -c 'import torch' 2>/dev/null || .venv/bin/pip install --quiet 'torch==2.15.0'
fi
if [ ! -x .venv/bin/python ]; then
  echo "bench/.venv has no torch; run bench/torch-compare.sh --install" >&2
  exit 2
fi
(cd .. && cargo build --release -p eft)
exec .venv/bin/python torch_compare.py "$@"
