#!/usr/bin/env bash
# Builds kestrel and runs every test (unit, golden against llama.cpp fixtures, e2e).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install_deps.sh"
"$root/scripts/fetch_models.sh" qwen2-0.5b  # SmolLM2 + the mixed-format Qwen2.5-0.5B (golden test)
"$root/scripts/build.sh"
cd "$root/build"
ctest --output-on-failure -j2 --timeout 900
