#!/usr/bin/env bash
# `kestrel ab` end to end on SmolLM2 at a short context: the scoreboard path
# (baseline perplexity + KLD per switch + interleaved speed) never rots.
set -uo pipefail
BIN="$1"
ROOT="${KESTREL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TEXT="$ROOT/../shared/data/wikitext-2-raw/wiki.test.raw"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
"$BIN" ab --switches kv=f32,isa=avx2,sampling=sortfree -f "$TEXT" -c 128 --chunks 2 -p 32 -n 8 -r 1 -t 2 -o "$OUT" \
  > "$OUT/stdout.txt" 2> "$OUT/stderr.txt" || { echo "FAILED: kestrel ab exited non-zero"; cat "$OUT/stderr.txt"; exit 1; }
fail=0
for f in scoreboard.md scoreboard.svg; do
  [ -s "$OUT/$f" ] || { echo "FAILED: $f missing"; fail=1; }
done
for row in "| baseline |" "| kv=f32 |" "| isa=avx2 |" "| sampling=sortfree |"; do
  grep -qF "$row" "$OUT/scoreboard.md" || { echo "FAILED: no row $row"; fail=1; }
done
# The f32 KV cache is exact to within rounding: its KLD against the baseline is tiny but measured.
grep -E '^\| kv=f32 \|' "$OUT/scoreboard.md" | grep -qE '\| [0-9]+\.[0-9]+% \|' || { echo "FAILED: kv=f32 row has no top-1 agreement"; fail=1; }
cat "$OUT/scoreboard.md"

# Regression detection: against a copy of this run whose kv=f32 row had a far
# lower PPL, the same figures are a regression (exit 1, the figure named);
# against a file that is not a scoreboard, a clear error before any measurement.
[ -s "$OUT/scoreboard.json" ] || { echo "FAILED: scoreboard.json missing"; fail=1; }
python3 - "$OUT/scoreboard.json" "$OUT/better.json" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
for r in b["rows"]:
    if r["label"] == "kv=f32":
        r["ppl"] = r["ppl"] * 0.9
json.dump(b, open(sys.argv[2], "w"))
PY
"$BIN" ab --switches kv=f32 -f "$TEXT" -c 128 --chunks 2 -p 32 -n 8 -r 1 -t 2 -o "$OUT/again" \
  --baseline "$OUT/better.json" > "$OUT/again.txt" 2>&1
code=$?
if [ $code -eq 1 ] && grep -q "kv=f32 PPL .* (worse)" "$OUT/again.txt" && grep -q "got worse than" "$OUT/again.txt"; then
  echo "ok: ab --baseline flags a worse PPL"
else
  echo "FAILED: ab --baseline (exit $code)"; cat "$OUT/again.txt"; fail=1
fi
echo '{"rows": []}' > "$OUT/bad.json"
out="$("$BIN" ab --switches kv=f32 -f "$TEXT" --baseline "$OUT/bad.json" -o "$OUT/bad" 2>&1)"; code=$?
if [ $code -eq 1 ] && [[ "$out" == *"not a kestrel scoreboard"* ]] && [[ "$out" != *"perplexity"* ]]; then
  echo "ok: a bad baseline file is refused first"
else
  echo "FAILED: bad baseline file (exit $code): $out"; fail=1
fi
if [ $fail -eq 0 ]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; fi
exit $fail
