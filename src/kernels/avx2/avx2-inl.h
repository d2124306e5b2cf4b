#pragma once
// AVX2 helpers, included only by translation units under kernels/avx2/ and
// kernels/avx512/. Everything sits in an anonymous namespace: each including TU
// gets its own copy, compiled with its own -m flags, and the linker can never
// substitute one ISA's copy for another's.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/f32_kernels.h"

namespace kestrel::kernels {
namespace {

inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

// Round to nearest even, as the scalar f32_to_fp16 does.
inline uint16_t float_to_half(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

inline float hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

inline float hmax_ps(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

// 16 bytes of packed nibbles -> 32 bytes in 0..15: low nibbles first (elements
// 0..15 of a 32-block), then high nibbles (elements 16..31).
inline __m256i unpack_nibbles_32(const uint8_t* qs) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(raw), _mm_srli_epi16(raw, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// 32 bits -> 32 bytes: 0xFF where bit j of the little-endian word is set.
inline __m256i bits_to_bytes_32(const uint8_t* p) {
  uint32_t bits;
  std::memcpy(&bits, p, 4);
  // Byte j of the result reads source byte j/8, then tests bit j%8.
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
}

// Sum over groups of 4 of u8 * s8 -> 8 int32. u <= 255, |s| <= 127 keeps the
// int16 pair sums of maddubs exact when u <= 127 or both u, s are small; the
// callers' operands are bounded so (see each caller).
inline __m256i dot_u8s8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// Signed x signed via the sign trick: |x| * (y with x's sign). Exact for
// |x|, |y| <= 127 (pair sums stay below 2^15).
inline __m256i dot_s8s8(__m256i x, __m256i y) {
  return dot_u8s8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

// exp_approx (kernels/f32_kernels.h) on 8 lanes: the same operations in the
// same order (FMAs where the scalar form calls std::fma, round to nearest even
// where it calls nearbyint), so the same bits. Dead lanes (x < -87 or NaN) give
// +0. Used by swiglu and the attention kernels.
inline __m256 exp_approx8(__m256 x) {
  using E = ExpApprox;
  const __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(E::kMin), _CMP_GE_OQ);
  x = _mm256_min_ps(x, _mm256_set1_ps(E::kMax));
  const __m256 n =
      _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(E::kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(E::kLn2Hi), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(E::kLn2Lo), r);
  __m256 p = _mm256_set1_ps(E::kPoly[0]);
  for (int i = 1; i < 6; ++i) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(E::kPoly[i]));
  const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  // Dead lanes may hold any n: their 2^n is masked away.
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(live, _mm256_mul_ps(y, _mm256_castsi256_ps(e)));
}

}  // namespace
}  // namespace kestrel::kernels
