#include "kv/attention.h"

#include <cmath>
#include <vector>

#include "core/fp16.h"
#include "ops/activation.h"

namespace kestrel {

void attend_head(const KvCache& cache, int layer, int seq, const AttentionParams& p, int head,
                 const float* q, int64_t n_visible, float* out, float* scores) {
  const int d = p.head_dim;
  const int kv_head = head / (p.n_head / p.n_kv_head);
  float qr[512];
  for (int i = 0; i < d; ++i) qr[i] = cache.type() == KvType::F16 ? fp16_to_f32(f32_to_fp16(q[i])) : q[i];

  if (cache.type() == KvType::F16) {
    const auto* k = static_cast<const uint16_t*>(cache.k_rows(layer, seq, kv_head));
    for (int64_t j = 0; j < n_visible; ++j) {
      float s = 0.0f;
      for (int i = 0; i < d; ++i) s += qr[i] * fp16_to_f32(k[j * d + i]);
      scores[j] = s * p.scale;
    }
  } else {
    const auto* k = static_cast<const float*>(cache.k_rows(layer, seq, kv_head));
    for (int64_t j = 0; j < n_visible; ++j) {
      float s = 0.0f;
      for (int i = 0; i < d; ++i) s += qr[i] * k[j * d + i];
      scores[j] = s * p.scale;
    }
  }
  softmax_inplace(scores, n_visible);

  for (int i = 0; i < d; ++i) out[i] = 0.0f;
  if (cache.type() == KvType::F16) {
    const auto* v = static_cast<const uint16_t*>(cache.v_rows(layer, seq, kv_head));
    for (int64_t j = 0; j < n_visible; ++j) {
      const float w = scores[j];
      for (int i = 0; i < d; ++i) out[i] += w * fp16_to_f32(v[j * d + i]);
    }
  } else {
    const auto* v = static_cast<const float*>(cache.v_rows(layer, seq, kv_head));
    for (int64_t j = 0; j < n_visible; ++j) {
      const float w = scores[j];
      for (int i = 0; i < d; ++i) out[i] += w * v[j * d + i];
    }
  }
}

}  // namespace kestrel
