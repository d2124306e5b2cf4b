#pragma once
#include <cstdint>

namespace kestrel {

// Which implementation draws the token. Both draw from the same distribution
// (llama.cpp's chain); they consume the random stream differently, so one seed
// gives different token sequences under the two.
enum class SamplerKind : uint8_t {
  Sort,      // the sort-based reference chain (sampling/sort_sampler.h)
  SortFree,  // pivot-based rejection sampling over the unsorted logits (sampling/sortfree.h)
  Auto,      // the faster one: resolve_sampler_kind() in sampling/sampler.h
};

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
  SamplerKind kind = SamplerKind::Auto;  // measured faster everywhere: sorting-free (docs/benchmarks.md)
};

constexpr uint64_t kRandomSeed = 0xFFFFFFFFu;

}  // namespace kestrel
