#!/usr/bin/env bash
# The accuracy budget and tuned profiles as a user meets them (SmolLM2): bad
# budgets, a lossy switch over budget turned off with its figures, a budget
# nothing meets, kestrel tune writing a profile that run reads, and profiles
# that cannot be trusted (another model file, a switch this build lacks).
# Usage: guard_test.sh PATH/TO/kestrel
set -uo pipefail
source "$(dirname "$0")/checks.sh"
export KESTREL_CACHE="$TMP/cache"  # the guard's measurements go here, not into the user's cache
mkdir -p "$KESTREL_CACHE"
# After the first two runs (the default probe: 512 + 64), a 192-token prompt and 16 teacher-forced
# positions: the same decisions at a quarter of the probe's cost.
FEW="--guard-prompt 192 --guard-positions 16"
if [ ! -f "$MODEL" ]; then echo "model missing at $MODEL: run scripts/fetch_models.sh"; exit 77; fi

expect_error "unparseable budget" "is not a number" "$BIN" run -m "$MODEL" -p hi -n 1 --max-kld abc
expect_error "KLD in percent" "not percent" "$BIN" run -m "$MODEL" -p hi -n 1 --max-kld 1%
expect_error "top-1 above one" "more than all positions" "$BIN" run -m "$MODEL" -p hi -n 1 --min-top1 2

# act=a4 costs SmolLM2 far more than KLD 0.05 (measured about 0.6); q8_0 KV far less.
out="$("$BIN" run -m "$MODEL" -p "The capital of France is" -n 8 --temp 0 -t 2 --cache-type q8_0 --switch act=a4 \
  --max-kld 0.05 2>&1)"
expect_contains "over budget turned off, with figures" "$out" "turned off act=a4: KLD"
expect_contains "within budget kept" "$out" "running with kv=q8_0; turned off act=a4"
expect_contains "still answers" "$out" "Paris"
out="$("$BIN" run -m "$MODEL" -p "The capital of France is" -n 8 --temp 0 -t 2 --cache-type q8_0 --switch act=a4 \
  --max-kld 0.05 2>&1)"
expect_contains "second start reuses the measurement" "$out" "measured before"
out="$("$BIN" run -m "$MODEL" $FEW -p "The capital of France is" -n 4 --temp 0 -t 2 --cache-type q8_0 --max-kld 0.0001 \
  --guard-no-cache 2>&1)"
expect_contains "nothing meets the budget" "$out" "no lossy switch meets the budget: running the exact path"
out="$("$BIN" run -m "$MODEL" $FEW -p "hi" -n 2 -t 2 --max-kld 0.01 2>&1)"
expect_contains "no lossy switch, nothing measured" "$out" "no lossy switch is on"
expect_error "calibration on the evaluation text refused" "WikiText-2's test file" \
  "$BIN" run -m "$MODEL" $FEW -p hi -n 1 --cache-type q8_0 --max-kld 0.1 --guard-file "$TMP/wiki.test.raw"

# tune writes a profile run can use; bench honours it too.
"$BIN" tune -m "$MODEL" -t 2 $FEW --max-kld 0.02 --candidates kv=q8_0,kv=q4_0,act=a4 -p 32 -n 8 -r 1 \
  -o "$TMP/smol.profile" --out-dir "$TMP/tune" > "$TMP/tune.txt" 2>&1 || bad "tune exited non-zero: $(tail -5 "$TMP/tune.txt")"
[ -s "$TMP/tune/tune.svg" ] && [ -s "$TMP/tune/tune.md" ] && ok "tune table and chart" || bad "tune outputs missing"
expect_contains "tune: act=a4 over budget" "$(cat "$TMP/tune/tune.md")" "| act=a4 | - |"
[ -s "$TMP/smol.profile" ] && ok "profile written" || bad "profile missing"
out="$("$BIN" run -m "$MODEL" $FEW -p "The capital of France is" -n 8 --temp 0 --profile "$TMP/smol.profile" 2>&1)"
expect_contains "run --profile" "$out" "kestrel: profile"
expect_contains "run --profile answers" "$out" "Paris"

# A profile for another model file is measured again, not trusted.
python3 - "$TMP/smol.profile" "$TMP/stale.profile" "$TMP/alien.profile" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
p["model"]["fingerprint"] = "0000000000000000"
p["switches"] = ["kv=q8_0"]
json.dump(p, open(sys.argv[2], "w"))
p["switches"] = ["warp=9"]
json.dump(p, open(sys.argv[3], "w"))
PY
out="$("$BIN" run -m "$MODEL" $FEW -p hi -n 2 -t 2 --profile "$TMP/stale.profile" 2>&1)"
expect_contains "stale profile re-measured" "$out" "measured again against its budget, not trusted"
expect_contains "stale profile's switch judged" "$out" "kv=q8_0 alone: KLD"
expect_error "profile naming a switch this build lacks" "names warp=9, which this build does not have" \
  "$BIN" run -m "$MODEL" $FEW -p hi -n 1 --profile "$TMP/alien.profile"
expect_error "profile that is not one" "not JSON" "$BIN" run -m "$MODEL" $FEW -p hi -n 1 --profile "$MODEL"
expect_error "tune without a budget" "give a budget" "$BIN" tune -m "$MODEL"
expect_error "tune with a lossy switch outside the search" "give it in --candidates" \
  "$BIN" tune -m "$MODEL" --max-kld 0.1 --cache-type q4_0

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
