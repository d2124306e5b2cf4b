#include "kv/attention.h"

#include <cassert>

#include "kv/attention_kernels.h"

namespace kestrel {

void attend_head(const KvCache& cache, int layer, int seq, const AttentionParams& p, int head, const float* q,
                 int64_t n_visible, float* out, Isa isa) {
  const int kv_head = head / (p.n_head / p.n_kv_head);
  const auto& kern = kv::attention_kernels(isa);
  const KvHeadView h = cache.view(layer, seq, kv_head);
  assert(n_visible <= static_cast<int64_t>(cache.block_table(seq).size()) * KvCache::kBlock);
  // Rows of the sequence's blocks, in position order (kv/kv_cache.h layout).
  if (cache.type() == KvType::F16)
    kern.f16(head_blocks<uint16_t>(h), n_visible, p.head_dim, q, p.scale, out);
  else
    kern.f32(head_blocks<float>(h), n_visible, p.head_dim, q, p.scale, out);
}

}  // namespace kestrel
