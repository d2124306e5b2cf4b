#!/usr/bin/env bash
# Configures and builds kestrel in build/ (Release, 2 jobs).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${KESTREL_BUILD:-$root/build}"
cmake -S "$root" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
ninja -C "$BUILD" -j"${KESTREL_JOBS:-2}"
