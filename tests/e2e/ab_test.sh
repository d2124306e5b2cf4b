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
if [ $fail -eq 0 ]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; fi
exit $fail
