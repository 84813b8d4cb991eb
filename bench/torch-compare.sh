#!/usr/bin/env bash
# Runs bench/torch_compare.py: the attention sweep in PyTorch, and eft/PyTorch ratios.
# With --install, first installs torch from PyPI into bench/.venv (about 3 GB with its CUDA
# libraries, which the CPU run does not use but PyPI's wheel needs to import).
set -euo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" = "--install" ]; then
  shift
  python3 -m venv .venv
  .venv/bin/pip install --quiet 'torch==2.5.1'
fi
if [ ! -x .venv/bin/python ]; then
  echo "bench/.venv has no torch; run bench/torch-compare.sh --install" >&2
  exit 2
fi
exec .venv/bin/python torch_compare.py "$@"
