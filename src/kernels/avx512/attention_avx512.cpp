// AVX-512 attention kernels: the same arithmetic, in the same order, as the
// scalar twins in kv/attention_ref.cpp (see there for why the order matters).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/attention_kernels.h"

namespace kestrel::kernels::avx512 {
namespace {

// Lanes of one 512-bit accumulator folded as the scalar twin folds them.
inline float fold16(__m512 a) {
  const __m256 t8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
  const __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
  const __m128 sw = _mm_shuffle_ps(t4, t4, _MM_SHUFFLE(1, 0, 3, 2));  // {t2, t3, t0, t1}
  const __m128 u = _mm_add_ps(t4, sw);                                  // {t0+t2, t1+t3, ...}
  return _mm_cvtss_f32(_mm_add_ss(u, _mm_movehdup_ps(u)));
}

inline __m512 load_row(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
inline __m512 load_row(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 round_f16(__m512 x) { return _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT)); }

template <bool kF16, class T>
void attend(const KvBlocks<T>& kv, int64_t n, int d, const float* q, float scale, float* out) {
  // Vector path for d a multiple of 16 (every llama-family head size); the
  // scalar twin covers the rest.
  if (d % 16 != 0) {
    if constexpr (kF16) ref::attend_f16(kv, n, d, q, scale, out);
    else ref::attend_f32(kv, n, d, q, scale, out);
    return;
  }
  const int nv = d / 16;
  const int body = (d & ~63) / 16;  // vectors covered by whole blocks of 64
  __m512 qr[32], acc[32];
  for (int i = 0; i < nv; ++i) {
    const __m512 x = _mm512_loadu_ps(q + 16 * i);
    qr[i] = kF16 ? round_f16(x) : x;
    acc[i] = _mm512_setzero_ps();
  }
  float sum = 0.0f;
  float max = -std::numeric_limits<float>::infinity();
  // The softmax state lives across blocks: rows are visited in position order
  // whatever block holds them (same order as the scalar twin).
  for (int64_t b = 0, first = 0; first < n; ++b, first += kv.block_len) {
    const T* k = kv.k + kv.ids[b] * kv.stride;
    const T* v = kv.v + kv.ids[b] * kv.stride;
    const int64_t rows = std::min(kv.block_len, n - first);
    for (int64_t j = 0; j < rows; ++j) {
      const T* kr = k + j * d;
      __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (int i = 0; i < body; i += 4) {
        a0 = _mm512_fmadd_ps(load_row(kr + 16 * i), qr[i], a0);
        a1 = _mm512_fmadd_ps(load_row(kr + 16 * i + 16), qr[i + 1], a1);
        a2 = _mm512_fmadd_ps(load_row(kr + 16 * i + 32), qr[i + 2], a2);
        a3 = _mm512_fmadd_ps(load_row(kr + 16 * i + 48), qr[i + 3], a3);
      }
      double dot = fold16(_mm512_add_ps(_mm512_add_ps(a0, a2), _mm512_add_ps(a1, a3)));
      if (body < nv) {  // tail of 16..48 values, summed in double like the twin
        alignas(64) float kt[16], qt[16];
        for (int i = body; i < nv; ++i) {
          _mm512_store_ps(kt, load_row(kr + 16 * i));
          _mm512_store_ps(qt, qr[i]);
          for (int l = 0; l < 16; ++l) dot += static_cast<double>(kt[l] * qt[l]);
        }
      }
      const float s = static_cast<float>(dot) * scale;
      float ms = 1.0f, vs = 1.0f;
      if (s > max) {
        ms = std::exp(max - s);
        max = s;
        const __m512 m = _mm512_set1_ps(ms);
        for (int i = 0; i < nv; ++i) acc[i] = kF16 ? round_f16(_mm512_mul_ps(acc[i], m)) : _mm512_mul_ps(acc[i], m);
      } else {
        vs = std::exp(s - max);
      }
      const __m512 w = _mm512_set1_ps(vs);
      const T* vr = v + j * d;
      for (int i = 0; i < nv; ++i) {
        const __m512 a = _mm512_fmadd_ps(load_row(vr + 16 * i), w, acc[i]);
        acc[i] = kF16 ? round_f16(a) : a;
      }
      sum = sum * ms + vs;
    }
  }
  const __m512 inv = _mm512_set1_ps(sum == 0.0f ? 0.0f : 1.0f / sum);
  for (int i = 0; i < nv; ++i) _mm512_storeu_ps(out + 16 * i, _mm512_mul_ps(acc[i], inv));
}

}  // namespace

void attend_f16(const KvBlocks<uint16_t>& kv, int64_t n, int d, const float* q, float scale, float* out) {
  attend<true>(kv, n, d, q, scale, out);
}
void attend_f32(const KvBlocks<float>& kv, int64_t n, int d, const float* q, float scale, float* out) {
  attend<false>(kv, n, d, q, scale, out);
}

}  // namespace kestrel::kernels::avx512
