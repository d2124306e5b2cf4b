#!/usr/bin/env bash
# Runs the server stress test (tests/e2e/server_stress_test.py: concurrent
# requests, a third of whose clients hang up) against the built binary.
# Usage: server_stress_test.sh PATH/TO/kestrel
set -uo pipefail
BIN="$1"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec timeout -k 10 600 python3 "$HERE/server_stress_test.py" "$BIN"
