#pragma once
// A captured layer's keys and values stored in a KvCache (one sequence, layer
// 0 of the cache, the capture's KV heads in order), as the attention golden
// tests attend over them.
#include <algorithm>
#include <vector>

#include "golden/attention/format.h"
#include "kv/kv_cache.h"

namespace kestrel::testing {

inline void store_capture(KvCache& cache, const QkvCapture& c, int li) {
  const int d = c.head_dim, nkv = c.n_heads;
  std::vector<float> k(size_t(nkv) * d), v(size_t(nkv) * d);
  for (int p = 0; p < c.n_pos; ++p) {
    for (int h = 0; h < nkv; ++h) {
      std::copy(c.k(li, p, h), c.k(li, p, h) + d, k.begin() + h * d);
      std::copy(c.v(li, p, h), c.v(li, p, h) + d, v.begin() + h * d);
    }
    cache.store(0, 0, p, k.data(), v.data());
  }
  cache.set_seq_len(0, c.n_pos);
}

}  // namespace kestrel::testing
