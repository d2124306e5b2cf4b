// AVX-512 activation quantizers (byte-identical to the scalar twins: the same
// scale arithmetic, round to nearest even, the same clamps) and F16/BF16 rows.
#include <cstring>

#include "kernels/avx512/avx512-inl.h"
#include "kernels/avx512/avx512_kernels.h"
#include "kernels/blocks.h"
#include "kernels/ref/ref_kernels.h"

namespace kestrel::kernels::avx512 {
namespace {

constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

inline __m512 abs512(__m512 v) { return _mm512_abs_ps(v); }

// 32 floats * id -> 32 int8 (stored), returns the int32 lanes' sum.
inline int quantize_32(const float* x, float id, int8_t* out) {
  const __m512 vid = _mm512_set1_ps(id);
  const __m512i i0 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x), vid), kRound);
  const __m512i i1 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16), vid), kRound);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtsepi32_epi8(i0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 16), _mm512_cvtsepi32_epi8(i1));
  return _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
}

inline float absmax_32(const float* x) {
  return _mm512_reduce_max_ps(_mm512_max_ps(abs512(_mm512_loadu_ps(x)), abs512(_mm512_loadu_ps(x + 16))));
}

inline uint16_t to_half(float f) { return static_cast<uint16_t>(_cvtss_sh(f, kRound)); }

}  // namespace

void quantize_row_q8_0(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    const float amax = absmax_32(src);
    quantize_32(src, amax != 0.0f ? 127.0f / amax : 0.0f, b[i].qs);
    b[i].d = to_half(amax / 127.0f);
  }
}

void quantize_row_q8_1(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_1*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    const float amax = absmax_32(src);
    const int sum = quantize_32(src, amax != 0.0f ? 127.0f / amax : 0.0f, b[i].qs);
    const float d = amax / 127.0f;
    b[i].d = to_half(d);
    b[i].s = to_half(d * static_cast<float>(sum));
  }
}

void quantize_row_q8_K(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8K*>(dst);
  for (int64_t i = 0; i < n / kQKK; ++i, src += kQKK) {
    __m512 m = _mm512_setzero_ps();
    for (int k = 0; k < kQKK; k += 16) m = _mm512_max_ps(m, abs512(_mm512_loadu_ps(src + k)));
    const float amax = _mm512_reduce_max_ps(m);
    if (amax == 0.0f) {
      std::memset(&b[i], 0, sizeof(BlockQ8K));
      continue;
    }
    // Signed value of the first element of largest magnitude, as the scalar twin.
    float max = 0.0f;
    const __m512 vamax = _mm512_set1_ps(amax);
    for (int k = 0; k < kQKK; k += 16) {
      const __mmask16 hit = _mm512_cmp_ps_mask(abs512(_mm512_loadu_ps(src + k)), vamax, _CMP_EQ_OQ);
      if (hit != 0) {
        max = src[k + __builtin_ctz(static_cast<unsigned>(hit))];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m512 vs = _mm512_set1_ps(iscale);
    const __m512i cap = _mm512_set1_epi32(127);
    const __m128i bias = _mm_set1_epi8(static_cast<char>(0x80));
    for (int k = 0; k < kQKK; k += 16) {
      const __m512i q = _mm512_min_epi32(cap, _mm512_cvt_roundps_epi32(_mm512_mul_ps(_mm512_loadu_ps(src + k), vs), kRound));
      const __m128i bytes = _mm512_cvtsepi32_epi8(q);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(b[i].qs + k), bytes);
      // Sum of 16 signed bytes: bias to unsigned, two 8-byte SADs.
      const __m128i sad = _mm_sad_epu8(_mm_xor_si128(bytes, bias), _mm_setzero_si128());
      b[i].bsums[k / 16] =
          static_cast<int16_t>(_mm_cvtsi128_si32(sad) + _mm_extract_epi16(sad, 4) - 16 * 128);
    }
    b[i].d = 1 / iscale;
  }
}

void dequantize_row_f16(const void* src, float* dst, int64_t n) {
  f16_to_f32_row(n, static_cast<const uint16_t*>(src), dst);
}

void quantize_row_f16(const float* src, void* dst, int64_t n) {
  f32_to_f16_row(n, src, static_cast<uint16_t*>(dst));
}

void dequantize_row_bf16(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, x + i));
    _mm512_mask_storeu_ps(dst + i, m, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
  }
}

void quantize_row_bf16(const float* src, void* dst, int64_t n) {
  auto* y = static_cast<uint16_t*>(dst);
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m512i u = _mm512_castps_si512(_mm512_maskz_loadu_ps(m, src + i));
    // Round to nearest even on the dropped 16 bits; NaN becomes a quiet NaN.
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i rounded =
        _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff))), 16);
    const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(64));
    const __mmask16 is_nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, abs_mask), inf);
    const __m512i r = _mm512_mask_mov_epi32(rounded, is_nan, quiet);
    _mm256_mask_storeu_epi16(y + i, m, _mm512_cvtepi32_epi16(r));
  }
}

}  // namespace kestrel::kernels::avx512
