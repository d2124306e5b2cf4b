#!/usr/bin/env bash
# Runs the server end-to-end test (tests/e2e/server_test.py) against the built
# binary. Usage: server_test.sh PATH/TO/kestrel
set -uo pipefail
BIN="$1"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! python3 -c "import openai" 2>/dev/null; then
  echo "FAILED: the python 'openai' package is missing (run scripts/install_deps.sh)"
  exit 1
fi
exec timeout 300 python3 "$HERE/server_test.py" "$BIN"
