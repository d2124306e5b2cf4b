# Shared by the e2e scripts (sourced, not run: no _test.sh suffix): the binary
# ($1), the SmolLM2 model in the cache, a temporary directory removed on exit,
# counters, and the checks that print "ok: NAME" or "FAILED: NAME (why)".
BIN="$1"
CACHE="${KESTREL_CACHE:-$HOME/.cache/kestrel}"
MODEL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $1"; }
bad() { fail=$((fail + 1)); echo "FAILED: $1"; }
expect_contains() {  # name, haystack, needle
  if [[ "$2" == *"$3"* ]]; then ok "$1"; else bad "$1 (wanted '$3' in: ${2:0:600})"; fi
}
expect_error() {  # name, needle, command...: exit status 1 and the needle in the output
  local name="$1" needle="$2"; shift 2
  local out code
  out="$("$@" 2>&1)"; code=$?
  if [ "$code" -eq 1 ] && [[ "$out" == *"$needle"* ]]; then ok "$name"; else bad "$name (exit $code: ${out:0:400})"; fi
}
