#include "runtime/target_features.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"

namespace kestrel {

TargetFeatures::TargetFeatures(std::vector<int> layers, int64_t n_embd, int64_t n_ctx, int n_seq)
    : layers_(std::move(layers)),
      n_embd_(n_embd),
      width_(static_cast<int64_t>(layers_.size()) * n_embd),
      n_ctx_(n_ctx),
      rows_(static_cast<size_t>(n_seq)) {}

void TargetFeatures::capture(int slot, const Batch& batch, const float* x, int64_t n_embd) {
  if (n_embd != n_embd_) fail("EAGLE-3: the target's hidden size ", n_embd, " is not the head's ", n_embd_);
  for (int64_t t = 0; t < batch.size(); ++t) {
    const int seq = batch.seq[t];
    const int64_t pos = batch.pos[t];
    if (seq < 0 || seq >= static_cast<int>(rows_.size()) || pos < 0 || pos >= n_ctx_)
      fail("EAGLE-3: features of sequence ", seq, " position ", pos, " fall outside the store");
    std::vector<uint16_t>& r = rows_[static_cast<size_t>(seq)];
    if (r.empty()) r.assign(static_cast<size_t>(n_ctx_ * width_), 0);
    uint16_t* dst = &r[static_cast<size_t>(pos * width_ + slot * n_embd_)];
    const float* src = x + t * n_embd;
    for (int64_t i = 0; i < n_embd; ++i) dst[i] = f32_to_fp16(src[i]);
  }
}

void TargetFeatures::row(int seq, int64_t pos, float* out) const {
  const std::vector<uint16_t>& r = rows_.at(static_cast<size_t>(seq));
  if (r.empty() || pos < 0 || pos >= n_ctx_) fail("EAGLE-3: no features of sequence ", seq, " position ", pos);
  const uint16_t* src = &r[static_cast<size_t>(pos * width_)];
  for (int64_t i = 0; i < width_; ++i) out[i] = fp16_to_f32(src[i]);
}

void TargetFeatures::share_prefix(int dst, int src, int64_t n) {
  if (dst == src || n <= 0) return;
  const std::vector<uint16_t>& s = rows_.at(static_cast<size_t>(src));
  if (s.empty()) return;
  std::vector<uint16_t>& d = rows_.at(static_cast<size_t>(dst));
  if (d.empty()) d.assign(static_cast<size_t>(n_ctx_ * width_), 0);
  std::copy_n(s.begin(), static_cast<size_t>(std::min(n, n_ctx_) * width_), d.begin());
}

}  // namespace kestrel
