// Scalar twins of the attention kernels. They follow llama.cpp's CPU flash
// attention step by step (query rounded to F16 for an F16 cache; running max
// and sum; for an F16 cache the running V sum is rounded to F16 after every
// update, as llama.cpp keeps it in F16), and sum dot products in the order
// ggml's AVX-512 build does (four 16-lane accumulators over blocks of 64, then a
// fixed tree; the tail in double). SmolLM2-class models amplify the last bit,
// so the order is part of matching llama.cpp.
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/fp16.h"
#include "kernels/attention_kernels.h"

namespace kestrel::kernels::ref {
namespace {

float dot_like_ggml(const float* a, const float* b, int n) {
  float acc[4][16] = {};
  const int body = n & ~63;
  for (int i = 0; i < body; i += 64)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 16; ++l) acc[j][l] = std::fma(a[i + 16 * j + l], b[i + 16 * j + l], acc[j][l]);
  float lane[16];
  for (int l = 0; l < 16; ++l) lane[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
  float t8[8], t4[4];
  for (int l = 0; l < 8; ++l) t8[l] = lane[l] + lane[l + 8];
  for (int l = 0; l < 4; ++l) t4[l] = t8[l] + t8[l + 4];
  double sum = static_cast<double>((t4[0] + t4[2]) + (t4[1] + t4[3]));
  for (int i = body; i < n; ++i) sum += static_cast<double>(a[i] * b[i]);
  return static_cast<float>(sum);
}

inline float round_f16(float x) { return fp16_to_f32(f32_to_fp16(x)); }

template <bool kF16, class T>
void attend(const KvBlocks<T>& kv, int64_t n, int d, const float* q, float scale, float* out) {
  float qr[512], row[512], acc[512];
  for (int i = 0; i < d; ++i) {
    qr[i] = kF16 ? round_f16(q[i]) : q[i];
    acc[i] = 0.0f;
  }
  auto load = [](T x) {
    if constexpr (kF16) return fp16_to_f32(x);
    else return x;
  };
  // The softmax state lives across blocks: rows are visited in position order
  // whatever block holds them.
  float sum = 0.0f;
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t b = 0, first = 0; first < n; ++b, first += kv.block_len) {
    const T* k = kv.k + kv.ids[b] * kv.stride;
    const T* v = kv.v + kv.ids[b] * kv.stride;
    const int64_t rows = std::min(kv.block_len, n - first);
    for (int64_t j = 0; j < rows; ++j) {
      for (int i = 0; i < d; ++i) row[i] = load(k[j * d + i]);
      const float s = dot_like_ggml(row, qr, d) * scale;
      float ms = 1.0f, vs = 1.0f;
      if (s > max) {
        ms = std::exp(max - s);
        max = s;
        for (int i = 0; i < d; ++i) acc[i] = kF16 ? round_f16(acc[i] * ms) : acc[i] * ms;
      } else {
        vs = std::exp(s - max);
      }
      for (int i = 0; i < d; ++i) {
        const float a = std::fma(load(v[j * d + i]), vs, acc[i]);
        acc[i] = kF16 ? round_f16(a) : a;
      }
      sum = sum * ms + vs;
    }
  }
  const float inv = sum == 0.0f ? 0.0f : 1.0f / sum;
  for (int i = 0; i < d; ++i) out[i] = acc[i] * inv;
}

}  // namespace

void attend_f16(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* q, float scale, float* out) {
  attend<true>(kv, n, d, q, scale, out);
}
void attend_f32(const KvBlocks<float>& kv, int64_t n, int d, const float* q, float scale, float* out) {
  attend<false>(kv, n, d, q, scale, out);
}

}  // namespace kestrel::kernels::ref
