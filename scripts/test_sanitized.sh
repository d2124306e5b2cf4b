#!/usr/bin/env bash
# Builds kestrel with sanitizers and runs the tests in those trees (.ci/run runs
# it after scripts/test.sh; scripts/install_deps.sh and fetch_models.sh first).
#
#   scripts/test_sanitized.sh [asan] [tsan]      (no argument: both)
#
#   asan  build-asan/, -DKESTREL_SANITIZE=address,undefined: the WHOLE ctest
#         suite (unit, golden, e2e CLI, server, stress, chat page), leak checking
#         on (LeakSanitizer), UBSan fatal.
#   tsan  build-tsan/, -DKESTREL_SANITIZE=thread: only the targets with threads
#         in them (kestrel, kestrel_runtime_tests, kestrel_platform_tests): the
#         Scheduler and ThreadPool tests and the server's e2e tests.
#
# Every sanitizer report of every process (test binaries, and the kestrel
# servers and commands the e2e scripts start, whose stderr they may swallow) is
# written under $BUILD/sanitizer-logs/ (log_path) and fails the run, even when
# the test that caused it passed; the process also exits with 66 (exitcode).
# The tests see KESTREL_SANITIZER=asan|tsan: the e2e scripts then wait longer
# for a server and do less of the work whose only point is volume (fewer
# prompts, fewer requests needed under load), since instrumented kernels run
# 5-50x slower; what they check stays the same.
# Environment: KESTREL_JOBS (build jobs, default 2), KESTREL_REQUIRE_LSAN=1
# (fail instead of going on without leak checking where LeakSanitizer cannot run).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
jobs="${KESTREL_JOBS:-2}"
modes=("$@")
[ ${#modes[@]} -eq 0 ] && modes=(asan tsan)
say() { echo "[test_sanitized] $*" >&2; }

# Tests that cannot run under a sanitizer: "ctest regex|why". ctest -E takes
# them out; they are printed so a skip is never silent. ASan runs every test
# (the microbenchmarks are not built in sanitizer trees: timings mean nothing
# there, and CMake turns KESTREL_BENCH off).
ASAN_SKIP=()
# TSan: only these run (the targets above are the only ones built).
TSAN_ONLY='^(Scheduler\..*|ThreadPool\..*|e2e\.(server_test|server_stress_test|serve_switches_test|chat_page_test))$'
# They run one at a time (ctest -j1): the chat page test has a 50 s budget and
# takes 25 s alone under TSan, 40 s next to the stress test.
TSAN_SKIP=(
  "^e2e\.server_test\$|TSan slows the kernels ~50x (4 tokens/s): its load phase would take 10+ minutes of CI for traffic the stress test already puts through TSan; it runs under ASan"
  "^e2e\.serve_switches_test\$|160 s of its 300 s limit under TSan (one request at a time: no concurrency the stress test does not have); it runs under ASan"
)

# LeakSanitizer needs to stop the process's threads with ptrace at exit; some
# containers forbid that (it then dies with "LeakSanitizer has encountered a
# fatal error"). Find out with a program that leaks on purpose.
lsan_works() {
  local dir out
  dir="$(mktemp -d)"
  printf '#include <cstdlib>\nvoid* volatile p;\nint main() { p = std::malloc(7); p = nullptr; return 0; }\n' \
    >"$dir/leak.cpp"
  if ! "${CXX:-c++}" -fsanitize=address -g "$dir/leak.cpp" -o "$dir/leak" 2>"$dir/cc.txt"; then
    say "cannot build the LeakSanitizer probe: $(cat "$dir/cc.txt")"
    rm -rf "$dir"
    return 1
  fi
  out="$(ASAN_OPTIONS=detect_leaks=1 "$dir/leak" 2>&1 || true)"
  rm -rf "$dir"
  if grep -q "ERROR: LeakSanitizer: detected memory leaks" <<<"$out"; then return 0; fi
  say "LeakSanitizer does not work here; its probe said:"
  echo "$out" | head -n 5 >&2
  return 1
}

configure_and_build() {  # build_dir sanitizers [targets...]
  local build="$1" san="$2"
  shift 2
  local t0=$SECONDS
  # -O1 -g1 (line tables: reports name file:line): GCC compiles the
  # instrumented code 2-3x faster than at -O2 -g, and the suite runs about as fast.
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DKESTREL_SANITIZE="$san" -DKESTREL_BENCH=OFF >/dev/null
  ninja -C "$build" -j"$jobs" "$@"
  say "$build: built in $((SECONDS - t0)) s"
}

# run_ctest build_dir ctest-args...: runs ctest with every report going to
# build_dir/sanitizer-logs (under the ASAN_OPTS / TSAN_OPTS of the moment).
run_ctest() {
  local build="$1"
  shift
  local logs="$build/sanitizer-logs"
  local mode=asan
  [[ "$build" == *tsan* ]] && mode=tsan
  mkdir -p "$logs"
  local t0=$SECONDS status=0
  (
    cd "$build"
    export ASAN_OPTIONS="$ASAN_OPTS:log_path=$logs/asan:log_exe_name=1"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=66:log_path=$logs/ubsan:log_exe_name=1"
    export TSAN_OPTIONS="$TSAN_OPTS:log_path=$logs/tsan:log_exe_name=1"
    export KESTREL_SANITIZER="$mode"
    ctest --output-on-failure -j"$CTEST_JOBS" --timeout 1800 "$@"
  ) || status=$?
  say "$build: ctest $* took $((SECONDS - t0)) s (exit $status)"
  return $status
}

# no_reports build_dir: fails, printing them, if any process wrote a report.
no_reports() {
  local logs="$1/sanitizer-logs" reports
  reports="$(find "$logs" -type f 2>/dev/null | sort)"
  [ -z "$reports" ] && return 0
  say "sanitizer reports in $logs (they fail the run even if every test passed):"
  while read -r f; do
    echo "===== $f" >&2
    head -c 20000 "$f" >&2
  done <<<"$reports"
  return 1
}

print_skips() {  # label entries...
  local label="$1"
  shift
  if [ $# -eq 0 ]; then
    say "$label: no test skipped"
    return
  fi
  for e in "$@"; do say "$label: SKIPPED ${e%%|*}: ${e#*|}"; done
}

skip_regex() {
  local r="" e
  for e in "$@"; do r="${r:+$r|}${e%%|*}"; done
  echo "$r"
}

run_asan() {
  local build="$root/build-asan"
  local leaks=1 status=0
  if ! lsan_works; then
    if [ "${KESTREL_REQUIRE_LSAN:-0}" = 1 ]; then
      say "KESTREL_REQUIRE_LSAN=1 and LeakSanitizer cannot run: failing"
      return 1
    fi
    leaks=0
    say "LEAK CHECKING IS OFF for this run (LeakSanitizer cannot run in this environment);"
    say "AddressSanitizer and UBSan still check everything else."
  fi
  configure_and_build "$build" address,undefined
  rm -rf "$build/sanitizer-logs"
  print_skips asan "${ASAN_SKIP[@]}"
  local skip=()
  [ ${#ASAN_SKIP[@]} -gt 0 ] && skip=(-E "$(skip_regex "${ASAN_SKIP[@]}")")
  local base="detect_leaks=$leaks:halt_on_error=1:exitcode=66:strict_init_order=1"
  # Unit and golden tests: also stack-use-after-return (fake stacks; catches a
  # thread-pool job or a callback outliving the frame it points into).
  ASAN_OPTS="$base:detect_stack_use_after_return=1"
  run_ctest "$build" -LE e2e "${skip[@]}" || status=1
  # The e2e tests run the binary as a user would, and server_test bounds the
  # server's RSS growth over its load run (+256 MiB). Fake stacks (~20 MiB for
  # each of the 64 HTTP threads) and the default 256 MiB quarantine of freed
  # memory would be measured there instead of the server, so: no fake stacks,
  # and a 64 MiB quarantine (a freed block is still poisoned until 64 MiB more
  # has been freed after it).
  ASAN_OPTS="$base:quarantine_size_mb=64"
  run_ctest "$build" -L e2e "${skip[@]}" || status=1
  no_reports "$build" || status=1
  return $status
}

run_tsan() {
  local build="$root/build-tsan" status=0
  # No suppressions: TSan reports nothing in these tests. halt_on_error=0 lets
  # a run show every race it meets; any report still fails it (exitcode, logs).
  TSAN_OPTS="halt_on_error=0:exitcode=66:second_deadlock_stack=1"
  configure_and_build "$build" thread kestrel kestrel_runtime_tests kestrel_platform_tests
  rm -rf "$build/sanitizer-logs"
  print_skips tsan "${TSAN_SKIP[@]}"
  local args=(-R "$TSAN_ONLY")
  [ ${#TSAN_SKIP[@]} -gt 0 ] && args+=(-E "$(skip_regex "${TSAN_SKIP[@]}")")
  CTEST_JOBS=1 run_ctest "$build" "${args[@]}" || status=1
  no_reports "$build" || status=1
  return $status
}

for m in "${modes[@]}"; do
  case "$m" in asan | tsan) ;; *) say "unknown mode '$m' (asan, tsan)"; exit 2 ;; esac
done
# What scripts/test.sh also does first (both skip what is already there).
"$root/scripts/install_deps.sh"
"$root/scripts/fetch_models.sh"

ASAN_OPTS=""
TSAN_OPTS=""
CTEST_JOBS=2
status=0
for m in "${modes[@]}"; do
  case "$m" in
    asan) run_asan || status=1 ;;
    tsan) run_tsan || status=1 ;;
  esac
done
[ $status -eq 0 ] && say "all sanitizer runs passed" || say "FAILED"
exit $status
