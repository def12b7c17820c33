#!/usr/bin/env bash
# The main job: set up (install what is missing, build), then train gpt-small on the
# embedded corpus with 4 ranks under mpirun. Extra arguments go to zero-train.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
exec launch/mpirun.sh -n "${RANKS:-4}" .build/release/zero-train "$@"
