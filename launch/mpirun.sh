#!/usr/bin/env bash
# mpirun with what zero-train needs here:
#   --allow-run-as-root only when root, --oversubscribe when ranks exceed cores,
#   the ob1 PML (skips the slow UCX probe), no help-message aggregation (Open MPI 4.1's
#   mpirun can hang aggregating several ranks' MPI_Abort messages), OpenBLAS pinned to one thread per rank
#   so that ranks do not fight over cores.
# Multi-node: add --hostfile launch/hostfile (see launch/hostfile.example) and the TCP
# options there; --oversubscribe is decided from this machine's cores only.
# Usage: launch/mpirun.sh -n 4 [mpirun options] -- PROGRAM [ARGS...]
#    or: launch/mpirun.sh -n 4 PROGRAM [ARGS...]
set -euo pipefail
ranks=1
opts=()
while [ $# -gt 0 ]; do
    case "$1" in
        -n|-np) ranks="$2"; opts+=("$1" "$2"); shift 2 ;;
        # mpirun options that take values (so the value is not mistaken for PROGRAM)
        --mca|-mca|--gmca) opts+=("$1" "$2" "$3"); shift 3 ;;
        --hostfile|-hostfile|--machinefile|-machinefile|--host|-host|-H|-x|--map-by|--bind-to|--rank-by|--npernode|-npernode|--wdir|--output-filename|--timeout)
            opts+=("$1" "$2"); shift 2 ;;
        --) shift; break ;;
        -*) opts+=("$1"); shift ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "usage: launch/mpirun.sh -n N PROGRAM [ARGS...]" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] && opts+=(--allow-run-as-root)
cores=$(nproc)
[ "$ranks" -gt "$cores" ] && opts+=(--oversubscribe)
threads=$(( cores / ranks )); [ "$threads" -lt 1 ] && threads=1
exec mpirun "${opts[@]}" --bind-to none --mca pml ob1 --mca orte_base_help_aggregate 0 \
    -x OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-$threads}" "$@"
