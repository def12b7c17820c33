#!/bin/sh
# Creates ./.venv-fixtures (next to the package root) with what the fixture scripts need.
# Idempotent: re-running only installs what is missing. CI never runs this.
set -eu
cd "$(dirname "$0")/../.."
if [ ! -x .venv-fixtures/bin/python ]; then
    python3 -m venv .venv-fixtures
fi
.venv-fixtures/bin/pip install --quiet --upgrade pip
.venv-fixtures/bin/pip install --quiet --index-url https://download.pytorch.org/whl/cpu torch
.venv-fixtures/bin/pip install --quiet numpy ml_dtypes safetensors transformers
echo "ready: $(pwd)/.venv-fixtures/bin/python"
