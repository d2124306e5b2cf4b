#!/usr/bin/env bash
# Gemma 3 270M through the CLI as a user runs it: a greedy completion that knows a
# fact, a chat turn rendered with the gemma template (the file has none: the model
# supplies it; this 270M is the pretrained model, so only the rendering and the
# greedy reply llama.cpp gives are checked), and a prompt longer than the 512-token
# sliding window, which must run and stay coherent. Skips (77) when the model has
# not been fetched.
# Usage: gemma3_test.sh PATH/TO/kestrel
set -uo pipefail
BIN="$1"
CACHE="${KESTREL_CACHE:-$HOME/.cache/kestrel}"
MODEL="$CACHE/models/gemma-3-270m-q4_k_m.gguf"
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $1"; }
bad() { fail=$((fail + 1)); echo "FAILED: $1"; }
expect_contains() {  # name, haystack, needle
  if [[ "$2" == *"$3"* ]]; then ok "$1"; else bad "$1 (wanted '$3' in: ${2:0:400})"; fi
}
if [ ! -f "$MODEL" ]; then echo "model missing at $MODEL: run scripts/fetch_models.sh gemma3"; exit 77; fi

out="$("$BIN" info "$MODEL" 2>/dev/null)"
expect_contains "info architecture" "$out" "general.architecture (string) = \"gemma3\""

out="$("$BIN" run --no-display-prompt -m "$MODEL" -p "The capital of Germany is Berlin. The capital of France is" -n 6 --temp 0 2>/dev/null)"
expect_contains "greedy completion" "$out" "Paris"

# The echoed prompt is the rendered template; llama.cpp's greedy reply to this
# turn begins with the question and " mendatang" (tests/golden/logits/gemma3-270m-q4_k_m).
out="$("$BIN" run -m "$MODEL" --chat -p "What is the tallest mountain in the world?" -n 12 --temp 0 2>/dev/null)"
expect_contains "chat template rendered" "$out" $'<start_of_turn>user\nWhat is the tallest mountain in the world?<end_of_turn>\n<start_of_turn>model\n'
expect_contains "chat greedy reply as llama.cpp's" "$out" $'model\nWhat is the tallest mountain in the world? mendatang'


# ~550 tokens of numbered lines: past the 512-token window of the local layers.
long=""
for i in $(seq 1 55); do long+="Line $i: the quick brown fox. "; done
out="$("$BIN" run --no-display-prompt -m "$MODEL" -c 2048 -p "$long Line 56:" -n 4 --temp 0 2>/dev/null)"
code=$?
if [ $code -eq 0 ]; then ok "prompt past the sliding window runs"; else bad "prompt past the window (exit $code)"; fi
expect_contains "prompt past the window continues the pattern" "$out" "quick brown"

echo "passed $pass, failed $fail"
[ "$fail" -eq 0 ]
