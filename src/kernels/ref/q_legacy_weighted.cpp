// Q4_0, Q4_1, Q5_0, Q5_1 weighted by an importance matrix: what llama-quantize
// writes for these formats when given an imatrix (a model quantized with one,
// or a K mix's fallback for rows 256 does not divide). Each value's weight is
// its column's importance times sqrt(sigma^2 + x^2), sigma^2 the row's mean
// square; the symmetric formats search the scale as Q6_K's sub-blocks do, the
// ones with a min as Q4_K's (37 candidate grids).
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "kernels/blocks.h"
#include "kernels/ref/k_search.h"
#include "kernels/ref/ref_kernels.h"

// The quantizers must round exactly as ggml's reference does: no fused
// multiply-adds (GCC does not contract in ISO C++ mode; clang needs telling).
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace kestrel::kernels::ref {
namespace {

float row_mean_square(const float* x, int64_t n) {
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2 / static_cast<float>(n);
}

void block_weights(const float* x, const float* importance, float sigma2, float* w) {
  for (int j = 0; j < kQK; ++j) w[j] = importance[j] * std::sqrt(sigma2 + x[j] * x[j]);
}

// Codes 0..31 (or 0..15) of one block into its nibbles and, for 5 bits, qh.
template <typename Block>
void pack_nibbles(const uint8_t* L, Block& b) {
  for (int j = 0; j < kQK / 2; ++j) b.qs[j] = static_cast<uint8_t>((L[j] & 0xF) | ((L[j + kQK / 2] & 0xF) << 4));
}
void pack_fifth_bits(const uint8_t* L, uint8_t* qh_out) {
  uint32_t qh = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    qh |= static_cast<uint32_t>((L[j] >> 4) & 1) << j;
    qh |= static_cast<uint32_t>((L[j + kQK / 2] >> 4) & 1) << (j + kQK / 2);
  }
  std::memcpy(qh_out, &qh, 4);
}

// Symmetric formats: codes nmax + l, l in [-nmax, nmax).
template <typename Block, int kNmax>
void quantize_symmetric(const float* src, void* dst, int64_t n, const float* importance) {
  auto* b = static_cast<Block*>(dst);
  const float sigma2 = row_mean_square(src, n);
  float w[kQK];
  int8_t L[kQK];
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK, importance += kQK) {
    block_weights(src, importance, sigma2, w);
    b[i].d = f32_to_fp16(fit_scale_symmetric(kQK, kNmax, src, L, w));
    const auto* codes = reinterpret_cast<const uint8_t*>(L);
    pack_nibbles(codes, b[i]);
    if constexpr (kNmax == 16) pack_fifth_bits(codes, b[i].qh);
  }
}

// Formats with a min: codes 0..nmax, x ~ d * L + m.
template <typename Block, int kNmax>
void quantize_with_min(const float* src, void* dst, int64_t n, const float* importance) {
  auto* b = static_cast<Block*>(dst);
  const float sigma2 = row_mean_square(src, n);
  float w[kQK];
  uint8_t L[kQK], aux[kQK];
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK, importance += kQK) {
    block_weights(src, importance, sigma2, w);
    float min = 0;
    b[i].d = f32_to_fp16(fit_scale_min(kQK, kNmax, src, w, L, &min, aux, -0.9f, 0.05f, 36));
    b[i].m = f32_to_fp16(-min);
    pack_nibbles(L, b[i]);
    if constexpr (kNmax == 31) pack_fifth_bits(L, b[i].qh);
  }
}

}  // namespace

void quantize_weighted_q4_0(const float* src, void* dst, int64_t n, const float* importance) {
  quantize_symmetric<BlockQ4_0, 8>(src, dst, n, importance);
}
void quantize_weighted_q5_0(const float* src, void* dst, int64_t n, const float* importance) {
  quantize_symmetric<BlockQ5_0, 16>(src, dst, n, importance);
}
void quantize_weighted_q4_1(const float* src, void* dst, int64_t n, const float* importance) {
  quantize_with_min<BlockQ4_1, 15>(src, dst, n, importance);
}
void quantize_weighted_q5_1(const float* src, void* dst, int64_t n, const float* importance) {
  quantize_with_min<BlockQ5_1, 31>(src, dst, n, importance);
}

}  // namespace kestrel::kernels::ref
