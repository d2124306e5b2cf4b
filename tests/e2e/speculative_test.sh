#!/usr/bin/env bash
# Speculative decoding end to end on a real model: greedy output token for
# token plain decoding's, for every policy. Target: Qwen2.5-Coder-0.5B (mixed
# q5_0/q6_K/q8_0, the file scripts/test.sh fetches); draft: a Q4_0 copy of it
# made here (same vocabulary, other numerics, so drafts are rejected at times
# and rolled back), also scoring only a draft vocabulary (--spec-draft-vocab),
# and drafting trees of 3 branches (--spec-branches).
# One prompt per category of bench/spec/prompts.jsonl.
# With an EAGLE-3 head for the target in the cache (tools/eagle3/README.md;
# $KESTREL_EAGLE3_HEAD or $CACHE/eagle3/qwen0.5b/head-q8_0.gguf), draft-eagle3 too.
# Skips (77) when the model is not in the cache.
set -uo pipefail
BIN="$1"
ROOT="${KESTREL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
CACHE="${KESTREL_CACHE:-$HOME/.cache/kestrel}"
TARGET="$CACHE/models/qwen2.5-coder-0.5b-instruct.gguf"
[ -f "$TARGET" ] || { echo "SKIP: $TARGET missing (scripts/fetch_models.sh qwen2-0.5b)"; exit 77; }
HEAD="${KESTREL_EAGLE3_HEAD:-$CACHE/eagle3/qwen0.5b/head-q8_0.gguf}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
"$BIN" quantize "$TARGET" "$OUT/draft.gguf" Q4_0 > /dev/null 2> "$OUT/quantize.txt" ||
  { echo "FAILED: quantize"; cat "$OUT/quantize.txt"; exit 1; }
python3 - "$ROOT/bench/spec/prompts.jsonl" "$OUT" <<'PY'
import json, sys
seen = set()
for line in open(sys.argv[1]):
    p = json.loads(line)
    if p["category"] in seen:
        continue
    seen.add(p["category"])
    text = ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            f"<|im_start|>user\n{p['user']}<|im_end|>\n<|im_start|>assistant\n")
    open(f"{sys.argv[2]}/{p['id']}.prompt", "w").write(text)
PY
# A draft vocabulary ranked on this repository's sources and docs (never the
# prompts): the draft scores its 8192 most frequent tokens.
"$BIN" calibrate draft-vocab -m "$TARGET" -f "$ROOT/src" -f "$ROOT/docs" -o "$OUT/vocab.gguf" > "$OUT/vocab.txt" 2>&1 ||
  { echo "FAILED: calibrate draft-vocab"; cat "$OUT/vocab.txt"; exit 1; }
grep -q "tokens used" "$OUT/vocab.txt" || { echo "FAILED: calibrate draft-vocab printed no summary"; exit 1; }
SMOL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -f "$SMOL" ]; then  # another vocabulary's ranking is refused, naming the file
  "$BIN" calibrate draft-vocab -m "$SMOL" -f "$ROOT/docs" -o "$OUT/smol.gguf" > /dev/null 2>&1
  if "$BIN" run -m "$TARGET" -md "$OUT/draft.gguf" --spec-draft-vocab "$OUT/smol.gguf" -p hi -n 2 > /dev/null 2> "$OUT/smol.err" ||
     ! grep -q "smol.gguf was made for another vocabulary" "$OUT/smol.err"; then
    echo "FAILED: a ranking of another vocabulary was not refused"; cat "$OUT/smol.err"; exit 1
  fi
fi
prompts=("$OUT"/*.prompt)
# Sanitized builds (scripts/test_sanitized.sh) decode ~10x slower (a draft-model
# run of 40 tokens: 55 s under ASan): one category there runs every policy's
# code paths in about 3 minutes.
[ -n "${KESTREL_SANITIZER:-}" ] && prompts=("${prompts[@]:0:1}")
pass=0; fail=0
for prompt in "${prompts[@]}"; do
  id=$(basename "$prompt" .prompt)
  run() { "$BIN" run -m "$TARGET" -f "$prompt" -n 40 --temp 0 -t 2 -c 1024 --no-display-prompt "$@" 2>> "$OUT/$id.err"; }
  run > "$OUT/$id.plain" || { echo "FAILED: $id plain"; cat "$OUT/$id.err"; fail=$((fail + 1)); continue; }
  policies=("-md $OUT/draft.gguf --spec-fixed --spec-draft-n-max 6" "--spec-type ngram-simple --spec-fixed"
            "--spec-type auto -md $OUT/draft.gguf"
            "-md $OUT/draft.gguf --spec-draft-vocab $OUT/vocab.gguf --spec-draft-vocab-n 8192 --spec-fixed --spec-draft-n-max 6"
            "-md $OUT/draft.gguf --spec-branches 3 --spec-fixed --spec-draft-n-max 6 --spec-draft-p-min 0")
  [ -f "$HEAD" ] && policies+=("--spec-type draft-eagle3 --spec-eagle3-head $HEAD --spec-fixed --spec-draft-p-min 0"
                               "--spec-type draft-eagle3 --spec-eagle3-head $HEAD --spec-branches 3 --spec-draft-p-min 0")
  for policy in "${policies[@]}"; do
    # shellcheck disable=SC2086
    if run $policy > "$OUT/$id.spec" && cmp -s "$OUT/$id.plain" "$OUT/$id.spec"; then
      pass=$((pass + 1))
    else
      echo "FAILED: $id with $policy differs from plain decoding"
      diff <(head -c 400 "$OUT/$id.plain") <(head -c 400 "$OUT/$id.spec") | head -5
      fail=$((fail + 1))
    fi
  done
done
grep -h "speculative:" "$OUT"/*.err | head -16
[ -f "$HEAD" ] || echo "note: no EAGLE-3 head at $HEAD: draft-eagle3 checked by the unit tests only"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
