#!/usr/bin/env bash
# The FlatQuant trainer's own tests (tools/flatquant/test_train.py: its Q4_0
# fake quantization against gguf-py's ggml quantizer, the fold undoing the
# transform, act=a4's closed form). Needs the PyTorch venv the trainers share
# (tools/eagle3/setup_venv.sh); skips (77) without it, as CI has no torch.
set -uo pipefail
ROOT="${KESTREL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
CACHE="${KESTREL_CACHE:-$HOME/.cache/kestrel}"
PY="${KESTREL_EAGLE3_PY:-$CACHE/venv-eagle3/bin/python}"
[ -x "$PY" ] || { echo "SKIP: no trainer venv at $PY (tools/eagle3/setup_venv.sh makes it)"; exit 77; }
cd "$ROOT/tools/flatquant" && exec "$PY" test_train.py
