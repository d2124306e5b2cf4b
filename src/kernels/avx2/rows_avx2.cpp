// AVX2 row conversions: dequantization (bit-identical to the scalar twins: the
// same int->float conversion, then the same multiply/add, never a fused FMA)
// and the activation quantizers (byte-identical to the scalar twins).
#include "kernels/avx2/avx2-inl.h"
#include "kernels/avx2/dequant-inl.h"
#include "kernels/avx2/avx2_kernels.h"
#include "kernels/blocks.h"
#include "kernels/ref/ref_kernels.h"

namespace kestrel::kernels::avx2 {
namespace {

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

inline void store_scaled(__m256i bytes, float d, float* dst) { store_quants_32<false>(bytes, d, d, 0.0f, 0.0f, dst); }
inline void store_affine1(__m256i bytes, float d, float m, float* dst) { store_quants_32<true>(bytes, d, d, m, m, dst); }

// 32 floats -> 32 int8 = round-to-nearest-even(x * id); also returns the 4
// int32 vectors (for sums). Packing keeps order via the final permute.
inline __m256i quantize_32(const float* x, __m256 id, __m256i* ints) {
  for (int k = 0; k < 4; ++k) {
    const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), id);
    ints[k] = _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  const __m256i p01 = _mm256_packs_epi32(ints[0], ints[1]);
  const __m256i p23 = _mm256_packs_epi32(ints[2], ints[3]);
  const __m256i p = _mm256_packs_epi16(p01, p23);
  return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

inline float absmax_32(const float* x) {
  __m256 m = abs_ps(_mm256_loadu_ps(x));
  for (int k = 1; k < 4; ++k) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(x + 8 * k)));
  return hmax_ps(m);
}

}  // namespace

// ---- dequantize ----

void dequantize_row_f16(const void* src, float* dst, int64_t n) {
  f16_to_f32_row(n, static_cast<const uint16_t*>(src), dst);
}

void dequantize_row_bf16(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_slli_epi32(v, 16));
  }
  if (i < n) ref::dequantize_row_bf16(x + i, dst + i, n - i);
}

void dequantize_row_q4_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ4_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i)
    store_scaled(_mm256_sub_epi8(unpack_nibbles_32(b[i].qs), _mm256_set1_epi8(8)), half_to_float(b[i].d),
                 dst + kQK * i);
}

void dequantize_row_q4_1(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ4_1*>(src);
  for (int64_t i = 0; i < n / kQK; ++i)
    store_affine1(unpack_nibbles_32(b[i].qs), half_to_float(b[i].d), half_to_float(b[i].m), dst + kQK * i);
}

void dequantize_row_q5_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ5_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const __m256i hi = _mm256_andnot_si256(bits_to_bytes_32(b[i].qh), _mm256_set1_epi8(static_cast<char>(0xF0)));
    store_scaled(_mm256_or_si256(unpack_nibbles_32(b[i].qs), hi), half_to_float(b[i].d), dst + kQK * i);
  }
}

void dequantize_row_q5_1(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ5_1*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const __m256i hi = _mm256_and_si256(bits_to_bytes_32(b[i].qh), _mm256_set1_epi8(0x10));
    store_affine1(_mm256_or_si256(unpack_nibbles_32(b[i].qs), hi), half_to_float(b[i].d),
                       half_to_float(b[i].m), dst + kQK * i);
  }
}

void dequantize_row_q8_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ8_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) store_scaled(load32(b[i].qs), half_to_float(b[i].d), dst + kQK * i);
}

void dequantize_row_q4_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ4K*>(src);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const float d = half_to_float(b[i].d), dmin = half_to_float(b[i].dmin);
    for (int c = 0; c < 4; ++c, dst += 64) {
      uint8_t sc, m;
      const __m256i raw = load32(b[i].qs + 32 * c);
      k_scale_min(2 * c, b[i].scales, &sc, &m);
      // d1 * q - m1: stored as (q * d1) + (-m1), the same two roundings.
      store_affine1(_mm256_and_si256(raw, low4), d * sc, -(dmin * m), dst);
      k_scale_min(2 * c + 1, b[i].scales, &sc, &m);
      store_affine1(_mm256_and_si256(_mm256_srli_epi16(raw, 4), low4), d * sc, -(dmin * m), dst + 32);
    }
  }
}

void dequantize_row_q5_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ5K*>(src);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i sixteen = _mm256_set1_epi8(16);
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const float d = half_to_float(b[i].d), dmin = half_to_float(b[i].dmin);
    const __m256i qh = load32(b[i].qh);
    for (int c = 0; c < 4; ++c, dst += 64) {
      uint8_t sc, m;
      const __m256i raw = load32(b[i].qs + 32 * c);
      const __m256i b_lo = _mm256_set1_epi8(static_cast<char>(1 << (2 * c)));
      const __m256i b_hi = _mm256_set1_epi8(static_cast<char>(2 << (2 * c)));
      const __m256i lo = _mm256_or_si256(_mm256_and_si256(raw, low4),
                                         _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b_lo), b_lo), sixteen));
      const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), low4),
                                         _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b_hi), b_hi), sixteen));
      k_scale_min(2 * c, b[i].scales, &sc, &m);
      store_affine1(lo, d * sc, -(dmin * m), dst);
      k_scale_min(2 * c + 1, b[i].scales, &sc, &m);
      store_affine1(hi, d * sc, -(dmin * m), dst + 32);
    }
  }
}

void dequantize_row_q6_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ6K*>(src);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i two = _mm256_set1_epi8(0x03);
  const __m256i m32 = _mm256_set1_epi8(32);
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const float d = half_to_float(b[i].d);
    for (int h = 0; h < 2; ++h, dst += 128) {
      const __m256i ql0 = load32(b[i].ql + 64 * h), ql1 = load32(b[i].ql + 64 * h + 32);
      const __m256i qh = load32(b[i].qh + 32 * h);
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_slli_epi16(_mm256_and_si256(qh, two), 4)),
          _mm256_or_si256(_mm256_and_si256(ql1, low4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), two), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), two), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), two), 4)),
      };
      for (int r = 0; r < 4; ++r) {
        // Sub-blocks of 16 have their own scale: (d * sc) * (q - 32), as the scalar twin.
        const __m256i v = _mm256_sub_epi8(q[r], m32);
        const int s = 8 * h + 2 * r;
        store_quants_32<false>(v, d * static_cast<float>(b[i].scales[s]), d * static_cast<float>(b[i].scales[s + 1]),
                            0.0f, 0.0f, dst + 32 * r);
      }
    }
  }
}

// ---- activation quantizers ----

void quantize_row_q8_0(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    const float amax = absmax_32(src);
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    __m256i ints[4];
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(b[i].qs), quantize_32(src, _mm256_set1_ps(id), ints));
    b[i].d = float_to_half(amax / 127.0f);
  }
}

void quantize_row_q8_1(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_1*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    const float amax = absmax_32(src);
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    __m256i ints[4];
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(b[i].qs), quantize_32(src, _mm256_set1_ps(id), ints));
    const int sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(ints[0], ints[1]), _mm256_add_epi32(ints[2], ints[3])));
    const float d = amax / 127.0f;
    b[i].d = float_to_half(d);
    b[i].s = float_to_half(d * static_cast<float>(sum));
  }
}

void quantize_row_q8_K(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8K*>(dst);
  for (int64_t i = 0; i < n / kQKK; ++i, src += kQKK) {
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < kQKK; k += 8) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(src + k)));
    const float amax = hmax_ps(m);
    if (amax == 0.0f) {
      std::memset(&b[i], 0, sizeof(BlockQ8K));
      continue;
    }
    // The sign comes from the first element of largest magnitude, as in the scalar twin.
    float max = 0.0f;
    const __m256 vamax = _mm256_set1_ps(amax);
    for (int k = 0; k < kQKK; k += 8) {
      const int hit = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(src + k)), vamax, _CMP_EQ_OQ));
      if (hit != 0) {
        max = src[k + __builtin_ctz(static_cast<unsigned>(hit))];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m256 vs = _mm256_set1_ps(iscale);
    const __m256i cap = _mm256_set1_epi32(127);
    for (int k = 0; k < kQKK; k += 32) {
      __m256i ints[4];
      for (int j = 0; j < 4; ++j) {
        const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(src + k + 8 * j), vs);
        ints[j] = _mm256_min_epi32(cap, _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
      }
      const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(ints[0], ints[1]), _mm256_packs_epi32(ints[2], ints[3]));
      const __m256i q = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(b[i].qs + k), q);
      // Sums of 16 signed bytes: bias to unsigned, SAD against zero sums 8 at a time.
      const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(q, _mm256_set1_epi8(static_cast<char>(0x80))),
                                          _mm256_setzero_si256());
      alignas(32) int64_t s[4];
      _mm256_store_si256(reinterpret_cast<__m256i*>(s), sad);
      b[i].bsums[k / 16] = static_cast<int16_t>(s[0] + s[1] - 16 * 128);
      b[i].bsums[k / 16 + 1] = static_cast<int16_t>(s[2] + s[3] - 16 * 128);
    }
    b[i].d = 1 / iscale;
  }
}

void quantize_row_f16(const float* src, void* dst, int64_t n) {
  f32_to_f16_row(n, src, static_cast<uint16_t*>(dst));
}

void quantize_row_bf16(const float* src, void* dst, int64_t n) {
  auto* y = static_cast<uint16_t*>(dst);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    // Round to nearest even on the dropped 16 bits; NaN stays a quiet NaN.
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff))), 16);
    const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
    const __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
    const __m256i r = _mm256_blendv_epi8(rounded, quiet, is_nan);
    const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), packed);
  }
  if (i < n) ref::quantize_row_bf16(src + i, y + i, n - i);
}

}  // namespace kestrel::kernels::avx2
