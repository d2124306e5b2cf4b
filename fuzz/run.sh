#!/usr/bin/env bash
# Builds the GGUF fuzz target (clang, ASan+UBSan+libFuzzer) and runs it on one
# core for the given number of seconds (default 720).
#   fuzz/run.sh [seconds]
# Working corpus and crash artifacts go to fuzz/corpus-run/ (not committed); the
# committed seeds in fuzz/corpus/gguf/ are only read. A crash input should be
# added to fuzz/regressions/gguf/ (tests/unit/gguf replays every file there).
set -euo pipefail
seconds="${1:-720}"
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build-fuzz"
run="$root/fuzz/corpus-run/gguf"

if [[ ! -f "$build/build.ninja" ]]; then
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja \
    -DKESTREL_FUZZ=ON -DKESTREL_TESTS=OFF -DKESTREL_BENCH=OFF
fi
ninja -C "$build" -j2 gguf_fuzz

mkdir -p "$run/corpus" "$run/artifacts"
cd "$run"
nice -n 10 "$build/gguf_fuzz" \
  -jobs=1 -workers=1 \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
  -dict="$root/fuzz/gguf.dict" \
  -artifact_prefix="$run/artifacts/" \
  -print_final_stats=1 \
  "$run/corpus" "$root/fuzz/corpus/gguf"
# With -jobs the fuzzer's own output is in fuzz-0.log.
if [[ -f fuzz-0.log ]]; then tail -n 30 fuzz-0.log; fi
ls -l "$run/artifacts"
