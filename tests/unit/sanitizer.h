#pragma once
// Whether the tests run in a sanitizer tree (scripts/test_sanitized.sh exports
// KESTREL_SANITIZER=asan|tsan). Instrumented kernels run 5-50x slower; a test
// whose only knob is volume (draws of a statistical check) may take less of it
// there: the sanitizer looks for memory and threading errors, which the first
// draws already exercise, and the Release run keeps the full statistical power.
#include <cstdlib>

namespace kestrel::testing {

inline bool under_sanitizer() {
  const char* s = std::getenv("KESTREL_SANITIZER");
  return s != nullptr && *s != '\0';
}

}  // namespace kestrel::testing
