#!/usr/bin/env bash
# Makes .venv-reference: PyTorch (CPU build) and diffusers, for the reference timings
# of experiments/benchmark.py --reference (not needed for anything else). On these
# machines pip takes PyTorch 2.13.0's CPU build from local disk for Python 3.11.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=python3.11
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv-reference/bin/python ]; then
  "$PY" -m venv .venv-reference
fi
.venv-reference/bin/python -m pip install -q --upgrade pip
.venv-reference/bin/python -m pip install -q torch==2.13.0 diffusers==0.42.1
