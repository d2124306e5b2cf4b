#!/usr/bin/env bash
# Accuracy at equal bytes (issue 17): one model file re-quantized to 4 bits
# by kestrel (plain, --awq, --rotate, both) and by llama.cpp's own tools with
# an importance matrix from the same calibration text (llama-imatrix +
# llama-quantize), each scored on WikiText-2 against the source file: PPL,
# KLD and top-1 agreement (`kestrel perplexity --kl-divergence`).
#
#   bench/e2e/quant_accuracy.sh MODEL.gguf [CHUNKS] [TYPES] [KINDS]
#
# CHUNKS: 512-token chunks of wiki.test.raw scored (default 20). TYPES:
# "q4_0 q4_k" (default), or llama.cpp's mixes (q4_k_m, ...: compared with
# llama-quantize's file of the same mix, byte for byte the same size). KINDS: kestrel's variants, "plain awq rot rot_awq"
# (default), GPTQ's rounding "gptq awq_gptq rot_gptq rot_awq_gptq" (32-element formats only), llama-imatrix's
# file read by kestrel quantize "imatrix gptq_imatrix" (q4_0/q5_0), and "flat" (FlatQuant, q4_0 only: tools/flatquant/train.py on
# 5120 tokens of the model's own generations, `kestrel calibrate text`, then
# `kestrel quantize --flatquant`; needs the trainers' venv). ACT=a4 scores
# every file with 4-bit activations (W4A4); default a8. The calibration text is the model's own generations
# (2048 tokens, seed 42; never the evaluation text), written once and given
# to both tools. Files go to $KESTREL_CACHE/quant-accuracy/NAME/.
set -euo pipefail
MODEL=$(readlink -f "$1")
CHUNKS=${2:-20}
TYPES=${3:-"q4_0 q4_k"}
KINDS=${4:-"plain awq rot rot_awq"}
ACT=${ACT:-a8}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KESTREL=${KESTREL:-$ROOT/build/kestrel}
LLAMA=${LLAMA_BIN:-$("$ROOT/tools/llamacpp/build.sh" | tail -1)/bin}
EVAL=${EVAL_TEXT:-$ROOT/../shared/data/wikitext-2-raw/wiki.test.raw}
NAME=$(basename "$MODEL" .gguf)
OUT=${KESTREL_CACHE:-$HOME/.cache/kestrel}/quant-accuracy/$NAME
mkdir -p "$OUT"
log() { echo "quant_accuracy: $*" >&2; }

CALIB=$OUT/calibration.txt
BASE=$OUT/base.kld
if [ ! -s "$BASE" ]; then
  log "baseline log-probs of the source file ($CHUNKS chunks)"
  "$KESTREL" perplexity -m "$MODEL" -f "$EVAL" -c 512 --chunks "$CHUNKS" --kl-divergence-base "$BASE" >/dev/null 2>&1
fi
if [ ! -s "$OUT/imatrix.gguf" ]; then
  if [ ! -s "$CALIB" ]; then
    log "calibration text: the model's own generations"
    "$KESTREL" quantize "$MODEL" "$OUT/plain_q4_0.gguf" Q4_0 --awq --save-calibration-text "$CALIB" >/dev/null 2>&1
    rm -f "$OUT/plain_q4_0.gguf"
  fi
  log "llama-imatrix on the same text"
  "$LLAMA/llama-imatrix" -m "$MODEL" -f "$CALIB" -o "$OUT/imatrix.gguf" -c 512 -t 2 >"$OUT/imatrix.log" 2>&1
fi

make_variant() {  # name, then the command that writes $OUT/name.gguf
  local name=$1; shift
  [ -s "$OUT/$name.gguf" ] && return 0
  log "making $name"
  "$@" >"$OUT/$name.log" 2>&1 || { log "failed: $name (see $OUT/$name.log)"; return 1; }
}

ROWS=()
for t in $TYPES; do
  T=${t^^}
  for k in $KINDS; do
    case $k in
      plain) name=kestrel_${t}; flags=() ;;
      awq) name=kestrel_${t}_awq; flags=(--awq -f "$CALIB") ;;
      rot) name=kestrel_${t}_rot; flags=(--rotate) ;;
      rot_awq) name=kestrel_${t}_rot_awq; flags=(--rotate --awq -f "$CALIB") ;;
      gptq) name=kestrel_${t}_gptq; flags=(--gptq -f "$CALIB") ;;
      awq_gptq) name=kestrel_${t}_awq_gptq; flags=(--awq --gptq -f "$CALIB") ;;
      rot_gptq) name=kestrel_${t}_rot_gptq; flags=(--rotate --gptq -f "$CALIB") ;;
      rot_awq_gptq) name=kestrel_${t}_rot_awq_gptq; flags=(--rotate --awq --gptq -f "$CALIB") ;;
      imatrix) name=kestrel_${t}_imatrix; flags=(--imatrix "$OUT/imatrix.gguf") ;;
      gptq_imatrix) name=kestrel_${t}_gptq_imatrix; flags=(--gptq --imatrix "$OUT/imatrix.gguf" -f "$CALIB") ;;
      flat)
        [ "$t" = q4_0 ] || { log "flat: FlatQuant's transforms are trained for q4_0 only; skipping $t"; continue; }
        name=kestrel_${t}_flat; flags=(--flatquant "$OUT/flatquant.gguf")
        if [ ! -s "$OUT/flatquant.gguf" ]; then
          PY=${KESTREL_EAGLE3_PY:-${KESTREL_CACHE:-$HOME/.cache/kestrel}/venv-eagle3/bin/python}
          [ -s "$OUT/flatquant_ids.json" ] || "$KESTREL" calibrate text -m "$MODEL" --tokens 5120 -s 42 \
            --ids "$OUT/flatquant_ids.json" >/dev/null 2>&1
          log "training FlatQuant's transforms (tools/flatquant/train.py; progress in $OUT/flatquant_train.log)"
          "$PY" "$ROOT/tools/flatquant/train.py" --model "$MODEL" --tokens "$OUT/flatquant_ids.json" \
            --out "$OUT/flatquant.gguf" ${FLATQUANT_ARGS:-} >"$OUT/flatquant_train.log" 2>&1
        fi ;;
      *) echo "quant_accuracy: unknown kind '$k' (plain awq rot rot_awq gptq awq_gptq rot_gptq rot_awq_gptq imatrix gptq_imatrix flat)" >&2; exit 1 ;;
    esac
    make_variant "$name" "$KESTREL" quantize "$MODEL" "$OUT/$name.gguf" "$T" "${flags[@]}"
    ROWS+=("$name")
  done
  if [ "$t" = q4_0 ]; then
    make_variant llama_q4_0 "$LLAMA/llama-quantize" --allow-requantize "$MODEL" "$OUT/llama_q4_0.gguf" Q4_0 2
    make_variant llama_q4_0_imatrix "$LLAMA/llama-quantize" --allow-requantize --imatrix "$OUT/imatrix.gguf" "$MODEL" "$OUT/llama_q4_0_imatrix.gguf" Q4_0 2
    ROWS+=(llama_q4_0 llama_q4_0_imatrix)
  elif [ "$t" != q4_k ]; then  # a mix (q4_k_m, q5_k_s, ...): llama-quantize's own, with the imatrix
    make_variant "llama_${t}_imatrix" "$LLAMA/llama-quantize" --allow-requantize --imatrix "$OUT/imatrix.gguf" "$MODEL" "$OUT/llama_${t}_imatrix.gguf" "$T" 2
    ROWS+=("llama_${t}_imatrix")
  else
    for l in Q4_K_S Q4_K_M; do
      make_variant "llama_${l,,}_imatrix" "$LLAMA/llama-quantize" --allow-requantize --imatrix "$OUT/imatrix.gguf" "$MODEL" "$OUT/llama_${l,,}_imatrix.gguf" "$l" 2
      ROWS+=("llama_${l,,}_imatrix")
    done
  fi
done

CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
echo "$NAME: WikiText-2 test, $CHUNKS chunks of 512, against the source file, activations $ACT; CPU: $CPU"
echo
echo "| file | MiB | PPL | ΔPPL | KLD | same top-1 |"
echo "|---|---:|---:|---:|---:|---:|"
for r in "${ROWS[@]}"; do
  f=$OUT/$r.gguf
  [ -s "$f" ] || continue
  log "scoring $r"
  s=$("$KESTREL" perplexity -m "$f" -f "$EVAL" -c 512 --chunks "$CHUNKS" --kl-divergence "$BASE" --switch "act=$ACT" 2>&1)
  ppl=$(sed -n 's/^Mean PPL(Q) *: *\([0-9.]*\).*/\1/p' <<<"$s")
  base=$(sed -n 's/^Mean PPL(base) *: *\([0-9.]*\).*/\1/p' <<<"$s")
  kld=$(sed -n 's/^Mean *KLD: *\([0-9.]*\).*/\1/p' <<<"$s")
  top=$(sed -n 's/^Same top p: *\([0-9.]*\).*/\1/p' <<<"$s")
  mib=$(awk -v b="$(stat -c %s "$f")" 'BEGIN { printf "%.1f", b / 1048576 }')
  awk -v r="$r" -v m="$mib" -v p="$ppl" -v b="$base" -v k="$kld" -v t="$top" \
    'BEGIN { printf "| %s | %s | %.3f | %+.2f %% | %.4f | %.2f %% |\n", r, m, p, 100 * (p / b - 1), k, t }'
done
