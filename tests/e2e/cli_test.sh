#!/usr/bin/env bash
# Drives the kestrel binary as a user would: run, tokenize, info, quantize, and
# bad input (missing files, hostile GGUF, unknown architecture, context overflow).
# Usage: cli_test.sh PATH/TO/kestrel
set -uo pipefail
source "$(dirname "$0")/checks.sh"

if [ ! -f "$MODEL" ]; then echo "model missing at $MODEL: run scripts/fetch_models.sh"; exit 1; fi

# Greedy completion knows a fact.
out="$("$BIN" run -m "$MODEL" -p "The capital of France is" -n 8 --temp 0 2>/dev/null)"
expect_contains "run greedy completion" "$out" "Paris"

# The default model is used without -m; the same seed gives the same text.
a="$(KESTREL_MODEL="$MODEL" "$BIN" run -p "Once upon a time" -n 24 --seed 7 --temp 0.9 2>/dev/null)"
b="$(KESTREL_MODEL="$MODEL" "$BIN" run -p "Once upon a time" -n 24 --seed 7 --temp 0.9 2>/dev/null)"
if [ -n "$a" ] && [ "$a" == "$b" ]; then ok "same seed, same text"; else bad "same seed, same text: '$a' vs '$b'"; fi

# Chat template path.
out="$(echo "What is 2+2? Answer with one number." | "$BIN" chat -m "$MODEL" --temp 0 -n 16 2>/dev/null)"
expect_contains "chat answers" "$out" "4"

out="$("$BIN" tokenize -m "$MODEL" -p "Hello world" --ids 2>/dev/null)"
expect_contains "tokenize ids" "$out" "["
out="$("$BIN" info "$MODEL" 2>/dev/null)"
expect_contains "info architecture" "$out" "general.architecture (string) = \"llama\""
expect_contains "info tensors" "$out" "blk.0.attn_q.weight"

# The model's own generations for offline trainers: ids as JSON (a list of one list) and the text.
if "$BIN" calibrate text -m "$MODEL" --tokens 48 -o "$TMP/calib.txt" --ids "$TMP/calib.json" >/dev/null 2>&1; then
  n=$(python3 -c "import json,sys; v=json.load(open(sys.argv[1])); print(len(v[0]) if len(v) == 1 else -1)" "$TMP/calib.json")
  if [ "$n" = 48 ] && [ -s "$TMP/calib.txt" ]; then ok "calibrate text: 48 ids and the text"; else bad "calibrate text: $n ids"; fi
else
  bad "calibrate text failed"
fi
out="$("$BIN" calibrate text -m "$MODEL" --tokens 48 2>&1)"
expect_contains "calibrate text wants an output" "$out" "give -o FILE and/or --ids FILE"

# CQ codebooks: keys under the query metric unless --key-metric mse (one whitening per
# layer and kv head in the sidecar: 30 x 3 for SmolLM2), and the cache runs from them.
if "$BIN" calibrate kv -m "$MODEL" --tokens 64 -o "$TMP/q.cq2.gguf" >/dev/null 2>&1 &&
  "$BIN" calibrate kv -m "$MODEL" --tokens 64 --key-metric mse -o "$TMP/m.cq2.gguf" >/dev/null 2>&1; then
  nq=$("$BIN" info "$TMP/q.cq2.gguf" 2>/dev/null | grep -c "cq.kw.blk")
  nm=$("$BIN" info "$TMP/m.cq2.gguf" 2>/dev/null | grep -c "cq.kw.blk")
  if [ "$nq" = 90 ] && [ "$nm" = 0 ]; then ok "calibrate kv: query metric by default"; else bad "calibrate kv: $nq / $nm whitenings"; fi
  out="$("$BIN" run -m "$MODEL" --cache-type cq2 --kv-codebook "$TMP/q.cq2.gguf" -p "The capital of France is" -n 8 --temp 0 2>/dev/null)"
  expect_contains "cq2 cache from the default codebooks" "$out" "Paris"
  # 2-bit keys with 1-bit values: each side's books from its own file.
  if "$BIN" calibrate kv -m "$MODEL" --cq cq1 --tokens 64 -o "$TMP/q.cq1.gguf" >/dev/null 2>&1; then
    out="$("$BIN" run -m "$MODEL" --cache-type cq2/cq1 --kv-codebook "$TMP/q.cq2.gguf" \
      --kv-codebook-v "$TMP/q.cq1.gguf" -p "The capital of France is" -n 8 --temp 0 2>&1)"
    expect_contains "cq2/cq1 cache from two codebook files" "$out" "Paris"
    out="$("$BIN" run -m "$MODEL" --cache-type cq2/cq1 --kv-codebook "$TMP/q.cq2.gguf" \
      --kv-codebook-v "$TMP/q.cq2.gguf" -p "Hi" -n 1 2>&1)"
    expect_contains "cq2/cq1 refuses cq2 books for its values" "$out" "cq1 values need cq1 codebooks, not cq2"
  else
    bad "calibrate kv --cq cq1 failed"
  fi
  # cq1 in residual stages: 8 codes over the 64 channels of a head, the same bytes per row.
  if "$BIN" calibrate kv -m "$MODEL" --cq cq1 --stages 8 --tokens 64 -o "$TMP/s8.cq1.gguf" >/dev/null 2>&1; then
    out="$("$BIN" run -m "$MODEL" --cache-type cq1 --kv-codebook "$TMP/s8.cq1.gguf" -p "The capital of France is" \
      -n 8 --temp 0 2>&1)"
    expect_contains "cq1 cache from codebooks in 8 residual stages" "$out" "Paris"
  else
    bad "calibrate kv --stages 8 failed"
  fi
  expect_error "stages that do not divide the head" "3 residual stages of 8 channels do not divide the head dimension 64" \
    "$BIN" calibrate kv -m "$MODEL" --cq cq1 --stages 3 --tokens 64 -o "$TMP/s3.cq1.gguf"
  out="$("$BIN" run -m "$MODEL" --kv-codebook "$TMP/q.cq2.gguf" -p "Hi" -n 1 2>&1)"
  expect_contains "--kv-codebook without a CQ cache is refused" "$out" "no setting here uses a CQ cache"
  out="$("$BIN" ab -m "$MODEL" --switches kv=q8_0 --kv-codebook "$TMP/q.cq2.gguf" -o "$TMP/ab" 2>&1)"
  expect_contains "ab: --kv-codebook without a CQ row is refused" "$out" "no row uses a CQ cache"
  out="$("$BIN" bench -m "$MODEL" -p 8 -n 0 -r 1 --cache-type q8_0 --kv-codebook "$TMP/q.cq2.gguf" 2>&1)"
  expect_contains "bench: --kv-codebook without a CQ test is refused" "$out" "no test uses a CQ cache"
  out="$("$BIN" run -m "$MODEL" -ctk cq1 -p "Hi" -n 1 2>&1)"
  expect_contains "-ctk cq1 says where CQ types go" "$out" "kv=cq2/cq1 (--cache-type cq2/cq1)"
else
  bad "calibrate kv failed"
fi

# quantize to Q8_0 and run the result.
if "$BIN" quantize "$MODEL" "$TMP/q8.gguf" Q8_0 2>/dev/null; then
  out="$("$BIN" run -m "$TMP/q8.gguf" -p "The capital of France is" -n 8 --temp 0 2>/dev/null)"
  expect_contains "quantized Q8_0 model runs" "$out" "Paris"
else
  bad "quantize Q8_0"
fi

# Activation-aware quantization: rotation + AWQ scales and clipping from a
# short generated text, written as a plain GGUF that still knows the fact.
if "$BIN" quantize "$MODEL" "$TMP/awq.gguf" Q8_0 --rotate --rotate-down --awq --calibration-tokens 256 --awq-samples 32 \
     --awq-grid 4 --awq-rows 64 >"$TMP/awq.txt" 2>&1; then
  expect_contains "quantize --awq reports its search" "$(cat "$TMP/awq.txt")" "alpha"
  out="$("$BIN" run -m "$TMP/awq.gguf" -p "The capital of France is" -n 8 --temp 0 2>/dev/null)"
  expect_contains "rotated AWQ Q8_0 model (online Hadamard before ffn_down) runs" "$out" "Paris"
else
  bad "quantize --rotate --awq: $(tail -3 "$TMP/awq.txt")"
fi
# GPTQ rounding (every matrix) from a short generated text: a file that still knows the fact.
if "$BIN" quantize "$MODEL" "$TMP/gptq.gguf" Q8_0 --gptq --gptq-inputs all --calibration-tokens 256 \
     >"$TMP/gptq.txt" 2>&1; then
  expect_contains "quantize --gptq reports the output errors" "$(cat "$TMP/gptq.txt")" "plain rounding -> GPTQ"
  out="$("$BIN" run -m "$TMP/gptq.gguf" -p "The capital of France is" -n 8 --temp 0 2>/dev/null)"
  expect_contains "GPTQ Q8_0 model runs" "$out" "Paris"
else
  bad "quantize --gptq: $(tail -3 "$TMP/gptq.txt")"
fi
expect_error "GPTQ into a K-quant" "--gptq writes Q4_0" "$BIN" quantize "$MODEL" "$TMP/x.gguf" Q4_K --gptq
expect_error "GPTQ on an input that does not exist" "no input 'ffn'" \
  "$BIN" quantize "$MODEL" "$TMP/x.gguf" Q4_0 --gptq --gptq-inputs qkv,ffn
expect_error "a model given as an importance matrix" "is not an importance matrix" \
  "$BIN" quantize "$MODEL" "$TMP/x.gguf" Q4_0 --imatrix "$MODEL"
expect_error "an importance matrix with AWQ" "--awq change them" \
  "$BIN" quantize "$MODEL" "$TMP/x.gguf" Q4_0 --awq --imatrix "$MODEL"
printf 'text\n' > "$TMP/wiki.test.raw"
expect_error "calibration on the evaluation text" "WikiText-2's test file" \
  "$BIN" quantize "$MODEL" "$TMP/x.gguf" Q4_0 --awq -f "$TMP/wiki.test.raw"
expect_error "calibration text without --awq" "only read with --awq" \
  "$BIN" quantize "$MODEL" "$TMP/x.gguf" Q4_0 -f "$TMP/wiki.test.raw"
printf 'Too short.\n' > "$TMP/short.txt"
expect_error "calibration text too short" "at least 16" "$BIN" quantize "$MODEL" "$TMP/x.gguf" Q4_0 --awq -f "$TMP/short.txt"

# Quantized KV caches, in llama.cpp's spelling: the facts survive q8_0 and a
# q8_0 K / q4_0 V cache; the same switch set twice to two values is refused.
out="$("$BIN" run -m "$MODEL" -p "The capital of France is" -n 8 --temp 0 --cache-type q8_0 2>/dev/null)"
expect_contains "run with --cache-type q8_0" "$out" "Paris"
out="$("$BIN" run -m "$MODEL" -p "The capital of France is" -n 8 --temp 0 -ctk q8_0 -ctv q4_0 2>/dev/null)"
expect_contains "run with -ctk q8_0 -ctv q4_0" "$out" "Paris"
expect_error "kv and -ctk disagree" "set twice" "$BIN" run -m "$MODEL" -p hi -n 1 --cache-type q8_0 -ctk q4_0
expect_error "unknown KV type" "q9_9" "$BIN" run -m "$MODEL" -p hi -n 1 -ctv q9_9

# Bad input: clear errors, exit code 1, never a crash.
expect_error "missing model file" "cannot" "$BIN" run -m "$TMP/nope.gguf" -p hi
head -c 100000 "$MODEL" > "$TMP/truncated.gguf"
expect_error "truncated gguf" "gguf" "$BIN" run -m "$TMP/truncated.gguf" -p hi
printf 'GGUF\x03\x00\x00\x00' > "$TMP/tiny.gguf"
expect_error "header-only gguf" "gguf" "$BIN" info "$TMP/tiny.gguf"
printf 'NOPE' > "$TMP/notgguf.gguf"
expect_error "not a gguf" "gguf" "$BIN" info "$TMP/notgguf.gguf"
expect_error "unknown quant type" "unknown type" "$BIN" quantize "$MODEL" "$TMP/x.gguf" Q9_9
expect_error "context overflow" "context overflow" "$BIN" run -m "$MODEL" -c 16 -p "$(printf 'word %.0s' {1..40})" -n 4

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
