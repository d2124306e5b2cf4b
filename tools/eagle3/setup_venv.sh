#!/usr/bin/env bash
# Creates the Python environment of tools/eagle3 (torch, numpy, gguf from PyPI)
# in a cache folder outside the repo. Idempotent: an existing venv that already
# imports the three packages is kept. Prints the venv's python on its last line.
set -euo pipefail
CACHE="${KESTREL_CACHE:-$HOME/.cache/kestrel}"
VENV="${EAGLE3_VENV:-$CACHE/venv-eagle3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python3}"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import torch, numpy, gguf" 2>/dev/null; then
  echo "$VENV/bin/python"; exit 0
fi
mkdir -p "$CACHE"
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --upgrade pip >&2
"$VENV/bin/python" -m pip install -r "$HERE/requirements.txt" >&2
"$VENV/bin/python" -c "import torch, numpy, gguf" >&2
echo "$VENV/bin/python"
