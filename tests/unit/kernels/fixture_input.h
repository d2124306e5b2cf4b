#pragma once
// Deterministic rows for the llama.cpp fixture (ggml_fixture_test.cpp): plain
// integer arithmetic, so the generator program linked against ggml and the
// test produce bit-identical floats without sharing a random library.
#include <cstdint>
#include <vector>

namespace kestrel::kernels::test {

// 16 super-blocks (4096 values): Gaussian-like values whose scale changes per
// 32-block, an all-zero block, a constant block, a block of ties, rare outliers.
inline std::vector<float> fixture_row() {
  std::vector<float> x(4096);
  uint32_t s = 0x12345678u;
  auto next = [&s] {
    s = s * 1664525u + 1013904223u;
    return static_cast<float>(s >> 8) / 16777216.0f;  // [0, 1), exact
  };
  for (size_t i = 0; i < x.size(); ++i) {
    const size_t block = i / 32;
    const float g = next() + next() + next() + next() - 2.0f;  // roughly normal, sd ~0.58
    const float scale = static_cast<float>(1u << (block % 7)) / 16.0f;
    float v = g * scale + (block % 5 == 3 ? 0.25f * scale : 0.0f);
    if (block == 9) v = 0.0f;
    if (block == 10) v = -0.3125f;
    // Exact ties for the 8-bit quantizers (127/amax = 2 on quarter multiples),
    // where llama-quantize (ties away) and the x86 activation path (ties to even) differ.
    if (block == 11) v = i % 32 == 0 ? 63.5f : static_cast<float>(static_cast<int>(next() * 240.0f) - 120) * 0.25f;
    if (i % 613 == 17) v = 40.0f * scale;
    x[i] = v;
  }
  return x;
}

// One importance weight per column of a 1024-wide row (fixture_row() read as 4
// rows): spread over six orders of magnitude, a few exact zeros, and every
// 97th column 50x its neighbours (the rare large input channels an imatrix
// is for).
inline std::vector<float> fixture_importance() {
  std::vector<float> w(1024);
  uint32_t s = 0x9e3779b9u;
  for (size_t i = 0; i < w.size(); ++i) {
    s = s * 1664525u + 1013904223u;
    const float u = static_cast<float>(s >> 8) / 16777216.0f;  // [0, 1), exact
    float v = u * u * u * u * 4.0f + 1e-6f;
    if (i % 211 == 5) v = 0.0f;
    if (i % 97 == 13) v *= 50.0f;
    w[i] = v;
  }
  return w;
}

// FNV-1a, 64 bit.
inline uint64_t fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace kestrel::kernels::test
