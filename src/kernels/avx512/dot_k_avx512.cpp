// AVX-512 VNNI dot products of the K quants with Q8_K. Per super-block: weight
// quants expanded to bytes in the activation's element order (64 per zmm),
// vpmaddubsw pairs them with the activation bytes into int16, and vpdpwssd
// applies the sub-block scales (int16 lanes) while accumulating int32. One
// float FMA per super-block applies d_w * d_a.
#include <cstring>

#include "kernels/avx512/avx512-inl.h"
#include "kernels/avx512/avx512_kernels.h"
#include "kernels/blocks.h"

namespace kestrel::kernels::avx512 {
namespace {

inline __m512i load64(const void* p) { return _mm512_loadu_si512(p); }

// The 8 six-bit scales and mins of a Q4_K/Q5_K block as bytes (see k_scale_min):
// j < 4 are the low 6 bits of bytes j / j+4; j >= 4 combine a nibble of byte j+4
// with the top 2 bits of bytes j-4 / j.
inline void unpack_scales_mins(const uint8_t* packed, uint64_t* sc, uint64_t* mn) {
  uint32_t w0, w1, w2;
  std::memcpy(&w0, packed, 4);
  std::memcpy(&w1, packed + 4, 4);
  std::memcpy(&w2, packed + 8, 4);
  const uint32_t low6 = 0x3f3f3f3f, low4 = 0x0f0f0f0f, low2 = 0x03030303;
  const uint32_t sc_hi = (w2 & low4) | (((w0 >> 6) & low2) << 4);
  const uint32_t mn_hi = ((w2 >> 4) & low4) | (((w1 >> 6) & low2) << 4);
  *sc = (w0 & low6) | (static_cast<uint64_t>(sc_hi) << 32);
  *mn = (w1 & low6) | (static_cast<uint64_t>(mn_hi) << 32);
}

// int16 lane vector for the zmm that holds sub-blocks 2c (first 32 bytes) and
// 2c+1 (last 32): maddubs lanes 0..15 get sc[2c], lanes 16..31 sc[2c+1].
inline __m512i pair_scales16(__m512i sc16, int c) {
  const __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(static_cast<short>(2 * c))),
                                         _mm256_set1_epi16(static_cast<short>(2 * c + 1)), 1);
  return _mm512_permutexvar_epi16(idx, sc16);
}

// Min term of a Q4_K/Q5_K block: sum_j m_j * (bsums[2j] + bsums[2j+1]) in 8 int32 lanes.
inline __m256i min_term(uint64_t mn, const int16_t* bsums) {
  const __m128i m = _mm_cvtsi64_si128(static_cast<long long>(mn));
  const __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m, m));  // each min twice
  return _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(bsums)), m16);
}

template <bool kFive, class Block>
float dot_q45k(int64_t n, const Block* x, const BlockQ8K* y) {
  const int64_t nb = n / kQKK;
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i nibble_shift = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
  __m512 acc = _mm512_setzero_ps();
  __m256 acc_min = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    uint64_t sc, mn;
    unpack_scales_mins(x[i].scales, &sc, &mn);
    const __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(sc))));
    const float dy = y[i].d;
    acc_min = _mm256_fmadd_ps(_mm256_set1_ps(dy * half_to_float_512(x[i].dmin)),
                              _mm256_cvtepi32_ps(min_term(mn, y[i].bsums)), acc_min);
    __m512i qh;
    if constexpr (kFive) qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qh)));
    __m512i sumi = _mm512_setzero_si512();
    for (int c = 0; c < 4; ++c) {
      // [32 bytes of chunk c | the same] -> [low nibbles: sub-block 2c | high: 2c+1]
      const __m512i raw = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 32 * c)));
      __m512i q = _mm512_and_si512(_mm512_srlv_epi64(raw, nibble_shift), low4);
      if constexpr (kFive) {
        // Fifth bit of sub-block j is bit j of qh[l].
        const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(1 << (2 * c))),
                                               _mm256_set1_epi8(static_cast<char>(2 << (2 * c))), 1);
        q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(qh, bit), q, _mm512_set1_epi8(16));
      }
      // q <= 31, |y| <= 127: int16 pair sums <= 7874; scales <= 63 keep int32 exact.
      const __m512i p = _mm512_maddubs_epi16(q, load64(y[i].qs + 64 * c));
      sumi = _mm512_dpwssd_epi32(sumi, p, pair_scales16(sc16, c));
    }
    acc = _mm512_fmadd_ps(_mm512_set1_ps(dy * half_to_float_512(x[i].d)), _mm512_cvtepi32_ps(sumi), acc);
  }
  const __m256 m = acc_min;
  __m128 t = _mm_add_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  t = _mm_add_ps(t, _mm_movehl_ps(t, t));
  t = _mm_add_ss(t, _mm_movehdup_ps(t));
  return hsum512(acc) - _mm_cvtss_f32(t);
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
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i bits45 = _mm512_set1_epi8(0x30);
  // High 2 bits into bit positions 4..5: rows 0/1 sit at qh bits 0..1 / 2..3
  // (shift left 4 / 2), rows 2/3 at bits 4..5 / 6..7 (shift right 0 / 2).
  const __m512i shl_01 = _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4);
  const __m512i shr_23 = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].scales)));
    // (q - 32) * y = q * y - 32 * y: the -32 part comes from the bsums at once.
    const __m256i neg32 = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc16, 5));
    __m512i sumi = _mm512_dpwssd_epi32(
        _mm512_setzero_si512(),
        _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].bsums))),
        _mm512_zextsi256_si512(neg32));
    const __m512i sc512 = _mm512_castsi256_si512(sc16);
    for (int h = 0; h < 2; ++h) {
      const __m512i ql = load64(x[i].ql + 64 * h);  // [row 0/2 nibbles | row 1/3 nibbles]
      const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qh + 32 * h)));
      const __m512i hi01 = _mm512_and_si512(_mm512_sllv_epi64(qh, shl_01), bits45);
      const __m512i hi23 = _mm512_and_si512(_mm512_srlv_epi64(qh, shr_23), bits45);
      // (a & 0x0F) | b (ternlog 0xEC), b already confined to bits 4..5.
      const __m512i q01 = _mm512_ternarylogic_epi32(ql, hi01, low4, 0xEC);
      const __m512i q23 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql, 4), hi23, low4, 0xEC);
      for (int t = 0; t < 2; ++t) {
        // 128-bit lane g of this zmm holds sub-block 8h + 4t + g (16 elements).
        const int s0 = 8 * h + 4 * t;
        const __m512i idx = _mm512_set_epi16(
            s0 + 3, s0 + 3, s0 + 3, s0 + 3, s0 + 3, s0 + 3, s0 + 3, s0 + 3, s0 + 2, s0 + 2, s0 + 2, s0 + 2, s0 + 2,
            s0 + 2, s0 + 2, s0 + 2, s0 + 1, s0 + 1, s0 + 1, s0 + 1, s0 + 1, s0 + 1, s0 + 1, s0 + 1, s0, s0, s0, s0,
            s0, s0, s0, s0);
        // q <= 63, |y| <= 127: int16 pair sums <= 16002.
        const __m512i p = _mm512_maddubs_epi16(t == 0 ? q01 : q23, load64(y[i].qs + 128 * h + 64 * t));
        sumi = _mm512_dpwssd_epi32(sumi, p, _mm512_permutexvar_epi16(idx, sc512));
      }
    }
    acc = _mm512_fmadd_ps(_mm512_set1_ps(y[i].d * half_to_float_512(x[i].d)), _mm512_cvtepi32_ps(sumi), acc);
  }
  return hsum512(acc);
}

}  // namespace kestrel::kernels::avx512
