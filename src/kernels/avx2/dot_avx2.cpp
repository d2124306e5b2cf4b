// AVX2 dot products of the 32-block formats and the plain float types.
// Pattern per block: 32 int8 products summed to 8 int32 lanes (maddubs/madd),
// converted to float and scaled by d_w * d_a into a float accumulator. Two
// blocks per iteration with two accumulators hide the FMA latency.
#include <algorithm>
#include <cstring>
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

// F16 and BF16 rows: weight elements widened to float (exact), one order for
// vec_dot and for float_gemm (QuantKernels::float_gemm), so both give the
// same bits: per (row, token), one 8-lane accumulator over 8-element steps,
// one horizontal sum, then a scalar tail. One chain per dot product: the
// rows x tokens tiles of float_gemm give the FMA units independent chains
// (vec_dot alone, a single chain, is the slow reference path).
namespace {

inline __m256 widen_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
// bf16 -> f32 is a 16-bit left shift of the bits: exact.
inline __m256 widen_bf16(const uint16_t* p) {
  const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
inline float scalar_f16(uint16_t h) { return half_to_float(h); }
inline float scalar_bf16(uint16_t h) {
  const uint32_t b = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// out[r * kT + t] = the dot of weight row x[r] with token t's floats a[t], for
// kR rows and kT tokens: each widened weight vector serves kT tokens, each
// activation vector kR rows.
template <int kR, int kT, __m256 (*kWiden)(const uint16_t*), float (*kScalar)(uint16_t)>
inline void dot_tile(int64_t n, const uint16_t* const* x, const float* const* a, float* out) {
  __m256 acc[kR][kT];
  for (auto& row : acc)
    for (__m256& v : row) v = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 w[kR];
    for (int r = 0; r < kR; ++r) w[r] = kWiden(x[r] + i);
    for (int t = 0; t < kT; ++t) {
      const __m256 v = _mm256_loadu_ps(a[t] + i);
      for (int r = 0; r < kR; ++r) acc[r][t] = _mm256_fmadd_ps(w[r], v, acc[r][t]);
    }
  }
  for (int r = 0; r < kR; ++r)
    for (int t = 0; t < kT; ++t) {
      float sum = hsum_ps(acc[r][t]);
      for (int64_t j = i; j < n; ++j) sum += kScalar(x[r][j]) * a[t][j];
      out[r * kT + t] = sum;
    }
}

// 3 rows x 4 tokens: 12 accumulators, 3 widened weight vectors and the
// activation vector fill the 16 ymm.
constexpr int kTileRows = 3;
constexpr int kTileTokens = 4;

template <int kR, __m256 (*kWiden)(const uint16_t*), float (*kScalar)(uint16_t)>
inline void dot_rows(int64_t n, const uint16_t* const* x, const float* const* a, int64_t tokens, float* out) {
  switch (tokens) {
    case 4:
      return dot_tile<kR, 4, kWiden, kScalar>(n, x, a, out);
    case 3:
      return dot_tile<kR, 3, kWiden, kScalar>(n, x, a, out);
    case 2:
      return dot_tile<kR, 2, kWiden, kScalar>(n, x, a, out);
    default:
      return dot_tile<kR, 1, kWiden, kScalar>(n, x, a, out);
  }
}

// One token (decode): one row at a time, a single stream through memory.
// SmolLM2 F16 decode on Zen 3, 2 threads: 1 row 77-85 t/s; 2, 4 or 6 rows
// interleaved (more FMA chains, as many streams) 66-73, as was a software
// prefetch of the next rows; vec_dot's former 4 chains per row 75-79.
template <__m256 (*kWiden)(const uint16_t*), float (*kScalar)(uint16_t)>
void float_gemv(int64_t n, const void* w, size_t row_stride, int64_t rows, const float* act, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const auto* x =
        reinterpret_cast<const uint16_t*>(static_cast<const uint8_t*>(w) + static_cast<size_t>(r) * row_stride);
    dot_tile<1, 1, kWiden, kScalar>(n, &x, &act, y + r);
  }
}

template <__m256 (*kWiden)(const uint16_t*), float (*kScalar)(uint16_t)>
void float_gemm(int64_t n, const void* w, size_t row_stride, int64_t rows, const float* act, int64_t n_tokens, float* y,
                int64_t y_stride) {
  if (n_tokens == 1) return float_gemv<kWiden, kScalar>(n, w, row_stride, rows, act, y);
  // Token tiles outside, row tiles inside: a tile's activation rows (4 x n
  // floats) stay in L1 while the call's rows (its scheduling chunk) stream
  // from L2 once per token tile.
  for (int64_t t = 0; t < n_tokens; t += kTileTokens) {
    const int64_t nt = std::min<int64_t>(kTileTokens, n_tokens - t);
    const float* a[kTileTokens];
    for (int64_t j = 0; j < nt; ++j) a[j] = act + (t + j) * n;
    for (int64_t r = 0; r < rows; r += kTileRows) {
      const int64_t nr = std::min<int64_t>(kTileRows, rows - r);
      const uint16_t* x[kTileRows];
      for (int64_t j = 0; j < nr; ++j)
        x[j] =
            reinterpret_cast<const uint16_t*>(static_cast<const uint8_t*>(w) + static_cast<size_t>(r + j) * row_stride);
      float out[kTileRows * kTileTokens];
      if (nr == 3)
        dot_rows<3, kWiden, kScalar>(n, x, a, nt, out);
      else if (nr == 2)
        dot_rows<2, kWiden, kScalar>(n, x, a, nt, out);
      else
        dot_rows<1, kWiden, kScalar>(n, x, a, nt, out);
      for (int64_t i = 0; i < nr; ++i)
        for (int64_t j = 0; j < nt; ++j) y[(t + j) * y_stride + r + i] = out[i * nt + j];
    }
  }
}

// vec_dot: float_gemm's arithmetic on one row and one token, the activation
// row widened as it is read.
template <__m256 (*kWiden)(const uint16_t*), float (*kScalar)(uint16_t)>
float vec_dot_widened(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint16_t*>(w);
  const auto* y = static_cast<const uint16_t*>(a);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(kWiden(x + i), kWiden(y + i), acc);
  float sum = hsum_ps(acc);
  for (; i < n; ++i) sum += kScalar(x[i]) * kScalar(y[i]);
  return sum;
}

}  // namespace

float vec_dot_f16_f16(int64_t n, const void* w, const void* a) {
  return vec_dot_widened<widen_f16, scalar_f16>(n, w, a);
}

float vec_dot_bf16_bf16(int64_t n, const void* w, const void* a) {
  return vec_dot_widened<widen_bf16, scalar_bf16>(n, w, a);
}

void float_gemm_f16(int64_t n, const void* w, size_t row_stride, int64_t rows, const float* act, int64_t n_tokens,
                    float* y, int64_t y_stride) {
  float_gemm<widen_f16, scalar_f16>(n, w, row_stride, rows, act, n_tokens, y, y_stride);
}

void float_gemm_bf16(int64_t n, const void* w, size_t row_stride, int64_t rows, const float* act, int64_t n_tokens,
                     float* y, int64_t y_stride) {
  float_gemm<widen_bf16, scalar_bf16>(n, w, row_stride, rows, act, n_tokens, y, y_stride);
}

}  // namespace kestrel::kernels::avx2
