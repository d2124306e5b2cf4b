#!/usr/bin/env bash
# Regenerates tests/golden/attention/smollm2_qkv.bin from SmolLM2-135M-Instruct
# Q4_1 (scripts/fetch_models.sh): real post-RoPE Q, K, V of layers 1 and 20 at
# 128 positions of docs/architecture.md (format: tests/golden/attention/format.h).
# Usage: tests/golden/make_attention_capture.sh [BUILD_DIR]
set -euo pipefail
BUILD="${1:-build}"
"$BUILD/kestrel_engine_tests" --gtest_also_run_disabled_tests --gtest_filter='AttentionCapture.DISABLED_WriteSmolLM2Capture'
