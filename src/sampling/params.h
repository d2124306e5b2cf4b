#pragma once
#include <cstdint>

namespace kestrel {

// Sampling settings, with llama.cpp's defaults and meanings.
struct SamplingParams {
  float temperature = 0.8f;  // <= 0: greedy
  int top_k = 40;            // <= 0: off
  float top_p = 0.95f;       // >= 1: off
  float min_p = 0.05f;       // <= 0: off
  float repeat_penalty = 1.0f;     // 1: off
  float frequency_penalty = 0.0f;  // 0: off
  float presence_penalty = 0.0f;   // 0: off
  int repeat_last_n = 64;          // window of recent tokens the penalties see
  uint64_t seed = 0xFFFFFFFFu;     // llama.cpp's LLAMA_DEFAULT_SEED means "random"
};

constexpr uint64_t kRandomSeed = 0xFFFFFFFFu;

}  // namespace kestrel
