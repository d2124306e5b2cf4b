#!/usr/bin/env bash
# Builds llama.cpp (the peer and test oracle) from the source that PyPI's
# llama-cpp-python sdist carries, into a cache folder outside the repo. Idempotent:
# a finished build is reused. Prints the build folder on its last line.
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${KESTREL_CACHE:-$HOME/.cache/kestrel}"
SRC="$CACHE/llama.cpp-$VERSION"
# Built with clang: g++ 12 miscompiles llama.cpp's AMX tile configuration (its
# _tile_loadconfig builtin is declared to read 8 of the 64 config bytes, so the
# tile shapes are dropped and AMX matmuls die with SIGILL on batches > 1).
BUILD="$SRC/build-clang"
TARGETS=(llama llama-tokenize llama-completion llama-bench llama-perplexity llama-quantize llama-simple
         llama-speculative llama-speculative-simple llama-lookup llama-imatrix llama-batched-bench)

# The last target added: an older build without it is built again (incrementally).
if [ -x "$BUILD/bin/llama-batched-bench" ] && [ -f "$BUILD/.kestrel-done" ]; then
  echo "$BUILD"; exit 0
fi
mkdir -p "$CACHE/pip"
# One build at a time: a second caller waits for the first, then reuses it.
exec 9>"$CACHE/llama.cpp-$VERSION.lock"
flock 9
if [ -x "$BUILD/bin/llama-batched-bench" ] && [ -f "$BUILD/.kestrel-done" ]; then echo "$BUILD"; exit 0; fi
SDIST="$CACHE/pip/llama_cpp_python-$VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
  echo "fetching llama-cpp-python $VERSION sdist from PyPI" >&2
  pip download --no-deps --no-binary :all: --no-build-isolation -d "$CACHE/pip" "llama-cpp-python==$VERSION" >&2 ||
    pip download --no-deps --no-binary :all: -d "$CACHE/pip" "llama-cpp-python==$VERSION" >&2
fi
if [ ! -f "$SRC/CMakeLists.txt" ]; then
  tmp=$(mktemp -d)
  tar xzf "$SDIST" -C "$tmp" "llama_cpp_python-$VERSION/vendor/llama.cpp"
  rm -rf "$SRC"
  mv "$tmp/llama_cpp_python-$VERSION/vendor/llama.cpp" "$SRC"
  rm -rf "$tmp"
fi
echo "building llama.cpp in $BUILD (2 jobs, a few minutes)" >&2
# clang 14's -march=native does not turn on AMX for this CPU, so the x86 features
# are named one by one when the CPU has them (llama.cpp then builds its AMX path).
FEATURES=(-DGGML_NATIVE=ON)
if grep -qw amx_int8 /proc/cpuinfo && grep -qw avx512_vnni /proc/cpuinfo; then
  FEATURES=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
            -DGGML_AVX_VNNI=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON
            -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=ON -DGGML_AMX_INT8=ON -DGGML_AMX_BF16=ON
            # ggml tests g++'s spelling __AMX_INT8__; clang 14 defines __AMXINT8__.
            "-DCMAKE_C_FLAGS=-D__AMX_INT8__" "-DCMAKE_CXX_FLAGS=-D__AMX_INT8__")
fi
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ "${FEATURES[@]}" -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=ON >&2
cmake --build "$BUILD" -j2 --target "${TARGETS[@]}" >&2
touch "$BUILD/.kestrel-done"
echo "$BUILD"
