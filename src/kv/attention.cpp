#include "kv/attention.h"

#include <cassert>

namespace kestrel {

void attend_head(const KvCache& cache, int layer, int seq, const AttentionParams& p, int head, const float* q,
                 int64_t n_visible, float* out, const kernels::AttentionKernelSet& attn) {
  assert(attn.k_type == cache.k_type() && attn.v_type == cache.v_type());
  const int kv_head = head / (p.n_head / p.n_kv_head);
  assert(n_visible <= static_cast<int64_t>(cache.block_table(seq).size()) * KvCache::kBlock);
  // Rows of the sequence's blocks, in position order (kv/kv_cache.h layout).
  attn.row(head_rows(cache.view(layer, seq, kv_head)), n_visible, p.head_dim, q, p.scale, out);
}

}  // namespace kestrel
