#!/usr/bin/env bash
# Step time against link rate on the local cluster rig (docs/performance.md, "Overlap" and
# "Across hosts"): for each rate, stage and overlap mode, a short training job (gpt-small
# by default) on HOSTS x 1 ranks, and `bench comm` on the same link for the
# communication-alone estimate.
# Usage (root): launch/rig-bench.sh [--rates "none 10gbit 1gbit 200mbit"] [--stages "2 3"]
#               [--overlap "off on"] [--steps 6] [--hosts 2] [--global-micro-batches 4]
#               [--model gpt-small] [--simulated] [-- EXTRA zero-train ARGS]
# --simulated: the same table from HOSTS simulated ranks behind `--simulate-link RATE` (a
# sleep per collective, no network stack, no root needed); "alone" is then bytes / rate.
# Prints one table row per (rate, stage, overlap); medians over the steps after the first
# two. "c. alone" (compute alone) is the overlap-off run's compute (step - wait) at that
# rate and stage: the step's own work with no communication overlapped into it.
set -euo pipefail
cd "$(dirname "$0")/.."
rates="10gbit 1gbit 200mbit" stages="2 3" overlaps="off on" steps=6 hosts=2 micro=4 model=gpt-small simulated=0
while [ $# -gt 0 ]; do
    case "$1" in
        --rates) rates="$2"; shift 2 ;;
        --stages) stages="$2"; shift 2 ;;
        --overlap) overlaps="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        --hosts) hosts="$2"; shift 2 ;;
        --global-micro-batches) micro="$2"; shift 2 ;;
        --model) model="$2"; shift 2 ;;
        --simulated) simulated=1; shift ;;
        --) shift; break ;;
        *) echo "rig-bench.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done
bin=.build/release/zero-train
[ -x "$bin" ] || { echo "rig-bench.sh: build first (swift build -c release)" >&2; exit 2; }
out=$(mktemp -d /tmp/rig-bench.XXXXXX)
trap 'rm -rf "$out"' EXIT
echo "load: $(uptime | sed 's/.*load average: //')"
printf '%-8s %-5s %-7s %7s %9s %7s %9s %7s %8s %8s %13s %14s\n' rate stage overlap "step s" "compute s" "comm s" "comm wait" \
    "alone s" "c. alone" "MB/step" "step/max(c,a)" "step/max(c1,a)"
for rate in $rates; do
    shaping=(--rate "$rate"); [ "$rate" = none ] && shaping=()   # none: unshaped veth
    if [ "$simulated" -eq 1 ]; then
        bits=$(awk -v r="$rate" 'BEGIN { n = r + 0; u = r; sub(/^[0-9.]+/, "", u)
            m = (u == "kbit") ? 1e3 : (u == "mbit") ? 1e6 : (u == "gbit") ? 1e9 : 1; printf "%.0f", n * m }')
        for k in all_gather reduce_scatter all_reduce; do
            echo "{\"backend\": \"zero\", \"collective\": \"$k\", \"busbw_gbps\": $(awk -v b="$bits" 'BEGIN { print b / 8e9 }')}"
        done > "$out/comm-$rate.json"
    else
        launch/local-cluster.sh --hosts "$hosts" --slots 1 "${shaping[@]}" -- "$bin" bench comm --sizes 2M --iterations 5 --json \
            > "$out/comm-$rate.json" 2>/dev/null
    fi
    for stage in $stages; do
        rm -f "$out/alone"
        for overlap in $overlaps; do
            job=(--model "$model" --stage "$stage" --steps "$steps" --global-micro-batches "$micro" --log-every 0
                 --overlap "$overlap" --metrics "$out/m.jsonl" "$@")
            if [ "$simulated" -eq 1 ]; then
                "$bin" --simulate "$hosts" --simulate-link "$rate" "${job[@]}" > /dev/null
            else
                launch/local-cluster.sh --hosts "$hosts" --slots 1 "${shaping[@]}" -- "$bin" "${job[@]}" > /dev/null
            fi
            python3 - "$out/m.jsonl" "$out/comm-$rate.json" "$rate" "$stage" "$overlap" "$out/alone" <<'EOF'
import json, os, statistics, sys
metrics, bench_file, rate, stage, overlap, alone_file = sys.argv[1:7]
rows = [json.loads(l) for l in open(metrics)]
steps = [r for r in rows if "final" not in r]
bench = [json.loads(l) for l in open(bench_file)]
# bytes this rank sends per second, per collective, from bench comm (zero backend):
# for n ranks busbw = sent bytes per rank per second.
rate_of = {b["collective"]: b["busbw_gbps"] * 1e9 for b in bench if b["backend"] == "zero"}
kept = steps[2:] or steps
def med(key): return statistics.median(r[key] for r in kept)
prev = steps[0]
sent = []
for r in steps[1:]:
    sent.append({k: r["comm_bytes"].get(k, 0) - prev["comm_bytes"].get(k, 0) for k in r["comm_bytes"]})
    prev = r
per_step = {k: statistics.median(s[k] for s in sent) for k in sent[0]}
alone = sum(v / rate_of.get(k, rate_of["all_gather"]) for k, v in per_step.items() if v > 0)
step, compute, comm, wait = med("step_seconds"), med("compute_seconds"), med("comm_seconds"), med("comm_wait_seconds")
# Compute alone: the overlap-off run's compute at this rate and stage (this run's if none ran).
if overlap == "off" or not os.path.exists(alone_file):
    open(alone_file, "w").write(repr(compute))
c1 = float(open(alone_file).read())
print("%-8s %-5s %-7s %7.3f %9.3f %7.3f %9.3f %7.3f %8.3f %8.1f %13.2f %14.2f" % (
    rate, stage, overlap, step, compute, comm, wait, alone, c1, sum(per_step.values()) / 1e6,
    step / max(compute, alone), step / max(c1, alone)))
EOF
        done
    done
done
echo "load: $(uptime | sed 's/.*load average: //')"
