#!/usr/bin/env bash
# zero-train against PyTorch on the same GPT configs (gpt-small B 8 T 128, gpt-medium B 4 T 256),
# 2 ranks x 1 thread, every variant alternating round-robin in one run:
#   ddp-bf16    PyTorch DDP + torch.autocast("cpu", bfloat16) + fused AdamW (gloo)
#   ddp-fp32    PyTorch DDP fp32 + fused AdamW
#   fsdp2-bf16  PyTorch FSDP2 fully_shard (FULL_SHARD), MixedPrecisionPolicy(bf16 params, fp32 reduce)
#   ours-s0-bf16, ours-s3-bf16, ours-s0-fp32, ours-s3-fp32
#               launch/mpirun.sh -n 2 zero-train --stage 0|3 --precision bf16|fp32
# Prints median tokens/s (warm-up steps excluded), peak RSS per rank and our/their ratios.
#
# Usage: bench/vs_pytorch.sh [--quick] [--models gpt-small,gpt-medium] [--steps 10] [--warmup 2]
#                            [--rounds 3] [--variants ddp-bf16,...] [--json FILE] [--no-build]
# Builds the release binary (unless --no-build) and uses .venv-fixtures (torch CPU from PyPI,
# made by Tests/Fixtures/make_venv.sh when missing); VS_PYTORCH_PYTHON picks another Python.
set -euo pipefail
cd "$(dirname "$0")/.."
build=1
args=()
for a in "$@"; do
    case "$a" in
        --no-build) build=0 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) args+=("$a") ;;
    esac
done
python=${VS_PYTORCH_PYTHON:-.venv-fixtures/bin/python}
if [ ! -x "$python" ]; then
    echo "vs_pytorch: creating .venv-fixtures (torch from PyPI, a few GB)" >&2
    sh Tests/Fixtures/make_venv.sh >&2
fi
"$python" -c 'import torch' 2>/dev/null || { echo "vs_pytorch: $python cannot import torch" >&2; exit 1; }
if [ "$build" -eq 1 ]; then
    echo "vs_pytorch: swift build -c release" >&2
    swift build -c release >&2
fi
export OMP_NUM_THREADS=1
exec "$python" bench/vs_pytorch.py ${args[@]+"${args[@]}"}
