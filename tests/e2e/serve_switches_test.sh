#!/usr/bin/env bash
# Runs tests/e2e/serve_switches_test.py against the built binary: `kestrel serve
# --switch` settings reach the server. Usage: serve_switches_test.sh PATH/TO/kestrel
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec timeout 300 python3 "$HERE/serve_switches_test.py" "$1"
