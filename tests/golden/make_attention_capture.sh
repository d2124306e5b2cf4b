#!/usr/bin/env bash
# Regenerates every capture of tests/golden/attention (format:
# tests/golden/attention/format.h) from the models of scripts/fetch_models.sh:
#   smollm2_qkv.bin      SmolLM2-135M-Instruct Q4_1, layers 1 and 20, 128 positions of
#                        docs/architecture.md, every query row (version 1)
#   smollm2_8k_qkv.bin   SmolLM2, layer 20, KV head 0, 8192 positions of repository text
#   smollm2_2k_qkv.bin   SmolLM2, layer 1, KV head 1, 2048 positions (the same text)
#   qwen05b_2k_qkv.bin   Qwen2.5-Coder-0.5B-Instruct, layers 1 and 20, KV head 0, 2048 positions
#   qwen05b_512_qkv.bin  Qwen2.5-Coder-0.5B-Instruct, layers 1 and 20, KV head 1, 512 positions
# (the long ones keep query rows at a subset of positions: the last 32 before 512, 2048 and 8192,
# and a few earlier ones). Takes a few minutes on two cores. The text is the repository's docs
# as they are when this runs: after the docs change, the long files come out different (and the
# int8 pins of tests/unit/kv/attention_long_golden_test.cpp are measured again).
# Usage: tests/golden/make_attention_capture.sh [BUILD_DIR]
set -euo pipefail
BUILD="${1:-build}"
"$BUILD/kestrel_engine_tests" --gtest_also_run_disabled_tests --gtest_filter='AttentionCapture.DISABLED_*'
