// Scalar IQ4_NL and IQ4_XS: 4-bit indices into a fixed non-linear table of 16
// values (kIq4nlValues, denser near zero where weights are), one F16 scale per
// 32 elements (IQ4_NL) or a 6-bit scale per 32 under an F16 one per 256
// (IQ4_XS). Dot products with Q8_0 / Q8_K activations in exact integers per
// block, scaled once, as ggml's generic ones. The quantizers follow ggml's
// method (a weighted least-squares scale, tried at 15 starting points).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "kernels/blocks.h"
#include "kernels/ref/ref_kernels.h"
#include "kernels/ref/rounding.h"

#if defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace kestrel::kernels::ref {
namespace {

constexpr float kAllZero = 1e-15f;
constexpr int kTries = 7;  // starting scales (-max + t) / 127 .. for t in [-7, 7]

// The table entry nearest to x (the table is sorted).
int nearest_value(float x) {
  const int8_t* v = kIq4nlValues;
  if (x <= v[0]) return 0;
  if (x >= v[15]) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (x < v[mid])
      hi = mid;
    else
      lo = mid;
  }
  return x - v[hi - 1] < v[hi] - x ? hi - 1 : hi;
}

// The scale of one block of 32 and its indices L: for each trial inverse scale,
// the nearest table entries, then the scale that minimises the weighted squared
// error for those indices (weights x^2, as ggml without an importance matrix).
float fit_block(const float* x, uint8_t* L) {
  float amax = 0, max = 0;
  for (int j = 0; j < kQK; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  if (amax < kAllZero) {
    std::memset(L, 0, kQK);
    return 0;
  }
  auto fit = [&](float id, uint8_t* out, float* sumqx, float* sumq2) {
    *sumqx = 0;
    *sumq2 = 0;
    for (int j = 0; j < kQK; ++j) {
      const int l = nearest_value(id * x[j]);
      out[j] = static_cast<uint8_t>(l);
      const float q = kIq4nlValues[l], w = x[j] * x[j];
      *sumqx += w * q * x[j];
      *sumq2 += w * q * q;
    }
  };
  float sumqx, sumq2;
  fit(-kIq4nlValues[0] / max, L, &sumqx, &sumq2);  // the largest weight on the table's end
  float d = sumq2 > 0 ? sumqx / sumq2 : 0;
  float best = d * sumqx;
  uint8_t trial[kQK];
  for (int t = -kTries; t <= kTries; ++t) {
    fit((t + kIq4nlValues[0]) / max, trial, &sumqx, &sumq2);
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      d = sumqx / sumq2;
      best = d * sumqx;
      std::memcpy(L, trial, kQK);
    }
  }
  return d;
}

}  // namespace

// ---- IQ4_NL ----

void dequantize_row_iq4_nl(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockIQ4NL*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = fp16_to_f32(b[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      dst[j] = d * static_cast<float>(kIq4nlValues[b[i].qs[j] & 0xF]);
      dst[j + kQK / 2] = d * static_cast<float>(kIq4nlValues[b[i].qs[j] >> 4]);
    }
  }
}

void quantize_row_iq4_nl(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockIQ4NL*>(dst);
  uint8_t L[kQK];
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    b[i].d = f32_to_fp16(fit_block(src, L));
    for (int j = 0; j < kQK / 2; ++j) b[i].qs[j] = static_cast<uint8_t>(L[j] | (L[j + kQK / 2] << 4));
  }
}

float vec_dot_iq4_nl_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockIQ4NL*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int sumi = 0;
    for (int j = 0; j < kQK / 2; ++j)
      sumi += kIq4nlValues[x[i].qs[j] & 0xF] * y[i].qs[j] + kIq4nlValues[x[i].qs[j] >> 4] * y[i].qs[j + kQK / 2];
    sum += fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d) * static_cast<float>(sumi);
  }
  return sum;
}

// ---- IQ4_XS ----

void dequantize_row_iq4_xs(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockIQ4XS*>(src);
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const float d = fp16_to_f32(b[i].d);
    for (int j = 0; j < kQKK / kQK; ++j, dst += kQK) {
      const float dl = d * static_cast<float>(iq4xs_scale(b[i], j) - 32);
      const uint8_t* qs = b[i].qs + 16 * j;
      for (int l = 0; l < 16; ++l) {
        dst[l] = dl * static_cast<float>(kIq4nlValues[qs[l] & 0xF]);
        dst[l + 16] = dl * static_cast<float>(kIq4nlValues[qs[l] >> 4]);
      }
    }
  }
}

void quantize_row_iq4_xs(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockIQ4XS*>(dst);
  constexpr int kSubs = kQKK / kQK;
  uint8_t L[kQKK];
  float scales[kSubs];
  for (int64_t i = 0; i < n / kQKK; ++i, src += kQKK) {
    float max_scale = 0, amax_scale = 0;
    for (int j = 0; j < kSubs; ++j) {
      scales[j] = fit_block(src + kQK * j, L + kQK * j);
      if (std::fabs(scales[j]) > amax_scale) {
        amax_scale = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    std::memset(&b[i], 0, sizeof(BlockIQ4XS));
    // 6-bit signed sub-block scales (stored + 32); the largest maps to -32.
    const float d = -max_scale / 32;
    b[i].d = f32_to_fp16(d);
    const float id = d != 0 ? 1 / d : 0;
    const float d_all = fp16_to_f32(b[i].d);
    for (int j = 0; j < kSubs; ++j) {
      const int l = std::clamp(nearest_int(id * scales[j]), -32, 31);
      const float dl = d_all * static_cast<float>(l);
      const float idl = dl != 0 ? 1 / dl : 0;
      for (int k = 0; k < kQK; ++k) L[kQK * j + k] = static_cast<uint8_t>(nearest_value(idl * src[kQK * j + k]));
      const int u = l + 32;
      b[i].scales_l[j / 2] |= static_cast<uint8_t>((u & 0xF) << (4 * (j % 2)));
      b[i].scales_h |= static_cast<uint16_t>((u >> 4) << (2 * j));
      for (int k = 0; k < 16; ++k)
        b[i].qs[16 * j + k] = static_cast<uint8_t>(L[kQK * j + k] | (L[kQK * j + k + 16] << 4));
    }
  }
}

float vec_dot_iq4_xs_q8_K(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockIQ4XS*>(w);
  const auto* y = static_cast<const BlockQ8K*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    int sumi = 0;
    for (int j = 0; j < kQKK / kQK; ++j) {
      const uint8_t* qs = x[i].qs + 16 * j;
      const int8_t* q8 = y[i].qs + kQK * j;
      int s = 0;
      for (int l = 0; l < 16; ++l) s += kIq4nlValues[qs[l] & 0xF] * q8[l] + kIq4nlValues[qs[l] >> 4] * q8[l + 16];
      sumi += (iq4xs_scale(x[i], j) - 32) * s;
    }
    sum += fp16_to_f32(x[i].d) * y[i].d * static_cast<float>(sumi);
  }
  return sum;
}

}  // namespace kestrel::kernels::ref
