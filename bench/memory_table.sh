#!/usr/bin/env bash
# Predicted vs measured per-rank memory for gpt-small and gpt-medium at 1, 2 and 4 ranks,
# stages 0-3, under mpirun: worst category ratio (ledger peak / prediction), total, and
# peak RSS against total + the fixed overhead. Prints a Markdown table.
# Usage: bench/memory_table.sh [models...]
set -euo pipefail
cd "$(dirname "$0")/.."
models=${*:-gpt-small gpt-medium}
bin=.build/release/zero-train
echo "| model | ranks | stage | predicted total MiB | measured ledger MiB | worst category ratio | predicted RSS MiB | peak RSS MiB | RSS ratio |"
echo "|---|---|---|---|---|---|---|---|---|"
for model in $models; do
  case $model in gpt-small) mb=8; t=128 ;; *) mb=4; t=256 ;; esac
  for ranks in 1 2 4; do
    for stage in 0 1 2 3; do
      launch/mpirun.sh -n "$ranks" "$bin" memory --model "$model" --ranks "$ranks" --micro-batch $mb --seq-len $t \
          --stage "$stage" --measure --measure-steps 1 --json | python3 bench/memory_row.py
    done
  done
done
