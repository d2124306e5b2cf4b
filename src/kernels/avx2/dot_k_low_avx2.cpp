// AVX2 Q2_K and Q3_K: dot products with Q8_K activations and row dequantizers
// (scalar twins in kernels/ref/q_k_low.cpp).
//
// Both formats store a super-block of 256 as 16 sub-blocks of 16 with one
// scale each. One 32-byte load of qs holds 2 bits of 128 elements: bits 2k..2k+1
// of byte l are element 32k + l of that half, so shifting the load by 2 bits
// per step yields 32 consecutive elements, sub-blocks 2k (low 128-bit lane) and
// 2k+1 (high lane). maddubs gives int16 pair sums per lane, and one madd with a
// vector holding scale 2k in the low lane and 2k+1 in the high lane applies the
// sub-block scales; the super-block sum stays in exact int32 until one
// conversion and one multiply by d_w * d_a, as the scalar twin.
//
// The terms that do not depend on the quants come from the activation's
// bsums (sums of 16 quants) instead of a pass over the elements: Q2_K's min
// term, and Q3_K's -4 for a clear hmask bit (the quant is stored unsigned as
// low bits | hbit << 2, in 0..7, and 4 * sum(a) is subtracted per sub-block).
#include <cstring>

#include "kernels/avx2/avx2-inl.h"
#include "kernels/avx2/avx2_kernels.h"
#include "kernels/avx2/dequant-inl.h"
#include "kernels/blocks.h"

namespace kestrel::kernels::avx2 {
namespace {

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// A byte shuffle that picks, from a 128-bit lane of 8 int16 scales (copied to
// both lanes), scale 2k for every int16 of the low lane and scale 2k+1 for
// every int16 of the high lane: the scales of the two sub-blocks of step k.
inline __m256i pair_shuffle(int k) {
  const int lo = 4 * k, hi = 4 * k + 2;  // byte offsets of int16 scales 2k and 2k+1
  return _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(((hi + 1) << 8) | hi)),
                          _mm_set1_epi16(static_cast<int16_t>(((lo + 1) << 8) | lo)));
}

// The 8 int16 scales of half h (sub-blocks 8h..8h+7) in both 128-bit lanes.
inline __m256i half_scales(__m256i scales16, int h) {
  return h == 0 ? _mm256_permute2x128_si256(scales16, scales16, 0x00)
                : _mm256_permute2x128_si256(scales16, scales16, 0x11);
}

// Q3_K's 16 sub-block scales (q3_scale - 32, in -32..31) as int8: the low
// nibbles of bytes 0..7 are scales 0..7 and their high nibbles scales 8..15;
// 2-bit field f of byte 8 + t holds the top bits of scale 4f + t.
inline __m128i q3_scales(const uint8_t* packed) {
  uint64_t low;
  uint32_t top;
  std::memcpy(&low, packed, 8);
  std::memcpy(&top, packed + 8, 4);
  constexpr uint64_t kTwoBits = 0x03030303, kNibbles = 0x0F0F0F0F0F0F0F0Full;
  // Byte j of top_lo is the top of scale j (fields 0 and 1), of top_hi scale 8 + j.
  const uint64_t top_lo = (top & kTwoBits) | (static_cast<uint64_t>((top >> 2) & kTwoBits) << 32);
  const uint64_t top_hi = ((top >> 4) & kTwoBits) | (static_cast<uint64_t>((top >> 6) & kTwoBits) << 32);
  const uint64_t s_lo = (low & kNibbles) | (top_lo << 4);
  const uint64_t s_hi = ((low >> 4) & kNibbles) | (top_hi << 4);
  return _mm_sub_epi8(_mm_set_epi64x(static_cast<int64_t>(s_hi), static_cast<int64_t>(s_lo)), _mm_set1_epi8(32));
}

// Q3_K's quants of step k of half h as unsigned 0..7 (the true quant plus 4):
// `bits` is the half's qs load shifted right by 2k, `hmask` the hmask load
// shifted right by 4h + k (16-bit shifts: each byte's wanted bits stay at the
// bottom of that byte, and the masks drop what crossed from its neighbour).
inline __m256i q3_unsigned(__m256i bits, __m256i hmask) {
  const __m256i high = _mm256_and_si256(_mm256_slli_epi16(hmask, 2), _mm256_set1_epi8(4));
  return _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi8(3)), high);
}

}  // namespace

float vec_dot_q2_K_q8_K(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ2K*>(w);
  const auto* y = static_cast<const BlockQ8K*>(a);
  const __m256i pick[4] = {pair_shuffle(0), pair_shuffle(1), pair_shuffle(2), pair_shuffle(3)};
  const __m256i three = _mm256_set1_epi8(3);
  const __m128i low4 = _mm_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].scales));
    const __m256i scales16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, low4));
    const __m256i mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), low4));
    // m_j <= 15, |bsum| <= 16 * 127: the int32 lanes are exact.
    const __m256i summ = _mm256_madd_epi16(mins16, load32(y[i].bsums));
    __m256i sumi = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i sc = half_scales(scales16, h);
      __m256i bits = load32(x[i].qs + 32 * h);
      for (int k = 0; k < 4; ++k) {
        // q <= 3, |a| <= 127: pair sums <= 762; times a 4-bit scale.
        const __m256i p = _mm256_maddubs_epi16(_mm256_and_si256(bits, three), load32(y[i].qs + 128 * h + 32 * k));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, _mm256_shuffle_epi8(sc, pick[k])));
        bits = _mm256_srli_epi16(bits, 2);
      }
    }
    const float d = y[i].d * half_to_float(x[i].d), dmin = y[i].d * half_to_float(x[i].dmin);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    acc = _mm256_fnmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(summ), acc);
  }
  return hsum_ps(acc);
}

float vec_dot_q3_K_q8_K(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ3K*>(w);
  const auto* y = static_cast<const BlockQ8K*>(a);
  const __m256i pick[4] = {pair_shuffle(0), pair_shuffle(1), pair_shuffle(2), pair_shuffle(3)};
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const __m256i scales16 = _mm256_cvtepi8_epi16(q3_scales(x[i].scales));
    // The +4 of the unsigned quants: 4 * sum_j s_j * bsum_j (|s| <= 32, exact).
    __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(),
                                    _mm256_slli_epi32(_mm256_madd_epi16(scales16, load32(y[i].bsums)), 2));
    __m256i hmask = load32(x[i].hmask);
    for (int h = 0; h < 2; ++h) {
      const __m256i sc = half_scales(scales16, h);
      __m256i bits = load32(x[i].qs + 32 * h);
      for (int k = 0; k < 4; ++k) {
        // q <= 7, |a| <= 127: pair sums <= 1778; times a scale in -32..31.
        const __m256i p = _mm256_maddubs_epi16(q3_unsigned(bits, hmask), load32(y[i].qs + 128 * h + 32 * k));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, _mm256_shuffle_epi8(sc, pick[k])));
        bits = _mm256_srli_epi16(bits, 2);
        hmask = _mm256_srli_epi16(hmask, 1);
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * half_to_float(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum_ps(acc);
}

void dequantize_row_q2_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ2K*>(src);
  const __m256i three = _mm256_set1_epi8(3);
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const float d = half_to_float(b[i].d), dmin = half_to_float(b[i].dmin);
    for (int h = 0; h < 2; ++h) {
      __m256i bits = load32(b[i].qs + 32 * h);
      for (int k = 0; k < 4; ++k, dst += 32) {
        const uint8_t s0 = b[i].scales[8 * h + 2 * k], s1 = b[i].scales[8 * h + 2 * k + 1];
        // (d * sc) * q - dmin * m, stored as a sum with the negated min: the same roundings.
        store_quants_32<true>(_mm256_and_si256(bits, three), d * static_cast<float>(s0 & 0xF),
                              d * static_cast<float>(s1 & 0xF), -(dmin * static_cast<float>(s0 >> 4)),
                              -(dmin * static_cast<float>(s1 >> 4)), dst);
        bits = _mm256_srli_epi16(bits, 2);
      }
    }
  }
}

void dequantize_row_q3_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ3K*>(src);
  const __m256i four = _mm256_set1_epi8(4);
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const float d = half_to_float(b[i].d);
    alignas(16) int8_t scales[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(scales), q3_scales(b[i].scales));
    __m256i hmask = load32(b[i].hmask);
    for (int h = 0; h < 2; ++h) {
      __m256i bits = load32(b[i].qs + 32 * h);
      for (int k = 0; k < 4; ++k, dst += 32) {
        const __m256i q = _mm256_sub_epi8(q3_unsigned(bits, hmask), four);  // -4..3
        const int s = 8 * h + 2 * k;
        store_quants_32<false>(q, d * static_cast<float>(scales[s]), d * static_cast<float>(scales[s + 1]), 0.0f,
                               0.0f, dst);
        bits = _mm256_srli_epi16(bits, 2);
        hmask = _mm256_srli_epi16(hmask, 1);
      }
    }
  }
}

}  // namespace kestrel::kernels::avx2
