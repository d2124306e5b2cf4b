// Scalar K quants: Q4_K, Q5_K, Q6_K weights and the Q8_K activation format.
// The quantizers follow ggml's reference quantizers (scale search per
// sub-block, 6- or 8-bit scales relative to a per-super-block fp16 scale).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "kernels/blocks.h"
#include "kernels/ref/k_search.h"
#include "kernels/ref/ref_kernels.h"
#include "kernels/ref/rounding.h"

// The quantizers must round exactly as ggml's reference does: no fused
// multiply-adds (GCC does not contract in ISO C++ mode; clang needs telling).
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace kestrel::kernels::ref {
namespace {

constexpr int kSub = 32;  // Q4_K/Q5_K sub-block
constexpr float kAllZero = 1e-15f;

// Packs 8 six-bit scales and mins into the 12-byte layout k_scale_min reads.
void pack_scales_mins(const uint8_t* ls, const uint8_t* lm, uint8_t* out) {
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      out[j] = ls[j];
      out[j + 4] = lm[j];
    } else {
      out[j + 4] = static_cast<uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      out[j - 4] |= static_cast<uint8_t>((ls[j] >> 4) << 6);
      out[j] |= static_cast<uint8_t>((lm[j] >> 4) << 6);
    }
  }
}

// Stores a super-block's 6-bit sub-block scales ls and mins lm with their F16
// d and dmin, then re-quantizes the values against the scales actually
// stored (into L[256]). Shared by both searches below.
void store_k_superblock(const float* x, int nmax, const uint8_t* ls, const uint8_t* lm, float d_block, float dmin_block,
                        uint16_t* d_out, uint16_t* dmin_out, uint8_t* scales_out, uint8_t* L) {
  std::memset(scales_out, 0, kKScaleBytes);
  pack_scales_mins(ls, lm, scales_out);
  *d_out = f32_to_fp16(d_block);
  *dmin_out = f32_to_fp16(dmin_block);

  const float d_all = fp16_to_f32(*d_out);
  const float dmin_all = fp16_to_f32(*dmin_out);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    k_scale_min(j, scales_out, &sc, &m);
    const float d = d_all * sc;
    if (d == 0.0f) continue;  // keep the fit's quants: they all decode to -dm
    const float dm = dmin_all * m;
    for (int l = 0; l < kSub; ++l)
      L[kSub * j + l] = static_cast<uint8_t>(std::clamp(nearest_int((x[kSub * j + l] + dm) / d), 0, nmax));
  }
}

// Shared by Q4_K (nmax 15) and Q5_K (nmax 31): fits each 32-sub-block, then
// quantizes the sub-block scales and mins to 6 bits against the largest of
// each, and re-quantizes the values against the scales actually stored.
// Writes d, dmin, scales; returns the quants in L[256].
void quantize_k_superblock(const float* x, int nmax, float rmin, float rdelta, int nstep,
                           uint16_t* d_out, uint16_t* dmin_out, uint8_t* scales_out, uint8_t* L) {
  float scales[8], mins[8], weights[kSub];
  uint8_t aux[kSub];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + kSub * j;
    float sum_x2 = 0;
    for (int l = 0; l < kSub; ++l) sum_x2 += xs[l] * xs[l];
    // Weight large values more, but never ignore small ones.
    const float av_x = std::sqrt(sum_x2 / kSub);
    for (int l = 0; l < kSub; ++l) weights[l] = av_x + std::fabs(xs[l]);
    scales[j] = fit_scale_min(kSub, nmax, xs, weights, L + kSub * j, &mins[j], aux, rmin, rdelta,
                              nstep);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  uint8_t ls[8], lm[8];
  for (int j = 0; j < 8; ++j) {
    // uint8 wrap first, then the clamp: the order ggml's reference uses.
    ls[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
    lm[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
  }
  store_k_superblock(x, nmax, ls, lm, max_scale / 63.f, max_min / 63.f, d_out, dmin_out, scales_out, L);
}

// Q4_K/Q5_K with an importance matrix, as llama-quantize does given one: each
// value weighted by its column's importance times sqrt(sigma^2 + x^2) (sigma^2
// twice the super-block's mean square), 37 candidate grids per sub-block, and
// the sub-block scales and mins fitted to 6 bits by the same weighted error
// (each sub-block counting its summed weight) instead of against their maximum.
void quantize_k_superblock_weighted(const float* x, const float* importance, int nmax, uint16_t* d_out,
                                    uint16_t* dmin_out, uint8_t* scales_out, uint8_t* L) {
  float sum_x2 = 0;
  for (int l = 0; l < kQKK; ++l) sum_x2 += x[l] * x[l];
  const float sigma2 = 2 * sum_x2 / kQKK;
  float scales[8], mins[8], group_weights[8], weights[kSub];
  uint8_t aux[kSub];
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + kSub * j;
    float sum_w = 0;
    for (int l = 0; l < kSub; ++l) {
      weights[l] = importance[kSub * j + l] * std::sqrt(sigma2 + xs[l] * xs[l]);
      sum_w += weights[l];
    }
    group_weights[j] = sum_w;
    scales[j] = fit_scale_min(kSub, nmax, xs, weights, L + kSub * j, &mins[j], aux, -0.9f, 0.05f, 36);
  }
  uint8_t ls[8], lm[8];
  const float d = fit_scale_positive(8, 63, scales, ls, group_weights);
  const float dmin = fit_scale_positive(8, 63, mins, lm, group_weights);
  store_k_superblock(x, nmax, ls, lm, d, dmin, d_out, dmin_out, scales_out, L);
}

// The quants of a super-block (L[256], 0..nmax) into the format's bytes.
void pack_q4_K(const uint8_t* L, BlockQ4K& b) {
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) b.qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
}
void pack_q5_K(const uint8_t* L, BlockQ5K& b) {
  std::memset(b.qh, 0, sizeof(b.qh));
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      const int l1 = L[64 * c + l], l2 = L[64 * c + 32 + l];
      b.qh[l] |= static_cast<uint8_t>(((l1 >> 4) << (2 * c)) | ((l2 >> 4) << (2 * c + 1)));
      b.qs[32 * c + l] = static_cast<uint8_t>((l1 & 0xF) | ((l2 & 0xF) << 4));
    }
  }
}

// Rows of Q4_K/Q5_K super-blocks: the plain search (rmin, rdelta, nstep: its
// candidate grids), or the weighted one when an importance is given.
template <typename Block, int kNmax, void (*kPack)(const uint8_t*, Block&)>
void quantize_k_rows(const float* src, void* dst, int64_t n, const float* importance, float rmin, float rdelta,
                     int nstep) {
  auto* b = static_cast<Block*>(dst);
  uint8_t L[kQKK];
  for (int64_t i = 0; i < n / kQKK; ++i, src += kQKK) {
    if (importance)
      quantize_k_superblock_weighted(src, importance + kQKK * i, kNmax, &b[i].d, &b[i].dmin, b[i].scales, L);
    else
      quantize_k_superblock(src, kNmax, rmin, rdelta, nstep, &b[i].d, &b[i].dmin, b[i].scales, L);
    kPack(L, b[i]);
  }
}

}  // namespace

// ---- Q4_K ----

void dequantize_row_q4_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ4K*>(src);
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const float d = fp16_to_f32(b[i].d);
    const float dmin = fp16_to_f32(b[i].dmin);
    const uint8_t* q = b[i].qs;
    for (int c = 0; c < 4; ++c, q += 32) {  // chunk c holds sub-blocks 2c and 2c+1
      uint8_t sc, m;
      k_scale_min(2 * c, b[i].scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      k_scale_min(2 * c + 1, b[i].scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *dst++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *dst++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

void quantize_row_q4_K(const float* src, void* dst, int64_t n) {
  quantize_k_rows<BlockQ4K, 15, pack_q4_K>(src, dst, n, nullptr, -1.0f, 0.1f, 20);
}

void quantize_weighted_q4_K(const float* src, void* dst, int64_t n, const float* importance) {
  quantize_k_rows<BlockQ4K, 15, pack_q4_K>(src, dst, n, importance, -1.0f, 0.1f, 20);
}

float vec_dot_q4_K_q8_K(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ4K*>(w);
  const auto* y = static_cast<const BlockQ8K*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const int8_t* q8 = y[i].qs;
    int sumi = 0, summ = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      k_scale_min(j, x[i].scales, &sc, &m);
      const uint8_t* q4 = x[i].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      int s = 0;
      for (int l = 0; l < 32; ++l) s += ((q4[l] >> shift) & 0xF) * q8[32 * j + l];
      sumi += sc * s;
      // The min term needs only the activation sums (bsums: 16 values each).
      summ += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
    }
    const float d = y[i].d * fp16_to_f32(x[i].d);
    const float dmin = y[i].d * fp16_to_f32(x[i].dmin);
    sum += d * static_cast<float>(sumi) - dmin * static_cast<float>(summ);
  }
  return sum;
}

// ---- Q5_K ----

void dequantize_row_q5_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ5K*>(src);
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const float d = fp16_to_f32(b[i].d);
    const float dmin = fp16_to_f32(b[i].dmin);
    const uint8_t* ql = b[i].qs;
    const uint8_t* qh = b[i].qh;
    for (int c = 0; c < 4; ++c, ql += 32) {
      uint8_t sc, m;
      k_scale_min(2 * c, b[i].scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      k_scale_min(2 * c + 1, b[i].scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      const int bit1 = 2 * c, bit2 = 2 * c + 1;
      for (int l = 0; l < 32; ++l)
        *dst++ = d1 * static_cast<float>((ql[l] & 0xF) + (((qh[l] >> bit1) & 1) << 4)) - m1;
      for (int l = 0; l < 32; ++l)
        *dst++ = d2 * static_cast<float>((ql[l] >> 4) + (((qh[l] >> bit2) & 1) << 4)) - m2;
    }
  }
}

void quantize_row_q5_K(const float* src, void* dst, int64_t n) {
  quantize_k_rows<BlockQ5K, 31, pack_q5_K>(src, dst, n, nullptr, -0.5f, 0.1f, 15);
}

void quantize_weighted_q5_K(const float* src, void* dst, int64_t n, const float* importance) {
  quantize_k_rows<BlockQ5K, 31, pack_q5_K>(src, dst, n, importance, -0.5f, 0.1f, 15);
}

float vec_dot_q5_K_q8_K(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ5K*>(w);
  const auto* y = static_cast<const BlockQ8K*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const int8_t* q8 = y[i].qs;
    int sumi = 0, summ = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      k_scale_min(j, x[i].scales, &sc, &m);
      const uint8_t* ql = x[i].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      int s = 0;
      for (int l = 0; l < 32; ++l) {
        const int q = ((ql[l] >> shift) & 0xF) | (((x[i].qh[l] >> j) & 1) << 4);
        s += q * q8[32 * j + l];
      }
      sumi += sc * s;
      summ += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
    }
    const float d = y[i].d * fp16_to_f32(x[i].d);
    const float dmin = y[i].d * fp16_to_f32(x[i].dmin);
    sum += d * static_cast<float>(sumi) - dmin * static_cast<float>(summ);
  }
  return sum;
}

// ---- Q6_K ----
// Element 128h + 32r + l (half h, row r = 0..3): low 4 bits in
// ql[64h + l + 32(r&1)] (low nibble for r < 2, high for r >= 2), high 2 bits in
// qh[32h + l] at bit 2r; scale index 8h + 2r + l/16.

namespace {
// All 256 quants of a block as signed values q - 32, in element order.
void unpack_q6(const BlockQ6K& b, int8_t* q) {
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = b.ql + 64 * h;
    const uint8_t* qh = b.qh + 32 * h;
    int8_t* out = q + 128 * h;
    for (int l = 0; l < 32; ++l) {
      out[l] = static_cast<int8_t>(((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32);
      out[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
      out[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
      out[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
    }
  }
}
}  // namespace

void dequantize_row_q6_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ6K*>(src);
  int8_t q[kQKK];
  for (int64_t i = 0; i < n / kQKK; ++i, dst += kQKK) {
    const float d = fp16_to_f32(b[i].d);
    unpack_q6(b[i], q);
    for (int e = 0; e < kQKK; ++e)
      dst[e] = d * static_cast<float>(b[i].scales[e / 16]) * static_cast<float>(q[e]);
  }
}

void quantize_row_q6_K(const float* src, void* dst, int64_t n) { quantize_weighted_q6_K(src, dst, n, nullptr); }

// importance: the sub-block fits weigh each value by its column's importance
// (llama-quantize given an imatrix) instead of by x^2; nullptr: the plain file quantizer.
void quantize_weighted_q6_K(const float* src, void* dst, int64_t n, const float* importance) {
  auto* b = static_cast<BlockQ6K*>(dst);
  int8_t L[kQKK];
  float scales[kQKK / 16];
  for (int64_t i = 0; i < n / kQKK; ++i, src += kQKK) {
    float max_scale = 0, max_abs_scale = 0;
    for (int j = 0; j < kQKK / 16; ++j) {
      scales[j] =
          fit_scale_symmetric(16, 32, src + 16 * j, L + 16 * j, importance ? importance + kQKK * i + 16 * j : nullptr);
      if (std::fabs(scales[j]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    std::memset(&b[i], 0, sizeof(BlockQ6K));
    if (max_abs_scale < kAllZero) continue;  // an all-zero block stays all zero
    // 8-bit signed sub-block scales; the largest maps to -128.
    const float iscale = -128.f / max_scale;
    b[i].d = f32_to_fp16(1 / iscale);
    for (int j = 0; j < kQKK / 16; ++j)
      b[i].scales[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[j])));
    const float d_all = fp16_to_f32(b[i].d);
    for (int j = 0; j < kQKK / 16; ++j) {
      const float d = d_all * b[i].scales[j];
      if (d == 0.0f) continue;
      for (int l = 0; l < 16; ++l)
        L[16 * j + l] = static_cast<int8_t>(std::clamp(nearest_int(src[16 * j + l] / d), -32, 31) + 32);
    }
    for (int h = 0; h < 2; ++h) {
      for (int l = 0; l < 32; ++l) {
        const int8_t* q = L + 128 * h + l;  // q[0], q[32], q[64], q[96]: rows r = 0..3
        b[i].ql[64 * h + l] = static_cast<uint8_t>((q[0] & 0xF) | ((q[64] & 0xF) << 4));
        b[i].ql[64 * h + l + 32] = static_cast<uint8_t>((q[32] & 0xF) | ((q[96] & 0xF) << 4));
        b[i].qh[32 * h + l] = static_cast<uint8_t>((q[0] >> 4) | ((q[32] >> 4) << 2) |
                                                   ((q[64] >> 4) << 4) | ((q[96] >> 4) << 6));
      }
    }
  }
}

float vec_dot_q6_K_q8_K(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ6K*>(w);
  const auto* y = static_cast<const BlockQ8K*>(a);
  float sum = 0.0f;
  int8_t q[kQKK];
  for (int64_t i = 0; i < n / kQKK; ++i) {
    unpack_q6(x[i], q);
    int sumi = 0;
    for (int j = 0; j < kQKK / 16; ++j) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += q[16 * j + l] * y[i].qs[16 * j + l];
      sumi += x[i].scales[j] * s;
    }
    sum += fp16_to_f32(x[i].d) * y[i].d * static_cast<float>(sumi);
  }
  return sum;
}

// ---- Q8_K ----

void dequantize_row_q8_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ8K*>(src);
  for (int64_t i = 0; i < n / kQKK; ++i, dst += kQKK)
    for (int j = 0; j < kQKK; ++j) dst[j] = b[i].d * static_cast<float>(b[i].qs[j]);
}

void quantize_row_q8_K(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8K*>(dst);
  for (int64_t i = 0; i < n / kQKK; ++i, src += kQKK) {
    float max = 0, amax = 0;
    for (int j = 0; j < kQKK; ++j) {
      if (std::fabs(src[j]) > amax) {
        amax = std::fabs(src[j]);
        max = src[j];
      }
    }
    if (amax == 0.0f) {
      std::memset(&b[i], 0, sizeof(BlockQ8K));
      continue;
    }
    // The largest value maps to -127 whatever its sign (so d may be negative).
    const float iscale = -127.f / max;
    for (int j = 0; j < kQKK; ++j)
      b[i].qs[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * src[j])));
    for (int j = 0; j < kQKK / 16; ++j) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += b[i].qs[16 * j + l];
      b[i].bsums[j] = static_cast<int16_t>(s);
    }
    b[i].d = 1 / iscale;
  }
}

}  // namespace kestrel::kernels::ref
