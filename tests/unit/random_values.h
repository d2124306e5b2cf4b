#pragma once
// Seeded random test inputs shared by the unit tests.
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace kestrel::testing {

// n draws of N(0, sigma^2) from a generator seeded with `seed`.
inline std::vector<float> normal_values(size_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

}  // namespace kestrel::testing
