#!/usr/bin/env bash
# Installs the Debian packages kestrel builds and tests with (skips what is there).
set -euo pipefail
PKGS=(build-essential cmake ninja-build ccache pkg-config clang libclang-rt-14-dev
      libgtest-dev libgmock-dev libbenchmark-dev libpcre2-dev libutf8proc-dev
      nlohmann-json3-dev libcli11-dev libeigen3-dev libcpp-httplib-dev python3 python3-pip unzip
      chromium chromium-driver)  # the chat page's browser test (tests/e2e/chat_page_test.py)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi
# The server's end-to-end tests drive it with the official openai client and,
# for the chat page, Selenium (with Debian's chromedriver: no driver download).
for mod in openai selenium; do
  if ! python3 -c "import $mod" >/dev/null 2>&1; then
    python3 -m pip install -q "$mod" || python3 -m pip install -q --break-system-packages "$mod"
  fi
done
