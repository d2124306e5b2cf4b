#include "kv/kv_cache.h"

#include <cstring>

#include "core/error.h"
#include "core/fp16.h"

namespace kestrel {

KvCache::KvCache(KvShape shape, KvType type) : shape_(shape), type_(type) {
  if (shape.n_layer <= 0 || shape.n_kv_head <= 0 || shape.head_dim <= 0 || shape.n_ctx <= 0 || shape.n_seq <= 0)
    fail("kv cache: invalid shape (layers ", shape.n_layer, ", kv heads ", shape.n_kv_head, ", head dim ",
         shape.head_dim, ", ctx ", shape.n_ctx, ", seqs ", shape.n_seq, ")");
  const size_t n = static_cast<size_t>(shape.n_layer) * shape.n_seq * shape.n_kv_head * shape.n_ctx *
                   shape.head_dim * element_bytes();
  k_.assign(n, 0);
  v_.assign(n, 0);
  seq_len_.assign(shape.n_seq, 0);
}

size_t KvCache::offset(int layer, int seq, int head) const {
  const size_t rows = ((static_cast<size_t>(layer) * shape_.n_seq + seq) * shape_.n_kv_head + head);
  return rows * static_cast<size_t>(shape_.n_ctx) * shape_.head_dim * element_bytes();
}

void KvCache::store(int layer, int seq, int64_t pos, const float* k, const float* v) {
  if (pos < 0 || pos >= shape_.n_ctx) fail("kv cache: position ", pos, " outside context of ", shape_.n_ctx);
  const int d = shape_.head_dim;
  for (int h = 0; h < shape_.n_kv_head; ++h) {
    const size_t at = offset(layer, seq, h) + static_cast<size_t>(pos) * d * element_bytes();
    if (type_ == KvType::F16) {
      auto* kd = reinterpret_cast<uint16_t*>(k_.data() + at);
      auto* vd = reinterpret_cast<uint16_t*>(v_.data() + at);
      for (int i = 0; i < d; ++i) {
        kd[i] = f32_to_fp16(k[h * d + i]);
        vd[i] = f32_to_fp16(v[h * d + i]);
      }
    } else {
      std::memcpy(k_.data() + at, k + h * d, d * sizeof(float));
      std::memcpy(v_.data() + at, v + h * d, d * sizeof(float));
    }
  }
}

void KvCache::set_seq_len(int seq, int64_t n) {
  if (n < 0 || n > shape_.n_ctx) fail("kv cache: length ", n, " outside context of ", shape_.n_ctx);
  seq_len_[seq] = n;
}

void KvCache::clear() {
  for (auto& n : seq_len_) n = 0;
}

}  // namespace kestrel
