#pragma once
// A random whitening for a CQ codebook's tests (tests/unit/kv/cq_cache_test.cpp,
// cq_residual_test.cpp): per block an upper-triangular W, diagonal in
// [0.5, 1.5], above it N(0, 0.3^2).
#include <random>

#include "kv/cq_codebook.h"

namespace kestrel::testing {

inline void random_cq_whitening(CqCodebook& book, std::mt19937& rng) {
  enable_cq_whitening(book);
  const int w = book.width();
  std::uniform_real_distribution<float> diag(0.5f, 1.5f);
  std::normal_distribution<float> off(0.0f, 0.3f);
  for (int b = 0; b < book.blocks(); ++b)
    for (int i = 0; i < w; ++i)
      for (int j = i; j < w; ++j)
        book.whitening[(static_cast<size_t>(b) * w + i) * w + j] = j == i ? diag(rng) : off(rng);
}

}  // namespace kestrel::testing
