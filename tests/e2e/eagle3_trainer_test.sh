#!/usr/bin/env bash
# The EAGLE-3 trainer's own tests (tools/eagle3/test_train.py: the batched
# training-time-test forward against a step-by-step float64 drafter, the head
# GGUF read back, learning on a toy). Needs the trainer's PyTorch venv
# (tools/eagle3/setup_venv.sh); skips (77) without it, as CI has no torch.
set -uo pipefail
ROOT="${KESTREL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
CACHE="${KESTREL_CACHE:-$HOME/.cache/kestrel}"
PY="${KESTREL_EAGLE3_PY:-$CACHE/venv-eagle3/bin/python}"
[ -x "$PY" ] || { echo "SKIP: no trainer venv at $PY (tools/eagle3/setup_venv.sh makes it)"; exit 77; }
cd "$ROOT/tools/eagle3" && exec "$PY" test_train.py
