#!/usr/bin/env bash
# Regenerates the llama.cpp logits fixtures in tests/golden/logits/ (see the README
# there): tests/golden/logits/smollm2-q4_1/ always, qwen2.5-1.5b-q4_k_m/ when the
# Qwen2 model has been assembled (scripts/fetch_models.sh qwen2).
# Needs: the models in $KESTREL_CACHE/models (fetched here for SmolLM2), and the
# llama.cpp build (tools/llamacpp/build.sh, run here; a few minutes the first time).
# Output is deterministic for a given llama.cpp build and CPU (1 thread).
# Usage: make_logits_fixtures.sh [SET...]  (sets: smollm2 qwen2.5-1.5b qwen2.5-0.5b gemma3;
# default: all). Regenerate only what you must: the committed sets record the CPU
# they were made on (fixtures.json), and a set remade elsewhere moves in the last bits.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CACHE="${KESTREL_CACHE:-$HOME/.cache/kestrel}"
OUT_BASE="$ROOT/tests/golden/logits"
SDIST_VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"

WANT=("$@")
[ ${#WANT[@]} -gt 0 ] || WANT=(smollm2 qwen2.5-1.5b qwen2.5-0.5b gemma3)
wanted() { local w; for w in "${WANT[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }

say() { echo "[make_logits_fixtures] $*" >&2; }
die() { echo "[make_logits_fixtures] error: $*" >&2; exit 1; }

"$ROOT/scripts/fetch_models.sh"
BUILD="$("$ROOT/tools/llamacpp/build.sh" | tail -n 1)"
BIN="$("$ROOT/tools/llamacpp/compile.sh" dump_logits | tail -n 1)"

# Version facts of the oracle, copied into every fixtures.json.
llama_version=$(sed -n 's/^#define LLAMA_VERSION "\(.*\)"/\1/p' "$BUILD/src/llama-version.h" 2>/dev/null || true)
build_number=$(sed -n 's/^int LLAMA_BUILD_NUMBER = \(.*\);/\1/p' "$BUILD/common/build-info.cpp" 2>/dev/null || true)
commit=$(sed -n 's/^char const \* LLAMA_COMMIT = "\(.*\)";/\1/p' "$BUILD/common/build-info.cpp" 2>/dev/null || true)
compiler=$(sed -n 's/^char const \* LLAMA_COMPILER = "\(.*\)";/\1/p' "$BUILD/common/build-info.cpp" 2>/dev/null || true)
native=$(sed -n 's/^GGML_NATIVE:BOOL=\(.*\)/\1/p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# prompt NAME TEXT: writes TEXT's exact bytes (no added newline) to $TMP/NAME.txt.
prompt() { printf '%s' "$2" >"$TMP/$1.txt"; }

# --- prompts for SmolLM2 ------------------------------------------------------------
prompt english "The capital of France is"
prompt chat $'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the tallest mountain in the world?<|im_end|>\n<|im_start|>assistant\n'
prompt code $'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n    if n < 2:\n        return n\n'
prompt numbers "Compute: 1234 * 5678 = 7006652; 3.14159 + 2.71828 = 5.85987; dates 2024-05-24, hex 0x1F, 1e-9, -42, 100000000."
prompt french "Le petit chat noir dort sur le canapé près de la fenêtre, et il rêve de poissons."
prompt cjk "人工智能正在改变世界。東京は日本の首都です。한국어도 조금."
prompt unicode_emoji "Привет, мир! 🚀🎉 Ünïcödé — naïve café, ½ ≠ ∞."
prompt whitespace $'  two leading spaces\n\n\ttab\tand    runs   of spaces\r\nend  '
prompt single "Hello"
prompt long "In the early morning, before the town woke up, the baker opened the heavy wooden \
door of her shop and lit the old brick oven. She had done this every day for thirty years, \
and yet she still enjoyed the quiet moment when the first loaves went in and the smell of \
bread slowly filled the narrow street. Her neighbours said that they could tell the time by \
it. The schoolteacher walked past at half past six, always stopping to buy two rolls, one \
for himself and one for the stray cat that waited by the fountain. At seven the fishermen \
came back from the harbour, tired and hungry, with stories about the weather and the price \
of fuel. By eight the shop was full of children on their way to school, counting coins in \
their small hands and arguing about which pastry was the best. The baker listened to all of \
them, smiled, and said very little, but she remembered every name and every favourite cake. When the last customer had \
gone, she swept the floor and sat down with a cup of tea."
prompt prefill64 $'Once upon a time, in a small village at the edge of a great forest, there lived a curious girl named Mira.\nEvery evening she climbed the hill behind her house to watch the stars, and she wrote down what she saw in a notebook. She dreamed of sailing across the sea one day to see the southern sky.'

# gen_set DIR MODEL N_GEN [dump_logits case args...]
gen_set() {
  local dir="$1" model="$2" n_gen="$3"; shift 3
  [ -f "$model" ] || die "model $model is missing (scripts/fetch_models.sh)"
  local sha; sha=$(sha256sum "$model" | cut -d' ' -f1)
  local stage; stage="$TMP/out-$(basename "$dir")"
  mkdir -p "$stage"
  say "running llama.cpp on $(basename "$model") -> $dir"
  "$BIN" --model "$model" --out "$stage" --threads 1 --n-gen "$n_gen" --stride 16 \
    --info "llama_cpp_python_sdist=$SDIST_VERSION" --info "llama_version=$llama_version" \
    --info "llama_build_info=b${build_number}-${commit}" --info "llama_compiler=$compiler" \
    --info "ggml_native=$native" --info "model_file=$(basename "$model")" --info "model_sha256=$sha" \
    --info "generated_by=tests/golden/make_logits_fixtures.sh" "$@"
  mkdir -p "$dir"
  rm -f "$dir"/*.f32 "$dir"/fixtures.json
  cp "$stage"/* "$dir"/
}

# Sanity checks on what the prompts turned into (a prompt that silently tokenizes
# differently than intended would make a weaker fixture).
check_set() {
  python3 - "$1/fixtures.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
n = {c["name"]: c["n_tokens"] for c in d["cases"]}
def need(ok, msg):
    if not ok:
        sys.exit(f"fixture check failed: {msg} ({n})")
if "single" in n: need(n["single"] == 1, "'single' must be exactly one token")
if "long" in n: need(180 <= n["long"] <= 260, "'long' should be ~200 tokens")
if "prefill64" in n: need(56 <= n["prefill64"] <= 72, "'prefill64' should be ~64 tokens")
print("  " + ", ".join(f"{k}:{v}" for k, v in n.items()))
PY
}

if wanted smollm2; then
SMOL_DIR="$OUT_BASE/smollm2-q4_1"
cases=()
for name in english chat code numbers french cjk unicode_emoji whitespace single long; do
  cases+=(--case "$name" "$TMP/$name.txt")
done
gen_set "$SMOL_DIR" "$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf" 32 "${cases[@]}" \
  --all-positions prefill64 "$TMP/prefill64.txt"
check_set "$SMOL_DIR" >&2

# The same prompts through llama.cpp's AMX kernels (allowed here): a second
# llama.cpp answer for the same file. The tests use the spread between the two
# as the measure of how far llama.cpp's own numerics move, since SmolLM2
# amplifies last-bit differences (see tests/golden/logits/README.md).
gen_set "$OUT_BASE/smollm2-q4_1-amx" "$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf" 32 "${cases[@]}" --allow-amx
check_set "$OUT_BASE/smollm2-q4_1-amx" >&2
fi

# --- Qwen2.5-Coder 1.5B and 0.5B (optional; one prompt set for both) -----------------
prompt q_chat $'<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nWrite a Python function that reverses a string.<|im_end|>\n<|im_start|>assistant\n'
prompt q_code $'#include <vector>\n\nint sum(const std::vector<int>& v) {\n'
prompt q_english "The quick brown fox jumps over the lazy dog because"
prompt q_cjk "快速排序算法的时间复杂度是"

# qwen_set SET DIR MODEL FETCH_ARG: the Qwen prompts through MODEL into DIR, when
# SET is wanted and MODEL has been fetched (scripts/fetch_models.sh FETCH_ARG).
qwen_set() {
  local set="$1" dir="$2" model="$3" fetch_arg="$4"
  wanted "$set" || return 0
  if [ ! -f "$model" ]; then
    say "$set model not found ($model): skipping its fixtures (scripts/fetch_models.sh $fetch_arg)"
    return 0
  fi
  gen_set "$dir" "$model" 16 \
    --case chat "$TMP/q_chat.txt" --case code "$TMP/q_code.txt" \
    --case english "$TMP/q_english.txt" --case cjk "$TMP/q_cjk.txt"
  check_set "$dir" >&2
}
qwen_set qwen2.5-1.5b "$OUT_BASE/qwen2.5-1.5b-q4_k_m" "$CACHE/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" qwen2
# q5_0, q6_K and q8_0 tensors in one file:
qwen_set qwen2.5-0.5b "$OUT_BASE/qwen2.5-0.5b" "$CACHE/models/qwen2.5-coder-0.5b-instruct.gguf" qwen2-0.5b

# --- Gemma 3 270M (optional): the gemma chat format, code, text, CJK, emoji and
# whitespace runs (Gemma's vocab has user-defined tokens for runs of spaces,
# tabs and newlines); 64 greedy tokens each.
prompt g_chat $'<start_of_turn>user\nWhat is the tallest mountain in the world?<end_of_turn>\n<start_of_turn>model\n'
prompt g_code $'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n    if n < 2:\n        return n\n'
prompt g_english "The quick brown fox jumps over the lazy dog because"
prompt g_cjk "人工智能正在改变世界。東京は日本の首都です。"
prompt g_whitespace $'  two leading spaces\n\n\ttab\tand    runs   of spaces\r\nend  '
if wanted gemma3; then
  GEMMA3_MODEL="$CACHE/models/gemma-3-270m-q4_k_m.gguf"
  if [ -f "$GEMMA3_MODEL" ]; then
    gen_set "$OUT_BASE/gemma3-270m-q4_k_m" "$GEMMA3_MODEL" 64 \
      --case chat "$TMP/g_chat.txt" --case code "$TMP/g_code.txt" --case english "$TMP/g_english.txt" \
      --case cjk "$TMP/g_cjk.txt" --case whitespace "$TMP/g_whitespace.txt"
    check_set "$OUT_BASE/gemma3-270m-q4_k_m" >&2
  else
    say "gemma3 model not found ($GEMMA3_MODEL): skipping its fixtures (scripts/fetch_models.sh gemma3)"
  fi
fi

say "done; sizes:"
du -sh "$OUT_BASE"/* >&2
