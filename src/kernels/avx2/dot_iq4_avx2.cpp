// AVX2 IQ4_NL and IQ4_XS: dot products (with Q8_0 and Q8_K activations) and row
// dequantizers (scalar twins in kernels/ref/q_iq4.cpp).
//
// The 16-entry value table fits one 128-bit register, so a byte shuffle turns
// 32 4-bit indices into their signed table values (-127..113) at once. The
// products with the int8 activations then take the sign trick of dot_s8s8
// (both sides within -127..127: int16 pair sums stay exact). Integer sums are
// exact per block (IQ4_NL) or super-block (IQ4_XS) and scaled once, as the
// scalar twins.
#include "kernels/avx2/avx2-inl.h"
#include "kernels/avx2/avx2_kernels.h"
#include "kernels/avx2/dequant-inl.h"
#include "kernels/blocks.h"

namespace kestrel::kernels::avx2 {
namespace {

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// kIq4nlValues in both 128-bit lanes (vpshufb looks up within each lane).
inline __m256i value_table() {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues)));
}

// The 32 values of a block stored in Q4_0's nibble order (16 bytes at qs).
inline __m256i iq4_values(__m256i table, const uint8_t* qs) {
  return _mm256_shuffle_epi8(table, unpack_nibbles_32(qs));
}

// IQ4_XS's sub-block scales ls_j - 32 (-32..31).
inline void iq4xs_scales(const BlockIQ4XS& b, int16_t* out) {
  for (int j = 0; j < kQKK / kQK; ++j) out[j] = static_cast<int16_t>(iq4xs_scale(b, j) - 32);
}

}  // namespace

float vec_dot_iq4_nl_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockIQ4NL*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  const int64_t nb = n / kQK;
  const __m256i table = value_table();
  // Two blocks per iteration with two accumulators hide the FMA latency.
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 1 < nb; i += 2) {
    const __m256 p0 = _mm256_cvtepi32_ps(dot_s8s8(iq4_values(table, x[i].qs), load32(y[i].qs)));
    const __m256 p1 = _mm256_cvtepi32_ps(dot_s8s8(iq4_values(table, x[i + 1].qs), load32(y[i + 1].qs)));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(x[i].d) * half_to_float(y[i].d)), p0, acc0);
    acc1 = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(x[i + 1].d) * half_to_float(y[i + 1].d)), p1, acc1);
  }
  for (; i < nb; ++i) {
    const __m256 p = _mm256_cvtepi32_ps(dot_s8s8(iq4_values(table, x[i].qs), load32(y[i].qs)));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(x[i].d) * half_to_float(y[i].d)), p, acc0);
  }
  return hsum_ps(_mm256_add_ps(acc0, acc1));
}

float vec_dot_iq4_xs_q8_K(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockIQ4XS*>(w);
  const auto* y = static_cast<const BlockQ8K*>(a);
  const __m256i table = value_table();
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQKK; ++i) {
    alignas(16) int16_t scales[kQKK / kQK];
    iq4xs_scales(x[i], scales);
    __m256i sumi = _mm256_setzero_si256();
    for (int j = 0; j < kQKK / kQK; ++j) {
      const __m256i v = iq4_values(table, x[i].qs + 16 * j);
      const __m256i q8 = load32(y[i].qs + kQK * j);
      // |v|, |a| <= 127: pair sums <= 32258; times |scale| <= 32, each int32
      // lane ends below 2^24 after 8 sub-blocks (exact as a float too).
      const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(q8, v));
      sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, _mm256_set1_epi16(scales[j])));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * half_to_float(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum_ps(acc);
}

void dequantize_row_iq4_nl(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockIQ4NL*>(src);
  const __m256i table = value_table();
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = half_to_float(b[i].d);
    store_quants_32<false>(iq4_values(table, b[i].qs), d, d, 0.0f, 0.0f, dst);
  }
}

void dequantize_row_iq4_xs(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockIQ4XS*>(src);
  const __m256i table = value_table();
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const float d = half_to_float(b[i].d);
    alignas(16) int16_t scales[kQKK / kQK];
    iq4xs_scales(b[i], scales);
    for (int j = 0; j < kQKK / kQK; ++j, dst += kQK) {
      const float dl = d * static_cast<float>(scales[j]);  // as the twin: (d * (ls - 32)) * value
      store_quants_32<false>(iq4_values(table, b[i].qs + 16 * j), dl, dl, 0.0f, 0.0f, dst);
    }
  }
}

}  // namespace kestrel::kernels::avx2
