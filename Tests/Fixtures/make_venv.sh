#!/bin/sh
# Creates ./.venv-fixtures (next to the package root) with what the fixture scripts need:
# CPU PyTorch (from PyPI; the wheel pulls its CUDA runtime packages but runs on CPU),
# numpy, ml_dtypes, safetensors, transformers. Idempotent. CI never runs this.
set -eu
cd "$(dirname "$0")/../.."
[ -x .venv-fixtures/bin/python ] || python3 -m venv .venv-fixtures
.venv-fixtures/bin/pip install --quiet torch numpy ml_dtypes safetensors transformers
echo "ready: $(pwd)/.venv-fixtures/bin/python"
