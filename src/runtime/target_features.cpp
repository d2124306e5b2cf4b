#include "runtime/target_features.h"

#include <algorithm>

#include "core/error.h"
#include "kernels/quant_kernels.h"

namespace kestrel {

TargetFeatures::TargetFeatures(std::vector<int> layers, int64_t n_embd, int64_t n_ctx, int n_seq, Isa isa)
    : layers_(std::move(layers)),
      n_embd_(n_embd),
      width_(static_cast<int64_t>(layers_.size()) * n_embd),
      n_ctx_(n_ctx),
      isa_(isa),
      rows_(static_cast<size_t>(n_seq)) {}

uint16_t* TargetFeatures::rows_of(int seq) {
  std::unique_ptr<uint16_t[]>& r = rows_[static_cast<size_t>(seq)];
  if (!r) r.reset(new uint16_t[static_cast<size_t>(n_ctx_ * width_)]);
  return r.get();
}

const uint16_t* TargetFeatures::written_rows(int seq, int64_t end) const {
  if (seq < 0 || seq >= static_cast<int>(rows_.size()) || !rows_[static_cast<size_t>(seq)] || end < 0 || end > n_ctx_)
    fail("EAGLE-3: no features of sequence ", seq, " up to position ", end);
  return rows_[static_cast<size_t>(seq)].get();
}

void TargetFeatures::capture(int slot, const Batch& batch, const float* x, int64_t n_embd) {
  if (n_embd != n_embd_) fail("EAGLE-3: the target's hidden size ", n_embd, " is not the head's ", n_embd_);
  const auto to_f16 = kernels::quant_kernels(DType::F16, isa_).quantize_row;
  for (int64_t t = 0; t < batch.size(); ++t) {
    const int seq = batch.seq[t];
    const int64_t pos = batch.pos[t];
    if (seq < 0 || seq >= static_cast<int>(rows_.size()) || pos < 0 || pos >= n_ctx_)
      fail("EAGLE-3: features of sequence ", seq, " position ", pos, " fall outside the store");
    to_f16(x + t * n_embd, rows_of(seq) + pos * width_ + slot * n_embd_, n_embd);
  }
}

void TargetFeatures::row(int seq, int64_t pos, float* out) const {
  const uint16_t* rows = written_rows(seq, pos + 1);
  kernels::quant_kernels(DType::F16, isa_).dequantize_row(rows + pos * width_, out, width_);
}

std::span<const uint16_t> TargetFeatures::f16_rows(int seq, int64_t n) const {
  return {written_rows(seq, n), static_cast<size_t>(n * width_)};
}

void TargetFeatures::share_positions(int dst, int src, int64_t from, int64_t n) {
  n = std::min(n, n_ctx_);
  from = std::max<int64_t>(from, 0);
  if (dst == src || n <= from || !rows_.at(static_cast<size_t>(src))) return;
  std::copy_n(rows_[static_cast<size_t>(src)].get() + from * width_, static_cast<size_t>((n - from) * width_),
              rows_of(dst) + from * width_);
}

}  // namespace kestrel
