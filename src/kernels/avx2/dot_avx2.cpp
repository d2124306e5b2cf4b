// AVX2 dot products of the 32-block formats and the plain float types.
// Pattern per block: 32 int8 products summed to 8 int32 lanes (maddubs/madd),
// converted to float and scaled by d_w * d_a into a float accumulator. Two
// blocks per iteration with two accumulators hide the FMA latency.
#include <vector>

#include "kernels/avx2/avx2-inl.h"
#include "kernels/avx2/avx2_kernels.h"
#include "kernels/blocks.h"

namespace kestrel::kernels::avx2 {
namespace {

inline __m256 block_scale(uint16_t dw, uint16_t da) {
  return _mm256_set1_ps(half_to_float(dw) * half_to_float(da));
}

// Q4_0 weights as signed bytes -8..7.
inline __m256i q4_0_bytes(const BlockQ4_0& b) {
  return _mm256_sub_epi8(unpack_nibbles_32(b.qs), _mm256_set1_epi8(8));
}

// Q5_0 weights as signed bytes -16..15: (q4 | 16*bit) - 16 equals q4 when the
// bit is set and q4 | 0xF0 (= q4 - 16 as int8) when it is clear.
inline __m256i q5_0_bytes(const BlockQ5_0& b) {
  const __m256i hi = _mm256_andnot_si256(bits_to_bytes_32(b.qh), _mm256_set1_epi8(static_cast<char>(0xF0)));
  return _mm256_or_si256(unpack_nibbles_32(b.qs), hi);
}

// Q5_1 weights as unsigned bytes 0..31.
inline __m256i q5_1_bytes(const BlockQ5_1& b) {
  const __m256i hi = _mm256_and_si256(bits_to_bytes_32(b.qh), _mm256_set1_epi8(0x10));
  return _mm256_or_si256(unpack_nibbles_32(b.qs), hi);
}

inline __m256i load32(const int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

}  // namespace

float vec_dot_q4_0_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ4_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  const int64_t nb = n / kQK;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 1 < nb; i += 2) {
    const __m256 p0 = _mm256_cvtepi32_ps(dot_s8s8(q4_0_bytes(x[i]), load32(y[i].qs)));
    const __m256 p1 = _mm256_cvtepi32_ps(dot_s8s8(q4_0_bytes(x[i + 1]), load32(y[i + 1].qs)));
    acc0 = _mm256_fmadd_ps(block_scale(x[i].d, y[i].d), p0, acc0);
    acc1 = _mm256_fmadd_ps(block_scale(x[i + 1].d, y[i + 1].d), p1, acc1);
  }
  for (; i < nb; ++i) {
    const __m256 p = _mm256_cvtepi32_ps(dot_s8s8(q4_0_bytes(x[i]), load32(y[i].qs)));
    acc0 = _mm256_fmadd_ps(block_scale(x[i].d, y[i].d), p, acc0);
  }
  return hsum_ps(_mm256_add_ps(acc0, acc1));
}

float vec_dot_q4_1_q8_1(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ4_1*>(w);
  const auto* y = static_cast<const BlockQ8_1*>(a);
  const int64_t nb = n / kQK;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  float mins = 0.0f;  // sum of m_w * s_a: the weight offsets times the activation sums
  int64_t i = 0;
  for (; i + 1 < nb; i += 2) {
    // Nibbles 0..15 as the unsigned operand: pair sums <= 2*15*127, no saturation.
    const __m256 p0 = _mm256_cvtepi32_ps(dot_u8s8(unpack_nibbles_32(x[i].qs), load32(y[i].qs)));
    const __m256 p1 = _mm256_cvtepi32_ps(dot_u8s8(unpack_nibbles_32(x[i + 1].qs), load32(y[i + 1].qs)));
    acc0 = _mm256_fmadd_ps(block_scale(x[i].d, y[i].d), p0, acc0);
    acc1 = _mm256_fmadd_ps(block_scale(x[i + 1].d, y[i + 1].d), p1, acc1);
    mins += half_to_float(x[i].m) * half_to_float(y[i].s) + half_to_float(x[i + 1].m) * half_to_float(y[i + 1].s);
  }
  for (; i < nb; ++i) {
    const __m256 p = _mm256_cvtepi32_ps(dot_u8s8(unpack_nibbles_32(x[i].qs), load32(y[i].qs)));
    acc0 = _mm256_fmadd_ps(block_scale(x[i].d, y[i].d), p, acc0);
    mins += half_to_float(x[i].m) * half_to_float(y[i].s);
  }
  return hsum_ps(_mm256_add_ps(acc0, acc1)) + mins;
}

float vec_dot_q5_0_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ5_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  const int64_t nb = n / kQK;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 1 < nb; i += 2) {
    const __m256 p0 = _mm256_cvtepi32_ps(dot_s8s8(q5_0_bytes(x[i]), load32(y[i].qs)));
    const __m256 p1 = _mm256_cvtepi32_ps(dot_s8s8(q5_0_bytes(x[i + 1]), load32(y[i + 1].qs)));
    acc0 = _mm256_fmadd_ps(block_scale(x[i].d, y[i].d), p0, acc0);
    acc1 = _mm256_fmadd_ps(block_scale(x[i + 1].d, y[i + 1].d), p1, acc1);
  }
  for (; i < nb; ++i) {
    const __m256 p = _mm256_cvtepi32_ps(dot_s8s8(q5_0_bytes(x[i]), load32(y[i].qs)));
    acc0 = _mm256_fmadd_ps(block_scale(x[i].d, y[i].d), p, acc0);
  }
  return hsum_ps(_mm256_add_ps(acc0, acc1));
}

// vec_dot_q5_0_q8_0's int32 lanes and float steps with less work per row:
// the quants unsigned, 0..31 ((q4 | 16*bit), two ops fewer than the sign
// trick), their lane sums less 16 x the activation's lane sums (computed once
// per call: sum over 4 elements of (q - 16) a is the same integer either way),
// and the activation's F16 scales converted once per call (the product
// float(d_w) * float(d_a) is the same float). Decode of Qwen2.5-0.5B spends
// half its time in this dot product, compute-bound at 2 threads.
void gemv_q5_0_q8_0(int64_t n, const void* w, size_t row_stride, int64_t rows, const void* a, float* y) {
  const auto* ya = static_cast<const BlockQ8_0*>(a);
  const int64_t nb = n / kQK;
  thread_local std::vector<float> da;
  thread_local std::vector<__m256i> bias;
  da.resize(static_cast<size_t>(nb));
  bias.resize(static_cast<size_t>(nb));
  for (int64_t i = 0; i < nb; ++i) {
    da[i] = half_to_float(ya[i].d);
    bias[i] = dot_u8s8(_mm256_set1_epi8(16), load32(ya[i].qs));
  }
  const __m256i five = _mm256_set1_epi8(0x10);
  auto lanes = [&](const BlockQ5_0& b, int64_t i) {
    const __m256i q = _mm256_or_si256(unpack_nibbles_32(b.qs), _mm256_and_si256(bits_to_bytes_32(b.qh), five));
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(dot_u8s8(q, load32(ya[i].qs)), bias[i]));
  };
  for (int64_t r = 0; r < rows; ++r) {
    const auto* x = reinterpret_cast<const BlockQ5_0*>(static_cast<const uint8_t*>(w) + r * row_stride);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
      const __m256 p0 = lanes(x[i], i);
      const __m256 p1 = lanes(x[i + 1], i + 1);
      acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(x[i].d) * da[i]), p0, acc0);
      acc1 = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(x[i + 1].d) * da[i + 1]), p1, acc1);
    }
    for (; i < nb; ++i) acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(x[i].d) * da[i]), lanes(x[i], i), acc0);
    y[r] = hsum_ps(_mm256_add_ps(acc0, acc1));
  }
}

float vec_dot_q5_1_q8_1(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ5_1*>(w);
  const auto* y = static_cast<const BlockQ8_1*>(a);
  const int64_t nb = n / kQK;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  float mins = 0.0f;
  int64_t i = 0;
  for (; i + 1 < nb; i += 2) {
    const __m256 p0 = _mm256_cvtepi32_ps(dot_u8s8(q5_1_bytes(x[i]), load32(y[i].qs)));
    const __m256 p1 = _mm256_cvtepi32_ps(dot_u8s8(q5_1_bytes(x[i + 1]), load32(y[i + 1].qs)));
    acc0 = _mm256_fmadd_ps(block_scale(x[i].d, y[i].d), p0, acc0);
    acc1 = _mm256_fmadd_ps(block_scale(x[i + 1].d, y[i + 1].d), p1, acc1);
    mins += half_to_float(x[i].m) * half_to_float(y[i].s) + half_to_float(x[i + 1].m) * half_to_float(y[i + 1].s);
  }
  for (; i < nb; ++i) {
    const __m256 p = _mm256_cvtepi32_ps(dot_u8s8(q5_1_bytes(x[i]), load32(y[i].qs)));
    acc0 = _mm256_fmadd_ps(block_scale(x[i].d, y[i].d), p, acc0);
    mins += half_to_float(x[i].m) * half_to_float(y[i].s);
  }
  return hsum_ps(_mm256_add_ps(acc0, acc1)) + mins;
}

float vec_dot_q8_0_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ8_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  const int64_t nb = n / kQK;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 1 < nb; i += 2) {
    const __m256 p0 = _mm256_cvtepi32_ps(dot_s8s8(load32(x[i].qs), load32(y[i].qs)));
    const __m256 p1 = _mm256_cvtepi32_ps(dot_s8s8(load32(x[i + 1].qs), load32(y[i + 1].qs)));
    acc0 = _mm256_fmadd_ps(block_scale(x[i].d, y[i].d), p0, acc0);
    acc1 = _mm256_fmadd_ps(block_scale(x[i + 1].d, y[i + 1].d), p1, acc1);
  }
  for (; i < nb; ++i) {
    const __m256 p = _mm256_cvtepi32_ps(dot_s8s8(load32(x[i].qs), load32(y[i].qs)));
    acc0 = _mm256_fmadd_ps(block_scale(x[i].d, y[i].d), p, acc0);
  }
  return hsum_ps(_mm256_add_ps(acc0, acc1));
}

// ---- float types: four accumulators of 8 lanes, scalar tail ----

float vec_dot_f32_f32(int64_t n, const void* w, const void* a) {
  return dot_f32(n, static_cast<const float*>(w), static_cast<const float*>(a));
}

float vec_dot_f16_f16(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint16_t*>(w);
  const auto* y = static_cast<const uint16_t*>(a);
  auto load = [](const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  };
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; ++k) acc[k] = _mm256_fmadd_ps(load(x + i + 8 * k), load(y + i + 8 * k), acc[k]);
  for (; i + 8 <= n; i += 8) acc[0] = _mm256_fmadd_ps(load(x + i), load(y + i), acc[0]);
  float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  for (; i < n; ++i) sum += half_to_float(x[i]) * half_to_float(y[i]);
  return sum;
}

float vec_dot_bf16_bf16(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint16_t*>(w);
  const auto* y = static_cast<const uint16_t*>(a);
  // bf16 -> f32 is a 16-bit left shift of the bits: exact.
  auto load = [](const uint16_t* p) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  };
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; ++k) acc[k] = _mm256_fmadd_ps(load(x + i + 8 * k), load(y + i + 8 * k), acc[k]);
  for (; i + 8 <= n; i += 8) acc[0] = _mm256_fmadd_ps(load(x + i), load(y + i), acc[0]);
  float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  for (; i < n; ++i) {
    const uint32_t xb = static_cast<uint32_t>(x[i]) << 16, yb = static_cast<uint32_t>(y[i]) << 16;
    float xf, yf;
    std::memcpy(&xf, &xb, 4);
    std::memcpy(&yf, &yb, 4);
    sum += xf * yf;
  }
  return sum;
}

}  // namespace kestrel::kernels::avx2
