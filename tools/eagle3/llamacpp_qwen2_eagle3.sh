#!/usr/bin/env bash
# llama.cpp 0.3.36 cannot run an EAGLE-3 head on a qwen2 target: its qwen2 graph
# never records its layer inputs (`res->t_layer_inp[il]`, which llama's graph
# sets), so the target aborts with "layer input tensor is null". This script
# builds a second libllama.so in which qwen2's graph records them, and prints the
# directory to put first on LD_LIBRARY_PATH:
#
#   LD_LIBRARY_PATH=$(tools/eagle3/llamacpp_qwen2_eagle3.sh) \
#     ~/.cache/kestrel/llama.cpp-0.3.36/build-clang/bin/llama-speculative-simple ...
#
# Only the unity batch that includes src/models/qwen2.cpp is recompiled (from a
# patched copy under the output directory; the cached sources stay as they are)
# and libllama is relinked from tools/llamacpp/build.sh's other objects. The
# change adds one assignment per layer; no arithmetic changes. Idempotent.
set -euo pipefail
# The cached build (tools/llamacpp/build.sh says where, building it if missing).
BUILD="$("$(dirname "${BASH_SOURCE[0]}")/../llamacpp/build.sh")"
SRC="$(dirname "$BUILD")"
OBJ="$BUILD/src/CMakeFiles/llama.dir"
OUT="$SRC/build-eagle3-qwen2"
if [ -f "$OUT/libllama.so.0" ] && [ "$OUT/libllama.so.0" -nt "$BUILD/bin/libllama.so.0" ]; then
  echo "$OUT"; exit 0
fi
[ -f "$OBJ/link.txt" ] || { echo "no libllama objects in $OBJ" >&2; exit 1; }
unity=$(grep -l "src/models/qwen2.cpp\"" "$OBJ"/Unity/*.cxx | head -n1)
[ -n "$unity" ] || { echo "no unity batch includes src/models/qwen2.cpp in $OBJ/Unity" >&2; exit 1; }
mkdir -p "$OUT"
# The layer loop of qwen2's graph starts with `ggml_tensor * inpSA = inpL;`;
# record the layer's input right before it, as llama's graph does.
sed 's|^\(\s*\)ggml_tensor \* inpSA = inpL;|\1res->t_layer_inp[il] = inpL;\n&|' \
  "$SRC/src/models/qwen2.cpp" >"$OUT/qwen2.cpp"
grep -q 't_layer_inp\[il\] = inpL' "$OUT/qwen2.cpp" ||
  { echo "qwen2.cpp has changed: the line to patch was not found" >&2; exit 1; }
sed "s|#include \"$SRC/src/models/qwen2.cpp\"|#include \"$OUT/qwen2.cpp\"|" "$unity" >"$OUT/unity.cxx"
unity_obj="CMakeFiles/llama.dir/Unity/$(basename "$unity").o"
flags() { sed -n "s/^$1 = //p" "$OBJ/flags.make"; }
echo "compiling the patched qwen2 unity batch and relinking libllama into $OUT" >&2
# shellcheck disable=SC2046
# (-I src/models: the patched copy includes "models.h" from outside its folder)
clang++ $(flags CXX_DEFINES) $(flags CXX_INCLUDES) -I"$SRC/src/models" $(flags CXX_FLAGS) -c "$OUT/unity.cxx" -o "$OUT/unity.o"
# link.txt runs from build-clang/src: the patched object replaces the original.
link=$(sed -e "s|$unity_obj|$OUT/unity.o|" -e "s|-o ../bin/libllama.so[.0-9]*|-o $OUT/libllama.so.0|" "$OBJ/link.txt")
(cd "$BUILD/src" && eval "$link")
echo "$OUT"
