#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: installs the C libraries zero-train
# binds (Open MPI, OpenBLAS, oneDNN) when they are missing, quietly when present, then builds
# the release binary. Usage: launch/setup.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in libopenmpi-dev openmpi-bin libopenblas-dev libdnnl-dev pkg-config; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ "${1:-}" != "--no-build" ]; then
    echo "setup: building zero-train (release)"
    swift build -c release 2>&1 | grep -E "error|warning: unre|Compiling ZeroTrainCLI|Build complete" || true
    test -x .build/release/zero-train || { echo "setup: build failed" >&2; exit 1; }
fi
