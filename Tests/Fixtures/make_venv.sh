#!/bin/sh
# Creates ./.venv-fixtures (idempotent) with what the fixture scripts need. CI never runs this.
set -e
cd "$(dirname "$0")/../.."
[ -x .venv-fixtures/bin/python ] || python3 -m venv .venv-fixtures
.venv-fixtures/bin/pip install --quiet torch numpy ml_dtypes safetensors transformers
echo "ok: $(pwd)/.venv-fixtures"
