#!/usr/bin/env bash
# Runs the chat page's browser test (tests/e2e/chat_page_test.py: headless
# Chromium + Selenium) against the built binary. Exit 77 = skipped (Chromium,
# chromedriver or selenium missing; it says which). Usage: chat_page_test.sh PATH/TO/kestrel
set -uo pipefail
BIN="$1"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec timeout -k 5 60 python3 "$HERE/chat_page_test.py" "$BIN"
