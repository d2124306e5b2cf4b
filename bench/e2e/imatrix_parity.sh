#!/usr/bin/env bash
# `kestrel quantize --imatrix` against `llama-quantize --imatrix` (issue 17):
# one importance matrix from llama-imatrix, then both tools write each TYPE
# from MODEL with it, and every tensor of the two files is compared
# (bench/e2e/gguf_tensor_diff.py). Exits non-zero if any file differs.
#
#   bench/e2e/imatrix_parity.sh MODEL.gguf [TYPES]
#
# TYPES: default "Q4_K_M Q5_K_S Q6_K Q4_1 Q5_1" (Q4_0 and Q5_0 take kestrel's own
# weighted search, not llama-quantize's bytes). The calibration text is 700
# tokens the model generates itself (never the evaluation text). Files go to
# $KESTREL_CACHE/imatrix-parity/NAME/.
set -euo pipefail
MODEL=$(readlink -f "$1")
TYPES=${2:-"Q4_K_M Q5_K_S Q6_K Q4_1 Q5_1"}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KESTREL=${KESTREL:-$ROOT/build/kestrel}
LLAMA=${LLAMA_BIN:-$("$ROOT/tools/llamacpp/build.sh" | tail -1)/bin}
NAME=$(basename "$MODEL" .gguf)
OUT=${KESTREL_CACHE:-$HOME/.cache/kestrel}/imatrix-parity/$NAME
mkdir -p "$OUT"
log() { echo "imatrix_parity: $*" >&2; }

if [ ! -s "$OUT/imatrix.gguf" ]; then
  log "calibration text: 700 tokens of the model's own generation"
  "$KESTREL" run -m "$MODEL" -p "Once upon a time, in a small village by the sea," -n 700 --temp 0.9 --seed 11 \
    >"$OUT/calibration.txt" 2>/dev/null
  log "llama-imatrix"
  "$LLAMA/llama-imatrix" -m "$MODEL" -f "$OUT/calibration.txt" -c 128 -o "$OUT/imatrix.gguf" -t 2 \
    >"$OUT/imatrix.log" 2>&1
fi
failed=0
for T in $TYPES; do
  "$LLAMA/llama-quantize" --allow-requantize --imatrix "$OUT/imatrix.gguf" "$MODEL" "$OUT/llama_$T.gguf" "$T" 2 \
    >"$OUT/llama_$T.log" 2>&1
  "$KESTREL" quantize "$MODEL" "$OUT/kestrel_$T.gguf" "$T" --imatrix "$OUT/imatrix.gguf" >"$OUT/kestrel_$T.log" 2>&1
  if summary=$(python3 "$ROOT/bench/e2e/gguf_tensor_diff.py" "$OUT/llama_$T.gguf" "$OUT/kestrel_$T.gguf"); then
    echo "$T: $(echo "$summary" | tail -1)"
  else
    echo "$T: DIFFERS"; echo "$summary" | tail -6; failed=1
  fi
  rm -f "$OUT/llama_$T.gguf" "$OUT/kestrel_$T.gguf"
done
exit $failed
