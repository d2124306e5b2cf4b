#pragma once
// Greedy generation of exactly max_tokens tokens (no stop at end-of-generation):
// what the scheduler tests compare between hosts and runs.
#include "runtime/session.h"

namespace kestrel::testing {

inline GenerateOptions greedy(int max_tokens) {
  GenerateOptions g;
  g.max_tokens = max_tokens;
  g.sampling.temperature = 0.0f;
  g.stop_at_eog = false;
  return g;
}

}  // namespace kestrel::testing
