#!/usr/bin/env bash
# The main job on a fresh Debian machine: install what is needed, fetch the
# model into ~/.cache/kestrel, build, install `kestrel`, and generate text.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install_deps.sh"
"$root/scripts/fetch_models.sh"
"$root/scripts/build.sh"
cmake --install "$root/build" --prefix "${KESTREL_PREFIX:-$HOME/.local}" >/dev/null
echo "installed kestrel to ${KESTREL_PREFIX:-$HOME/.local}/bin" >&2
"$root/build/kestrel" run --chat -p "Write a short poem about a kestrel hovering over a field." -n 96 --temp 0.7 --seed 42
