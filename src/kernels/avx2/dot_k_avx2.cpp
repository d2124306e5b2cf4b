// AVX2 dot products of the K quants with Q8_K activations. Per super-block the
// integer sums are accumulated in 8 int32 lanes (sub-block scales applied with
// madd on int16), then scaled once by d_w * d_a. Min terms use the activation's
// bsums, so they need no pass over the quants.
#include "kernels/avx2/avx2-inl.h"
#include "kernels/avx2/avx2_kernels.h"
#include "kernels/blocks.h"

namespace kestrel::kernels::avx2 {
namespace {

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Sum over 8 sub-blocks of m_j * (bsum[2j] + bsum[2j+1]), as one int.
inline int min_term(const uint8_t* mins, const int16_t* bsums) {
  const __m256i b = load32(bsums);  // 16 int16
  const __m128i m8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(mins));
  // Each min applies to two consecutive bsums: duplicate every min to two int16.
  const __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
  return hsum_epi32(_mm256_madd_epi16(b, m16));
}

inline void decode_scales_mins(const uint8_t* packed, uint8_t* sc, uint8_t* m) {
  for (int j = 0; j < 8; ++j) k_scale_min(j, packed, &sc[j], &m[j]);
}

// Shared body of Q4_K / Q5_K: `high` supplies the fifth bit (or nothing).
template <bool kFive, class Block>
float dot_q45k(int64_t n, const Block* x, const BlockQ8K* y) {
  const int64_t nb = n / kQKK;
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps();
  float acc_min = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    alignas(16) uint8_t sc[8], m[8];
    decode_scales_mins(x[i].scales, sc, m);
    const float d = y[i].d * half_to_float(x[i].d);
    const float dmin = y[i].d * half_to_float(x[i].dmin);
    acc_min += dmin * static_cast<float>(min_term(m, y[i].bsums));

    const int8_t* q8 = y[i].qs;
    __m256i qh = _mm256_setzero_si256();
    if constexpr (kFive) qh = load32(x[i].qh);
    __m256i sumi = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {  // chunk c: sub-blocks 2c (low nibbles) and 2c+1 (high)
      const __m256i raw = load32(x[i].qs + 32 * c);
      __m256i lo = _mm256_and_si256(raw, low4);
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
      if constexpr (kFive) {
        // Bit 2c of qh[l] is the fifth bit of element l of sub-block 2c.
        const __m256i b_lo = _mm256_set1_epi8(static_cast<char>(1 << (2 * c)));
        const __m256i b_hi = _mm256_set1_epi8(static_cast<char>(2 << (2 * c)));
        const __m256i sixteen = _mm256_set1_epi8(16);
        lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b_lo), b_lo), sixteen));
        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b_hi), b_hi), sixteen));
      }
      // q <= 31, |y| <= 127: maddubs pair sums <= 7874; madd with the 6-bit scale.
      const __m256i p_lo = _mm256_maddubs_epi16(lo, load32(q8 + 64 * c));
      const __m256i p_hi = _mm256_maddubs_epi16(hi, load32(q8 + 64 * c + 32));
      sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p_lo, _mm256_set1_epi16(sc[2 * c])));
      sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p_hi, _mm256_set1_epi16(sc[2 * c + 1])));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum_ps(acc) - acc_min;
}

}  // namespace

float vec_dot_q4_K_q8_K(int64_t n, const void* w, const void* a) {
  return dot_q45k<false>(n, static_cast<const BlockQ4K*>(w), static_cast<const BlockQ8K*>(a));
}

float vec_dot_q5_K_q8_K(int64_t n, const void* w, const void* a) {
  return dot_q45k<true>(n, static_cast<const BlockQ5K*>(w), static_cast<const BlockQ8K*>(a));
}

float vec_dot_q6_K_q8_K(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ6K*>(w);
  const auto* y = static_cast<const BlockQ8K*>(a);
  const int64_t nb = n / kQKK;
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i two = _mm256_set1_epi8(0x03);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const float d = y[i].d * half_to_float(x[i].d);
    const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].scales));
    // (q - 32) * y = q * y - 32 * y: take the -32 part from the bsums at once.
    const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
    __m256i sumi = _mm256_slli_epi32(_mm256_madd_epi16(load32(y[i].bsums), sc16), 5);
    sumi = _mm256_sub_epi32(_mm256_setzero_si256(), sumi);
    const int8_t* q8 = y[i].qs;
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = load32(x[i].ql + 64 * h);
      const __m256i ql1 = load32(x[i].ql + 64 * h + 32);
      const __m256i qh = load32(x[i].qh + 32 * h);
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
        // Row r covers sub-blocks 8h+2r (low 128-bit lane) and 8h+2r+1 (high lane).
        const int s = 8 * h + 2 * r;
        const __m256i scale = _mm256_set_m128i(_mm_set1_epi16(x[i].scales[s + 1]), _mm_set1_epi16(x[i].scales[s]));
        // q <= 63, |y| <= 127: pair sums <= 16002, exact in int16.
        const __m256i p = _mm256_maddubs_epi16(q[r], load32(q8 + 128 * h + 32 * r));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scale));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum_ps(acc);
}

}  // namespace kestrel::kernels::avx2
