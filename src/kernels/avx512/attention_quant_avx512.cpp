// AVX-512 attention over quantized (or mixed) KV caches: the twin's arithmetic
// (kernels/attention_quant.h) with the AVX-512 format kernels and vector
// scale/fma, which round element by element as the twin's scalar loops do.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/attention_quant.h"

namespace kestrel::kernels::avx512 {
namespace {

inline __m512 round_f16(__m512 x) { return _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT)); }

}  // namespace

void attend_quant(const KvQuantBlocks& kv, int64_t n, int d, const float* q, float scale, float* out) {
  if (d % 16 != 0) {  // every llama-family head size is a multiple of 16; the twin covers the rest
    ref::attend_quant(kv, n, d, q, scale, out);
    return;
  }
  alignas(64) uint8_t qq[512 * sizeof(float)];
  alignas(64) float vrow[512];
  __m512 acc[32];
  kv.q_to_vec_dot(q, qq, d);
  const int nv = d / 16;
  const int64_t kr = static_cast<int64_t>(row_bytes(kv.k_type, d));
  const int64_t vr = static_cast<int64_t>(row_bytes(kv.v_type, d));
  const bool v16 = kv.v_type == DType::F16;
  for (int i = 0; i < nv; ++i) acc[i] = _mm512_setzero_ps();
  float sum = 0.0f;
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t b = 0, first = 0; first < n; ++b, first += kv.block_len) {
    const auto [k, v, rows] = block_rows(kv, b, first, n);
    for (int64_t j = 0; j < rows; ++j) {
      const float s = kv.k_vec_dot(d, k + j * kr, qq) * scale;
      float ms = 1.0f, vs = 1.0f;
      if (s > max) {
        ms = std::exp(max - s);
        max = s;
        const __m512 m = _mm512_set1_ps(ms);
        for (int i = 0; i < nv; ++i) acc[i] = v16 ? round_f16(_mm512_mul_ps(acc[i], m)) : _mm512_mul_ps(acc[i], m);
      } else {
        vs = std::exp(s - max);
      }
      kv.v_to_float(v + j * vr, vrow, d);
      const __m512 w = _mm512_set1_ps(vs);
      if (v16)
        for (int i = 0; i < nv; ++i) acc[i] = round_f16(_mm512_fmadd_ps(_mm512_load_ps(vrow + 16 * i), w, acc[i]));
      else
        for (int i = 0; i < nv; ++i) acc[i] = _mm512_fmadd_ps(_mm512_load_ps(vrow + 16 * i), w, acc[i]);
      sum = sum * ms + vs;
    }
  }
  const __m512 inv = _mm512_set1_ps(sum == 0.0f ? 0.0f : 1.0f / sum);
  for (int i = 0; i < nv; ++i) _mm512_storeu_ps(out + 16 * i, _mm512_mul_ps(acc[i], inv));
}

}  // namespace kestrel::kernels::avx512
