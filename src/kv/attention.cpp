#include "kv/attention.h"

#include "kv/attention_kernels.h"

namespace kestrel {

void attend_head(const KvCache& cache, int layer, int seq, const AttentionParams& p, int head, const float* q,
                 int64_t n_visible, float* out, Isa isa) {
  const int kv_head = head / (p.n_head / p.n_kv_head);
  const auto& kern = kv::attention_kernels(isa);
  if (cache.type() == KvType::F16) {
    kern.f16(static_cast<const uint16_t*>(cache.k_rows(layer, seq, kv_head)),
             static_cast<const uint16_t*>(cache.v_rows(layer, seq, kv_head)), n_visible, p.head_dim, q, p.scale, out);
  } else {
    kern.f32(static_cast<const float*>(cache.k_rows(layer, seq, kv_head)),
             static_cast<const float*>(cache.v_rows(layer, seq, kv_head)), n_visible, p.head_dim, q, p.scale, out);
  }
}

}  // namespace kestrel
