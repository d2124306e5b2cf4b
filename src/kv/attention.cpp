#include "kv/attention.h"

#include <cmath>
#include <limits>

#include "core/fp16.h"

namespace kestrel {
namespace {

// Dot product summed the way llama.cpp's CPU build sums it on AVX-512: four
// accumulators of 16 lanes over blocks of 64 (fused multiply-add), folded
// 0+2, 1+3, 0+1, then a tree over the lanes; the tail (n % 64) in double.
// Keeping the order makes our attention scores equal llama.cpp's bit for bit,
// which matters because SmolLM2-class models amplify tiny differences.
float dot_like_ggml(const float* a, const float* b, int n) {
  float acc[4][16] = {};
  const int body = n & ~63;
  for (int i = 0; i < body; i += 64)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 16; ++l) acc[j][l] = std::fma(a[i + 16 * j + l], b[i + 16 * j + l], acc[j][l]);
  for (int l = 0; l < 16; ++l) {
    acc[0][l] += acc[2][l];
    acc[1][l] += acc[3][l];
  }
  for (int l = 0; l < 16; ++l) acc[0][l] += acc[1][l];
  float t8[8], t4[4];
  for (int l = 0; l < 8; ++l) t8[l] = acc[0][l] + acc[0][l + 8];
  for (int l = 0; l < 4; ++l) t4[l] = t8[l] + t8[l + 4];
  double sum = static_cast<double>((t4[0] + t4[2]) + (t4[1] + t4[3]));
  for (int i = body; i < n; ++i) sum += static_cast<double>(a[i] * b[i]);
  return static_cast<float>(sum);
}

}  // namespace

// Online softmax over the visible positions (one pass over K and V), in the
// order llama.cpp's CPU flash attention uses. With an F16 cache the running
// V·softmax sum is kept in F16, as llama.cpp keeps it; with F32, in F32.
void attend_head(const KvCache& cache, int layer, int seq, const AttentionParams& p, int head,
                 const float* q, int64_t n_visible, float* out, float* scores) {
  (void)scores;
  const int d = p.head_dim;
  const int kv_head = head / (p.n_head / p.n_kv_head);
  const bool f16 = cache.type() == KvType::F16;
  float qr[512], row[512], acc[512];
  for (int i = 0; i < d; ++i) {
    qr[i] = f16 ? fp16_to_f32(f32_to_fp16(q[i])) : q[i];
    acc[i] = 0.0f;
  }
  const auto* k16 = static_cast<const uint16_t*>(cache.k_rows(layer, seq, kv_head));
  const auto* v16 = static_cast<const uint16_t*>(cache.v_rows(layer, seq, kv_head));
  const auto* k32 = static_cast<const float*>(cache.k_rows(layer, seq, kv_head));
  const auto* v32 = static_cast<const float*>(cache.v_rows(layer, seq, kv_head));

  float sum = 0.0f;
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n_visible; ++j) {
    const float* krow = k32 + j * d;
    if (f16) {
      for (int i = 0; i < d; ++i) row[i] = fp16_to_f32(k16[j * d + i]);
      krow = row;
    }
    const float s = dot_like_ggml(krow, qr, d) * p.scale;
    float ms = 1.0f, vs = 1.0f;
    if (s > max) {
      ms = std::exp(max - s);
      max = s;
      for (int i = 0; i < d; ++i) acc[i] = f16 ? fp16_to_f32(f32_to_fp16(acc[i] * ms)) : acc[i] * ms;
    } else {
      vs = std::exp(s - max);
    }
    if (f16) {
      for (int i = 0; i < d; ++i) acc[i] = fp16_to_f32(f32_to_fp16(std::fma(fp16_to_f32(v16[j * d + i]), vs, acc[i])));
    } else {
      for (int i = 0; i < d; ++i) acc[i] = std::fma(v32[j * d + i], vs, acc[i]);
    }
    sum = sum * ms + vs;
  }
  const float inv = sum == 0.0f ? 0.0f : 1.0f / sum;
  for (int i = 0; i < d; ++i) out[i] = acc[i] * inv;
}

}  // namespace kestrel
