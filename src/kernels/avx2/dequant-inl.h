#pragma once
// Storing 32 decoded quants as floats for the AVX2 dequantizers (rows_avx2.cpp,
// dot_k_low_avx2.cpp, dot_iq4_avx2.cpp). Bit-identical to the scalar
// twins: the same int -> float conversion, then the same multiply (and add),
// never fused into an FMA (the build passes -ffp-contract=off). Anonymous
// namespace for the reason given in avx2-inl.h.
#include <immintrin.h>

namespace kestrel::kernels {
namespace {

// 32 signed bytes -> 32 floats q * d (+ m when kAdd). The first 16 use d0/m0,
// the last 16 d1/m1: these formats change scale every 16 elements (K quants)
// or keep one for all 32 (IQ4).
template <bool kAdd>
inline void store_quants_32(__m256i bytes, float d0, float d1, float m0, float m1, float* dst) {
  const __m128i halves[2] = {_mm256_castsi256_si128(bytes), _mm256_extracti128_si256(bytes, 1)};
  for (int h = 0; h < 2; ++h) {
    const __m256 vd = _mm256_set1_ps(h == 0 ? d0 : d1);
    const __m256 vm = _mm256_set1_ps(h == 0 ? m0 : m1);
    for (int k = 0; k < 2; ++k) {
      const __m128i eight = k == 0 ? halves[h] : _mm_unpackhi_epi64(halves[h], halves[h]);
      __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(eight)), vd);
      if constexpr (kAdd) v = _mm256_add_ps(v, vm);
      _mm256_storeu_ps(dst + 16 * h + 8 * k, v);
    }
  }
}

}  // namespace
}  // namespace kestrel::kernels
