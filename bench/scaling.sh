#!/usr/bin/env bash
# Tokens/s and bytes sent per optimizer step per rank, for a model at 1, 2 and 4 ranks and
# every stage under mpirun, next to the ZeRO paper's volume: 2 Psi (stages 0-2) or 3 Psi
# (stage 3) parameter-sized messages, each rank sending (N-1)/N of it, 2 bytes per bf16
# element. Prints a Markdown table. With A = G/N accumulation steps, gradients are reduced
# A times per step (the canonical order reduces each accumulation step). Stage 0's
# all-reduce sends its second half (the reduced sums) in fp32: ratio 1.5.
# Usage: bench/scaling.sh [model] [steps] [global-micro-batches]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-gpt-small}; steps=${2:-6}; g=${3:-4}
bin=.build/release/zero-train
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "model $model, G=$g micro-batches per step, $(nproc) cores"
echo
echo "| ranks | stage | tokens/s (median) | sent B/step/rank | paper volume B/step/rank | ratio |"
echo "|---|---|---|---|---|---|"
for ranks in 1 2 4; do
  for stage in 0 1 2 3; do
    m=$out/m-$ranks-$stage.jsonl
    launch/mpirun.sh -n "$ranks" "$bin" --model "$model" --stage "$stage" --steps "$steps" \
        --global-micro-batches "$g" --metrics "$m" --log-every 0 >/dev/null
    python3 - "$m" "$ranks" "$stage" "$g" <<'PY'
import json, sys, statistics
path, n, stage, g = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = [json.loads(l) for l in open(path)]
final = [r for r in rows if r.get("final")][0]
steps = [r for r in rows if not r.get("final")]
tps = statistics.median(r["tokens_per_second"] for r in steps[1:])
sent = [sum(r["comm_bytes"].get(k, 0) for k in ("all_reduce", "reduce_scatter", "all_gather")) for r in steps]
per_step = statistics.median(b - a for a, b in zip(sent, sent[1:]))
psi, accum = final["params"], g // n
# Per accumulation step the gradient is reduced (1 Psi); stage 0 all-reduces it (2 Psi),
# stages 1-2 gather the weights once per step (1 Psi), stage 3 gathers them in forward
# and backward of every micro-batch (2 Psi). With A = 1 this is the paper's 2 Psi / 3 Psi.
if stage == 0:
    volume = accum * 2 * psi
elif stage == 3:
    volume = accum * 3 * psi
else:
    volume = accum * psi + psi
theory = volume * 2 * (n - 1) / n
ratio = f"{per_step / theory:.2f}" if theory else "-"
print(f"| {n} | {stage} | {tps:,.0f} | {per_step:,.0f} | {theory:,.0f} | {ratio} |")
PY
  done
done
