// Scalar reference of INT-FlashAttention over an F16 cache (kernels/attention_int8.h).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/fp16.h"
#include "kernels/f32_kernels.h"
#include "kernels/attention_int8.h"

namespace kestrel::kernels::ref {
namespace {

// Symmetric INT8 of x[0..n) with stride: returns the scale (absmax / 127).
float quantize_s8(const float* x, int n, int stride, int8_t* out, int out_stride) {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i * stride]));
  const float s = amax / 127.0f;
  const float inv = s > 0.0f ? 1.0f / s : 0.0f;
  for (int i = 0; i < n; ++i) out[i * out_stride] = static_cast<int8_t>(std::nearbyint(x[i * stride] * inv));
  return s;
}

}  // namespace

void attend_int8_f16(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* q, float scale, float* out) {
  int8_t q8[512], k8[64 * 512], v8[64 * 512];
  float kf[64 * 512], vf[64 * 512], sk[64], sv[512], acc[512];
  const float sq = quantize_s8(q, d, 1, q8, 1);
  std::fill(acc, acc + d, 0.0f);
  float l = 0.0f, m = -std::numeric_limits<float>::infinity();
  for (int64_t b = 0, first = 0; first < n; ++b, first += kv.block_len) {
    const uint16_t* k = kv.k + kv.ids[b] * kv.stride;
    const uint16_t* v = kv.v + kv.ids[b] * kv.stride;
    const int rows = static_cast<int>(std::min(kv.block_len, n - first));
    for (int j = 0; j < rows * d; ++j) {
      kf[j] = fp16_to_f32(k[j]);
      vf[j] = fp16_to_f32(v[j]);
    }
    for (int j = 0; j < rows; ++j) sk[j] = quantize_s8(kf + j * d, d, 1, k8 + j * d, 1);  // per token
    for (int c = 0; c < d; ++c) sv[c] = quantize_s8(vf + c, rows, d, v8 + c, d);          // per channel
    float s[64];
    float bmax = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < rows; ++j) {
      int32_t dot = 0;
      for (int c = 0; c < d; ++c) dot += int32_t{q8[c]} * k8[j * d + c];
      s[j] = static_cast<float>(dot) * (sq * sk[j] * scale);
      bmax = std::max(bmax, s[j]);
    }
    const float mnew = std::max(m, bmax);
    const float ms = kernels::exp_approx(m - mnew);
    for (int c = 0; c < d; ++c) acc[c] *= ms;
    l *= ms;
    m = mnew;
    uint8_t p8[64];
    int32_t psum = 0;
    for (int j = 0; j < rows; ++j) {
      p8[j] = static_cast<uint8_t>(std::nearbyint(255.0f * kernels::exp_approx(s[j] - m)));
      psum += p8[j];
    }
    l += static_cast<float>(psum) / 255.0f;
    for (int c = 0; c < d; ++c) {
      int32_t pv = 0;
      for (int j = 0; j < rows; ++j) pv += int32_t{p8[j]} * v8[j * d + c];
      acc[c] += static_cast<float>(pv) * (sv[c] / 255.0f);
    }
  }
  const float inv = l == 0.0f ? 0.0f : 1.0f / l;
  for (int c = 0; c < d; ++c) out[c] = acc[c] * inv;
}

void attend_tile_int8_f16(const KvBlocks<uint16_t>& kv, int d, const TileRows& rows, float scale, float* scratch) {
  for (int r = 0; r < rows.n; ++r) attend_int8_f16(kv, rows.n_visible[r], d, rows.q[r], scale, rows.out[r]);
}

}  // namespace kestrel::kernels::ref
