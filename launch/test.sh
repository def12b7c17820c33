#!/usr/bin/env bash
# The whole test suite: set up (install what is missing, build), then run every test,
# including the mpirun -n 4 jobs, in release mode (the kernels are too slow in debug).
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
export OMPI_MCA_pml=ob1 OPENBLAS_NUM_THREADS=1
swift test -c release --no-parallel 2>&1 | grep -vE "^\[[0-9]+/[0-9]+\] (Compiling|Emitting|Linking|Write|Build)"
exit "${PIPESTATUS[0]}"
