// Scalar reference of SageAttention over an F16 cache
// (kernels/attention_sage.h).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/fp16.h"
#include "kernels/f32_kernels.h"
#include "kernels/attention_sage.h"

namespace kestrel::kernels::ref {

void attend_sage_f16(const KvBlocks<uint16_t> &kv, int64_t n, int d, const float *q, float scale, float *out,
                     bool smooth) {
  // q in INT8, one scale for the row.
  float qmax = 0.0f;
  for (int c = 0; c < d; ++c) qmax = std::max(qmax, std::fabs(q[c]));
  const float sq = qmax / 127.0f;
  const float iq = sq > 0.0f ? 1.0f / sq : 0.0f;
  uint8_t qu[512];  // q8 + 128: the u8 operand
  for (int c = 0; c < d; ++c) qu[c] = static_cast<uint8_t>(static_cast<int>(std::nearbyint(q[c] * iq)) + 128);

  float acc[512], mean[512], vrow[512], kf[64 * 512];
  int8_t k8[64 * 512];
  std::fill(acc, acc + d, 0.0f);
  float sum = 0.0f, max = -std::numeric_limits<float>::infinity();
  for (int64_t b = 0, first = 0; first < n; ++b, first += kv.block_len) {
    const uint16_t *k = kv.k + kv.ids[b] * kv.stride;
    const uint16_t *v = kv.v + kv.ids[b] * kv.stride;
    const int rows = static_cast<int>(std::min(kv.block_len, n - first));
    // Smoothing: the block's mean key, and the block's INT8 scale after it.
    std::fill(mean, mean + d, 0.0f);
    for (int j = 0; j < rows; ++j)
      for (int c = 0; c < d; ++c) {
        kf[j * d + c] = fp16_to_f32(k[j * d + c]);
        mean[c] += kf[j * d + c];
      }
    for (int c = 0; c < d; ++c) mean[c] = smooth ? mean[c] / static_cast<float>(rows) : 0.0f;
    float kmax = 0.0f;
    for (int j = 0; j < rows; ++j)
      for (int c = 0; c < d; ++c) {
        kf[j * d + c] -= mean[c];
        kmax = std::max(kmax, std::fabs(kf[j * d + c]));
      }
    const float sk = kmax / 127.0f;
    const float ik = sk > 0.0f ? 1.0f / sk : 0.0f;
    for (int j = 0; j < rows; ++j)
      for (int c = 0; c < d; ++c) k8[j * d + c] = static_cast<int8_t>(std::nearbyint(kf[j * d + c] * ik));
    // The exact correction q . m_b (every score of the block shifts by it).
    // Summed in 8 lanes (channel c into lane c % 8), folded (l + l+4), then
    // (t0 + t2) + (t1 + t3): the order an 8-float SIMD register sums in.
    float lane[8] = {};
    for (int c = 0; c < d; ++c) lane[c % 8] = std::fma(q[c], mean[c], lane[c % 8]);
    float t4[4];
    for (int i = 0; i < 4; ++i) t4[i] = lane[i] + lane[i + 4];
    const float qm = (t4[0] + t4[2]) + (t4[1] + t4[3]);
    const float ds = sq * sk * scale;
    float s[64];
    for (int j = 0; j < rows; ++j) {
      int32_t dot = 0, ksum = 0;
      for (int c = 0; c < d; ++c) {
        dot += static_cast<int32_t>(qu[c]) * k8[j * d + c];
        ksum += k8[j * d + c];
      }
      s[j] = static_cast<float>(dot - 128 * ksum) * ds + qm * scale;
    }
    // Online softmax, one rescale per block.
    softmax_block(s, rows, d, max, sum, acc, vrow, [&](int j, float* row) {
      for (int c = 0; c < d; ++c) row[c] = fp16_to_f32(v[j * d + c]);
    });
  }
  const float inv = sum == 0.0f ? 0.0f : 1.0f / sum;
  for (int c = 0; c < d; ++c) out[c] = acc[c] * inv;
}

void attend_tile_sage_f16(const KvBlocks<uint16_t> &kv, int d, const TileRows &rows, float scale, float *scratch) {
  for (int r = 0; r < rows.n; ++r) attend_sage_f16(kv, rows.n_visible[r], d, rows.q[r], scale, rows.out[r]);
}

}  // namespace kestrel::kernels::ref
