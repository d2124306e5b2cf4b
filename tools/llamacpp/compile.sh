#!/usr/bin/env bash
# Compiles one of our reference-dump programs (tools/llamacpp/*.cpp, our code that
# calls llama.cpp's public C API) against the cached llama.cpp build.
# Usage: tools/llamacpp/compile.sh dump_tokens   -> prints the binary's path
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
BUILD="$("$here/build.sh" | tail -n 1)"
SRC="$(dirname "$BUILD")"
name="$1"
out="$BUILD/kestrel-tools/$name"
mkdir -p "$(dirname "$out")"
if [ ! -x "$out" ] || [ "$here/$name.cpp" -nt "$out" ]; then
  g++ -std=c++17 -O2 -o "$out" "$here/$name.cpp" \
    -I"$SRC/include" -I"$SRC/ggml/include" -L"$BUILD/bin" -lllama -lggml -lggml-base \
    -Wl,-rpath,"$BUILD/bin" >&2
fi
echo "$out"
